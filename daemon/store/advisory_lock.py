"""A PostgreSQL session advisory lock: one holder at a time among every daemon of the database,
whatever host each runs on. Held on a connection of its own for as long as the block runs."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import Engine, text


@contextmanager
def advisory_lock(engine: Engine, key: int) -> Iterator[None]:
    with engine.connect() as holder:
        holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
        try:
            yield
        finally:
            holder.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            holder.commit()
