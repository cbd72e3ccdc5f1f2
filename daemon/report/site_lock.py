"""One writer at a time for the site's shared files (the gallery's pages, jobs.json, the assets)
when several daemons share one outbox. With PostgreSQL a session advisory lock, which every
daemon of the store sees whatever storage the outbox is on; with SQLite (one host) an flock on a
file in the state folder."""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import Engine

from daemon.store.advisory_lock import advisory_lock

SITE_LOCK_KEY = 0x1A5E_5173  # pg_advisory_lock's key for the site; any constant all daemons share
LOCK_FILE = "site.lock"


@contextmanager
def site_lock(engine: Engine, state: Path) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        with advisory_lock(engine, SITE_LOCK_KEY):
            yield
        return
    with open(state / LOCK_FILE, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
