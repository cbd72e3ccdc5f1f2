"""Every read and write of jobs. Each change is one statement, checked against the
transition table, and appended to the event log in the same transaction."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping

from sqlalchemy import Engine, and_, create_engine, event, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from daemon.store.job_ids import job_id_for
from daemon.store.migrate import upgrade_to_head
from daemon.store.states import ALLOWED_FROM, JobState
from daemon.store.tables import job_events, jobs, utc_now


@dataclass(frozen=True)
class JobRecord:
    id: str
    set_name: str
    source_path: str
    source_kind: str
    fingerprint: str
    attempt: int
    state: JobState
    stage: str | None
    progress: float
    message: str
    error: Mapping[str, Any] | None
    metrics: Mapping[str, Any]
    options: Mapping[str, Any] | None
    outputs: Mapping[str, Any]
    warnings: tuple[str, ...]
    images: Mapping[str, Any] | None
    stages: Mapping[str, Mapping[str, Any]]
    host: str | None
    cancel_requested: bool
    cancel_reason: str | None
    retry_token: int | None
    created_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> "JobRecord":
        data = dict(row._mapping)
        data["state"] = JobState(data["state"])
        data["warnings"] = tuple(data["warnings"] or ())
        data["metrics"] = data["metrics"] or {}
        data["outputs"] = data["outputs"] or {}
        data["stages"] = data["stages"] or {}
        return cls(**data)


def make_engine(database_url: str) -> Engine:
    if database_url.startswith("sqlite"):
        engine = create_engine(database_url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection, _record):
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(database_url, pool_pre_ping=True)


def open_store(database_url: str) -> "JobStore":
    """Connect and bring the schema up to date (Alembic), keeping existing jobs."""
    engine = make_engine(database_url)
    upgrade_to_head(engine)
    return JobStore(engine)


class JobStore:
    def __init__(self, engine: Engine, host: str | None = None):
        self.engine = engine
        self.host = host or socket.gethostname()

    # ---- reading

    def get(self, job_id: str) -> JobRecord | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(jobs).where(jobs.c.id == job_id)).first()
        return JobRecord.from_row(row) if row else None

    def latest_for_set(self, set_name: str) -> JobRecord | None:
        query = select(jobs).where(jobs.c.set_name == set_name).order_by(jobs.c.attempt.desc()).limit(1)
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        return JobRecord.from_row(row) if row else None

    def list_jobs(self, states: Iterable[JobState] | None = None, limit: int | None = None) -> list[JobRecord]:
        query = select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
        if states is not None:
            query = query.where(jobs.c.state.in_([str(s) for s in states]))
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as connection:
            return [JobRecord.from_row(row) for row in connection.execute(query)]

    def changed_since(self, moment: datetime | None) -> list[JobRecord]:
        query = select(jobs).order_by(jobs.c.updated_at)
        if moment is not None:
            query = query.where(jobs.c.updated_at >= moment)
        with self.engine.connect() as connection:
            return [JobRecord.from_row(row) for row in connection.execute(query)]

    def count_by_state(self) -> dict[JobState, int]:
        query = select(jobs.c.state, func.count()).group_by(jobs.c.state)
        with self.engine.connect() as connection:
            counts = {JobState(state): count for state, count in connection.execute(query)}
        return {state: counts.get(state, 0) for state in JobState}

    def events(self, job_id: str) -> list[dict[str, Any]]:
        query = select(job_events).where(job_events.c.job_id == job_id).order_by(job_events.c.id)
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    # ---- writing

    def create_job(
        self,
        *,
        set_name: str,
        source_path: Path,
        source_kind: str,
        fingerprint: str,
        state: JobState,
        message: str,
        retry_token: int | None = None,
    ) -> JobRecord:
        """A new attempt for the set: attempt numbers count up, and the unique
        (set_name, attempt) constraint makes two writers agree on one job."""
        for _ in range(5):
            now = utc_now()
            with self.engine.begin() as connection:
                attempt = (
                    connection.execute(
                        select(func.coalesce(func.max(jobs.c.attempt), 0)).where(jobs.c.set_name == set_name)
                    ).scalar_one()
                    + 1
                )
                job_id = job_id_for(set_name, attempt)
                try:
                    connection.execute(
                        insert(jobs).values(
                            id=job_id,
                            set_name=set_name,
                            source_path=str(source_path),
                            source_kind=source_kind,
                            fingerprint=fingerprint,
                            attempt=attempt,
                            state=str(state),
                            progress=0.0,
                            message=message,
                            metrics={},
                            outputs={},
                            warnings=[],
                            stages={},
                            cancel_requested=False,
                            retry_token=retry_token,
                            created_at=now,
                            queued_at=now if state == JobState.QUEUED else None,
                            updated_at=now,
                        )
                    )
                except IntegrityError:
                    continue  # another writer took this attempt number; count again
                self._log_event(connection, job_id, "state", state=state, message=message)
            return self.get(job_id)
        raise RuntimeError(f"could not create a job for set {set_name!r}")

    def transition(self, job_id: str, to_state: JobState, message: str, **fields: Any) -> bool:
        """Move a job to ``to_state`` if the table allows it from its current state.

        Returns False (and changes nothing) otherwise, e.g. a job cancelled a moment ago.
        """
        now = utc_now()
        values: dict[str, Any] = {"state": str(to_state), "message": message, "updated_at": now, **fields}
        if to_state == JobState.QUEUED:
            values.setdefault("queued_at", now)
        if to_state in (JobState.DONE, JobState.FAILED, JobState.CANCELLED):
            values.setdefault("finished_at", now)
        allowed = [str(s) for s in ALLOWED_FROM[to_state]]
        with self.engine.begin() as connection:
            changed = connection.execute(
                update(jobs).where(and_(jobs.c.id == job_id, jobs.c.state.in_(allowed))).values(**values)
            ).rowcount
            if changed:
                stage = fields.get("stage")
                self._log_event(connection, job_id, "state", state=to_state, stage=stage, message=message)
        return bool(changed)

    def claim_next(self) -> JobRecord | None:
        """Take the oldest queued job in one statement, so two daemons never take the same one."""
        now = utc_now()
        oldest = (
            select(jobs.c.id)
            .where(jobs.c.state == str(JobState.QUEUED))
            .order_by(jobs.c.queued_at, jobs.c.id)
            .limit(1)
        )
        if self.engine.dialect.name == "postgresql":
            oldest = oldest.with_for_update(skip_locked=True)
        statement = (
            update(jobs)
            .where(and_(jobs.c.id == oldest.scalar_subquery(), jobs.c.state == str(JobState.QUEUED)))
            .values(
                state=str(JobState.RUNNING),
                host=self.host,
                started_at=func.coalesce(jobs.c.started_at, now),
                updated_at=now,
                message="started",
            )
            .returning(*jobs.c)
        )
        with self.engine.begin() as connection:
            row = connection.execute(statement).first()
            if row is None:
                return None
            self._log_event(connection, row.id, "state", state=JobState.RUNNING, stage=row.stage, message="started")
        return JobRecord.from_row(row)

    def update_fields(self, job_id: str, **fields: Any) -> None:
        """Progress, metrics and the like: no state change, so no transition check."""
        with self.engine.begin() as connection:
            connection.execute(update(jobs).where(jobs.c.id == job_id).values(updated_at=utc_now(), **fields))

    def set_stage(self, job_id: str, stage: str, stage_entry: Mapping[str, Any], message: str, **fields: Any) -> None:
        """Record a stage starting or ending: its entry in ``stages`` and an event."""
        with self.engine.begin() as connection:
            current = connection.execute(select(jobs.c.stages).where(jobs.c.id == job_id)).scalar_one()
            stages = {**(current or {}), stage: dict(stage_entry)}
            connection.execute(
                update(jobs)
                .where(jobs.c.id == job_id)
                .values(stage=stage, stages=stages, message=message, updated_at=utc_now(), **fields)
            )
            self._log_event(connection, job_id, "stage", stage=stage, state=stage_entry.get("state"), message=message)

    def request_cancel(self, job_id: str, reason: str) -> JobRecord | None:
        """Cancel a job: at once when it is not running, else ask its supervisor to stop it."""
        job = self.get(job_id)
        if job is None:
            return None
        if job.state in (JobState.WAITING, JobState.QUEUED):
            if self.transition(job_id, JobState.CANCELLED, reason, cancel_reason=reason):
                return self.get(job_id)
            job = self.get(job_id)
        if job.state == JobState.RUNNING and not job.cancel_requested:
            with self.engine.begin() as connection:
                connection.execute(
                    update(jobs)
                    .where(and_(jobs.c.id == job_id, jobs.c.state == str(JobState.RUNNING)))
                    .values(cancel_requested=True, cancel_reason=reason, updated_at=utc_now())
                )
        return self.get(job_id)

    def requeue_interrupted(self) -> list[JobRecord]:
        """Jobs this host was running when it died go back to the queue, to resume."""
        interrupted = [
            job for job in self.list_jobs(states=[JobState.RUNNING]) if job.host in (None, self.host)
        ]
        for job in interrupted:
            where = f" at {job.stage}" if job.stage else ""
            self.transition(
                job.id, JobState.QUEUED, f"resuming{where} after the daemon restarted", queued_at=job.queued_at
            )
        return interrupted

    def _log_event(self, connection, job_id: str, kind: str, *, state=None, stage=None, message: str = "") -> None:
        connection.execute(
            insert(job_events).values(
                job_id=job_id,
                at=utc_now(),
                kind=kind,
                state=None if state is None else str(state),
                stage=stage,
                message=message,
            )
        )
