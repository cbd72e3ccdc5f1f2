"""Which daemons share this job store, and which of them are alive.

Each daemon rewrites its own row at every heartbeat. Ages are measured by the database's clock
(PostgreSQL's ``now()``), as leases are, so hosts whose clocks disagree still agree on who is
silent; on SQLite, one host, by this host's clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping, Sequence

from sqlalchemy import Engine, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from daemon.store.tables import daemons, utc_now

MISSED_BEATS = 3  # a daemon silent for this many heartbeat intervals counts as down
FORGET_AFTER = timedelta(days=30)  # a host not seen for this long is no longer listed


@dataclass(frozen=True)
class DaemonRecord:
    host: str
    version: str
    pid: int
    started_at: datetime
    seen_at: datetime
    interval_seconds: float
    state: str  # idle, running or stopped
    current_job: Mapping[str, Any] | None
    problems: tuple[str, ...]
    seconds_since_seen: float  # by the database's clock, when it was read

    @property
    def alive(self) -> bool:
        return self.state != "stopped" and self.seconds_since_seen <= MISSED_BEATS * self.interval_seconds

    @property
    def condition(self) -> str:
        """alive, stopped (shut down cleanly) or silent (died, hung, or cut off from the database)."""
        if self.state == "stopped":
            return "stopped"
        return "alive" if self.alive else "silent"


class DaemonRegistry:
    def __init__(self, engine: Engine):
        self.engine = engine

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
    ) -> None:
        """This daemon's row, inserted or rewritten in one statement."""
        postgresql = self.engine.dialect.name == "postgresql"
        values = {
            "host": host,
            "version": version,
            "pid": pid,
            "started_at": started_at,
            "seen_at": func.now() if postgresql else utc_now(),
            "interval_seconds": float(interval_seconds),
            "state": state,
            "current_job": dict(current_job) if current_job else None,
            "problems": list(problems),
        }
        statement = (postgresql_insert if postgresql else sqlite_insert)(daemons).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=[daemons.c.host],
            set_={name: statement.excluded[name] for name in values if name != "host"},
        )
        with self.engine.begin() as connection:
            connection.execute(statement)

    def daemons(self) -> list[DaemonRecord]:
        """Every daemon seen in the last 30 days, by host name."""
        with self.engine.connect() as connection:
            now = connection.execute(select(func.now())).scalar_one() if self.engine.dialect.name == "postgresql" \
                else utc_now()
            rows = connection.execute(
                select(daemons).where(daemons.c.seen_at >= now - FORGET_AFTER).order_by(daemons.c.host)
            ).all()
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
            )
            for row in rows
        ]
