"""Which daemons share this job store, and which of them are alive.

Each daemon rewrites its own row at every heartbeat. Ages are measured by the database's clock
(PostgreSQL's ``now()``), as leases are, so hosts whose clocks disagree still agree on who is
silent; on SQLite, one host, by this host's clock.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping, Sequence

from sqlalchemy import Engine, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from daemon.store.tables import daemons, utc_now
from daemon.this_process import Liveness, ProcessKey, liveness

log = logging.getLogger("instarecon")

MISSED_BEATS = 3  # a daemon silent for this many heartbeat intervals counts as down
FORGET_AFTER = timedelta(days=30)  # a host not seen for this long is no longer listed


@dataclass(frozen=True)
class DaemonRecord:
    host: str  # the daemon's name
    version: str
    pid: int
    started_at: datetime
    seen_at: datetime
    interval_seconds: float
    state: str  # idle, running or stopped
    current_job: Mapping[str, Any] | None
    problems: tuple[str, ...]
    seconds_since_seen: float  # by the database's clock, when it was read
    process: str | None = None  # the process key of its writer (daemon/this_process.py)
    gpu: str | None = None  # the GPU it was given (CUDA_VISIBLE_DEVICES); None: not one in particular

    @property
    def alive(self) -> bool:
        return self.state != "stopped" and self.seconds_since_seen <= MISSED_BEATS * self.interval_seconds

    @property
    def condition(self) -> str:
        """alive, stopped (shut down cleanly) or silent (died, hung, or cut off from the database)."""
        if self.state == "stopped":
            return "stopped"
        return "alive" if self.alive else "silent"

    @property
    def gone(self) -> bool:
        """Whether the name is free for another process: its writer provably no longer runs, or,
        where that cannot be told from here, it stopped cleanly or went silent. A silent writer
        that still runs on this machine (hung, or stopped by a signal) keeps its name."""
        process = liveness(self.process)
        if process is not Liveness.UNKNOWN:
            return process is Liveness.GONE
        return not self.alive


class NameInUse(Exception):
    """A daemon name is held by a daemon that is alive; str() says which, for the operator."""

    def __init__(self, holder: DaemonRecord):
        where = ProcessKey.parse(holder.process)
        machine = f" on {where.host}" if where is not None else ""
        super().__init__(
            f"another daemon named '{holder.host}' is alive (pid {holder.pid}{machine}, last heartbeat "
            f"{holder.seconds_since_seen:.0f} s ago); give this one another host_name, or stop that one"
        )
        self.holder = holder


@dataclass(frozen=True)
class NameClaim:
    name: str
    # the name's holder before, None if it had none; gone (DaemonRecord.gone), or there would be
    # no claim
    previous: DaemonRecord | None

    @property
    def previous_provably_gone(self) -> bool:
        """Its jobs can be taken back at once: it stopped cleanly, or its process no longer runs."""
        previous = self.previous
        return previous is None or previous.state == "stopped" or liveness(previous.process) is Liveness.GONE


class DaemonRegistry:
    def __init__(self, engine: Engine):
        self.engine = engine

    def claim(self, name: str, *, process: str, pid: int, version: str, interval_seconds: float) -> NameClaim:
        """Take ``name`` for this process: insert its row, or take over the row of a holder that is
        gone (``DaemonRecord.gone``). NameInUse if a live daemon holds it. Compare-and-set on the
        holder's process and last heartbeat, so of two daemons starting at once with one name, one
        gets it."""
        postgresql = self.engine.dialect.name == "postgresql"
        values = {
            "host": name, "version": version, "pid": pid, "process": process, "started_at": utc_now(),
            "seen_at": func.now() if postgresql else utc_now(), "interval_seconds": float(interval_seconds),
            "state": "idle", "current_job": None, "problems": [],
        }
        for _ in range(5):
            holder = self._record(name)
            try:
                with self.engine.begin() as connection:
                    if holder is None:
                        connection.execute(insert(daemons).values(**values))
                        return NameClaim(name, None)
                    if not holder.gone:
                        raise NameInUse(holder)
                    taken = connection.execute(
                        update(daemons)
                        .where(daemons.c.host == name, daemons.c.seen_at == holder.seen_at,
                               daemons.c.process.is_(None) if holder.process is None else daemons.c.process == holder.process)
                        .values(**{key: value for key, value in values.items() if key != "host"})
                    ).rowcount
            except IntegrityError:
                continue  # inserted by another daemon just now: look again
            if taken:
                return NameClaim(name, holder)
        raise RuntimeError(f"could not take the daemon name {name!r}: its row keeps changing")

    def _record(self, name: str) -> DaemonRecord | None:
        return next((record for record in self.daemons(forget_after=None) if record.host == name), None)

    def beat(
        self,
        *,
        host: str,
        version: str,
        pid: int,
        started_at: datetime,
        interval_seconds: float,
        state: str,
        current_job: Mapping[str, Any] | None,
        problems: Sequence[str] = (),
        process: str | None = None,
        gpu: str | None = None,
    ) -> bool:
        """This daemon's row, inserted or rewritten in one statement; False (nothing written) when
        the name belongs to another process now (``claim``: this one was silent long enough for
        another daemon to take its name)."""
        postgresql = self.engine.dialect.name == "postgresql"
        values = {
            "host": host,
            "version": version,
            "pid": pid,
            "process": process,
            "started_at": started_at,
            "seen_at": func.now() if postgresql else utc_now(),
            "interval_seconds": float(interval_seconds),
            "state": state,
            "current_job": dict(current_job) if current_job else None,
            "problems": list(problems),
            "gpu": gpu,
        }
        statement = (postgresql_insert if postgresql else sqlite_insert)(daemons).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=[daemons.c.host],
            set_={name: statement.excluded[name] for name in values if name != "host"},
            where=or_(daemons.c.process.is_(None), daemons.c.process == process),
        ).returning(daemons.c.host)
        with self.engine.begin() as connection:
            return connection.execute(statement).first() is not None

    def daemons(self, forget_after: timedelta | None = FORGET_AFTER) -> list[DaemonRecord]:
        """Every daemon seen in the last 30 days (``forget_after``; None: ever), by name."""
        with self.engine.connect() as connection:
            now = connection.execute(select(func.now())).scalar_one() if self.engine.dialect.name == "postgresql" \
                else utc_now()
            query = select(daemons).order_by(daemons.c.host)
            if forget_after is not None:
                query = query.where(daemons.c.seen_at >= now - forget_after)
            rows = connection.execute(query).all()
        return [
            DaemonRecord(
                host=row.host,
                version=row.version,
                pid=row.pid,
                started_at=row.started_at,
                seen_at=row.seen_at,
                interval_seconds=row.interval_seconds,
                state=row.state,
                current_job=row.current_job,
                problems=tuple(row.problems or ()),
                seconds_since_seen=max(0.0, (now - row.seen_at).total_seconds()),
                process=row.process,
                gpu=row.gpu,
            )
            for row in rows
        ]


def claim_name(registry: DaemonRegistry, configured: str, *, process: ProcessKey, version: str,
               interval_seconds: float) -> NameClaim:
    """This daemon's name: ``configured`` (host_name) if set, refused (NameInUse) while a live daemon
    holds it; else the machine's host name, or, while a live daemon holds that (the service, beside
    which an operator runs ``instarecon run`` by hand), ``<host name>:<pid>``: unique per process."""
    details = {"process": str(process), "pid": process.pid, "version": version, "interval_seconds": interval_seconds}
    if configured:
        return registry.claim(configured, **details)
    try:
        return registry.claim(process.host, **details)
    except NameInUse as taken:
        log.info("the name %s belongs to a daemon that is alive (pid %d)", process.host, taken.holder.pid)
    try:
        return registry.claim(f"{process.host}:{process.pid}", **details)
    except NameInUse:  # containers that share a host name and number their processes alike
        return registry.claim(f"{process.host}:{process.pid}-{secrets.token_hex(2)}", **details)
