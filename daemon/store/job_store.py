"""Every read and write of jobs. Each change is one statement, checked against the
transition table, and appended to the event log in the same transaction."""

from __future__ import annotations

import fcntl
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Iterator, Mapping

from sqlalchemy import (
    BigInteger,
    Engine,
    String,
    and_,
    create_engine,
    event,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from daemon.jobs.records import JobError, RetryRequest, StageRecord
from daemon.store.advisory_lock import advisory_lock
from daemon.store.job_ids import LONG_HASH_DIGITS, SHORT_HASH_DIGITS, job_id_for, new_page_key, outbox_folder_name
from daemon.store.migrate import upgrade_to_head
from daemon.store.states import ALLOWED_FROM, TERMINAL_STATES, JobState
from daemon.store.tables import UtcDateTime, job_events, jobs, utc_now, work_removals
from daemon.this_process import Liveness, liveness, this_process


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
    error: JobError | None
    metrics: Mapping[str, Any]
    options: Mapping[str, Any] | None
    outputs: Mapping[str, Any]
    warnings: tuple[str, ...]
    images: Mapping[str, Any] | None
    stages: Mapping[str, StageRecord]
    host: str | None
    cancel_requested: bool
    cancel_reason: str | None
    retry_token: int | None
    created_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    lease_expires_at: datetime | None = None
    lease_owner: str | None = None  # the process running it (daemon/this_process.py)
    retry_request: RetryRequest | None = None  # a retry that may reuse an earlier attempt's stages
    lease_epoch: int | None = None  # the claim this record was read under (claim_next counts them up)
    gpu: str | None = None  # the GPU the daemon that claimed it was given (its CUDA_VISIBLE_DEVICES)
    private: bool = False  # job.toml's private (or private_by_default): the site's lists leave the job out
    page_key: str | None = None  # names a private job's outbox folder; made when it first becomes private

    @property
    def outbox_name(self) -> str:
        """The job's folder in the outbox: its id, or for a private job ``<id>.<page_key>``."""
        return outbox_folder_name(self.id, self.page_key if self.private else None)

    @classmethod
    def from_row(cls, row: Any) -> "JobRecord":
        data = dict(row._mapping)
        data["state"] = JobState(data["state"])
        data["warnings"] = tuple(data["warnings"] or ())
        data["metrics"] = data["metrics"] or {}
        data["outputs"] = data["outputs"] or {}
        data["stages"] = {name: StageRecord.from_json(entry) for name, entry in (data["stages"] or {}).items()}
        data["error"] = None if data["error"] is None else JobError.from_json(data["error"])
        data["retry_request"] = None if data["retry_request"] is None else RetryRequest.from_json(data["retry_request"])
        return cls(**data)


def _stored(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Columns to write, the records among them in their JSON form."""
    values = dict(fields)
    if isinstance(values.get("error"), JobError):
        values["error"] = values["error"].to_json()
    if isinstance(values.get("retry_request"), RetryRequest):
        values["retry_request"] = values["retry_request"].to_json()
    if "stages" in values:
        values["stages"] = {name: record.to_json() for name, record in values["stages"].items()}
    return values


DEFAULT_LEASE_SECONDS = 60.0
MIGRATION_LOCK_KEY = 7_244_117_003  # any fixed number: the same in every daemon
PG_CONNECT_ARGS = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
                   "keepalives_count": 3}


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
    # The usual postgresql:// (or postgres://) URL means psycopg 3, the driver the `postgresql`
    # extra installs (SQLAlchemy's own default is psycopg2); an explicit +driver is kept.
    url = make_url(database_url)
    backend, _, driver = url.drivername.partition("+")
    if backend in ("postgresql", "postgres"):
        url = url.set(drivername=f"postgresql+{driver or 'psycopg'}")
    # A host cut off without a word (no RST) must not leave a statement hanging for the kernel's
    # two hours: give up connecting after 10 s, and find a dead connection within ~25 s.
    connect_args = {key: value for key, value in PG_CONNECT_ARGS.items() if key not in url.query} \
        if url.drivername.startswith("postgresql") else {}
    try:
        return create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    except ModuleNotFoundError as error:
        hint = " (pip install 'instarecon3d[postgresql]')" if url.drivername == "postgresql+psycopg" else ""
        raise ModuleNotFoundError(f"no database driver for {url.drivername}: {error}{hint}", name=error.name) from error


def open_store(database_url: str, host: str | None = None, lease_seconds: float | None = None) -> "JobStore":
    """Connect and bring the schema up to date (Alembic), keeping existing jobs. Several daemons
    (or a daemon and a command) may start at once on one database: a lock lets one of them
    migrate while the others wait, then find the schema up to date: an advisory lock on
    PostgreSQL, an flock beside the SQLite file."""
    engine = make_engine(database_url)
    if engine.dialect.name == "postgresql":
        with advisory_lock(engine, MIGRATION_LOCK_KEY):
            upgrade_to_head(engine)
    else:
        with _file_lock(engine.url.database):
            upgrade_to_head(engine)
    return JobStore(engine, host=host, lease_seconds=lease_seconds or DEFAULT_LEASE_SECONDS)


@contextmanager
def _file_lock(database: str | None) -> Iterator[None]:
    """Without the lock (a user who may read the state folder but not write it) migration goes
    on unguarded: such a user cannot migrate anyway, and the schema is usually up to date."""
    try:
        handle = open(f"{database}.migration-lock", "a") if database and database != ":memory:" else None
    except OSError:
        handle = None
    if handle is None:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


class JobStore:
    """``host`` names this daemon in the jobs it runs; ``lease_seconds`` is how long a running job
    stays its own without a renewal (``renew_lease``), after which another daemon may take it over.
    The lease is held by this process (``process``, a key from daemon/this_process.py), never by
    the name: a job is this daemon's only while this very process holds its lease."""

    def __init__(self, engine: Engine, host: str | None = None, lease_seconds: float = DEFAULT_LEASE_SECONDS,
                 process: str | None = None, gpu: str | None = None):
        self.engine = engine
        self.host = host or socket.gethostname()
        self.lease = timedelta(seconds=lease_seconds)
        self.process = process or str(this_process())
        self.gpu = gpu  # recorded in the jobs this daemon claims

    def named(self, host: str, gpu: str | None = None) -> "JobStore":
        """The same store for a daemon of another name (the one DaemonRegistry.claim gave it), given ``gpu``."""
        return JobStore(self.engine, host=host, lease_seconds=self.lease.total_seconds(), process=self.process,
                        gpu=gpu)

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

    def _attempt_of(self, set_name: str, attempt: int) -> JobRecord | None:
        query = select(jobs).where(and_(jobs.c.set_name == set_name, jobs.c.attempt == attempt))
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        return JobRecord.from_row(row) if row else None

    def list_jobs(self, states: Iterable[JobState] | None = None, limit: int | None = None,
                  created_since: datetime | None = None) -> list[JobRecord]:
        """Newest first; ``limit`` counts the jobs left after the filters."""
        query = select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
        if states is not None:
            query = query.where(jobs.c.state.in_([str(s) for s in states]))
        if created_since is not None:
            query = query.where(jobs.c.created_at >= created_since)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as connection:
            return [JobRecord.from_row(row) for row in connection.execute(query)]

    def job_ids(self) -> set[str]:
        with self.engine.connect() as connection:
            return set(connection.execute(select(jobs.c.id)).scalars())

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
        attempt: int | None = None,
        retry_request: RetryRequest | None = None,
        private: bool = False,
    ) -> JobRecord:
        """A new attempt for the set. With ``attempt`` (the one after the latest the caller saw),
        exactly that one: when another daemon, seeing the same set, created it first, the unique
        (set_name, attempt) constraint refuses ours and its job is returned, so a set becomes one
        job however many daemons see it. Without, the next free number (``instarecon retry``).
        Should the id be another set's already (their names' short hashes collide: see job_ids),
        the id takes a longer hash. A ``private`` job gets its page key here, once."""
        digits = SHORT_HASH_DIGITS
        for _ in range(5):
            now = utc_now()
            try:
                with self.engine.begin() as connection:
                    number = attempt or connection.execute(
                        select(func.coalesce(func.max(jobs.c.attempt), 0)).where(jobs.c.set_name == set_name)
                    ).scalar_one() + 1
                    job_id = job_id_for(set_name, number, digits)
                    connection.execute(
                        insert(jobs).values(
                            id=job_id,
                            set_name=set_name,
                            source_path=str(source_path),
                            source_kind=source_kind,
                            fingerprint=fingerprint,
                            attempt=number,
                            state=str(state),
                            progress=0.0,
                            message=message,
                            metrics={},
                            outputs={},
                            warnings=[],
                            stages={},
                            cancel_requested=False,
                            retry_token=retry_token,
                            retry_request=None if retry_request is None else retry_request.to_json(),
                            private=private,
                            page_key=new_page_key() if private else None,
                            created_at=now,
                            queued_at=now if state == JobState.QUEUED else None,
                            updated_at=now,
                        )
                    )
                    self._log_event(connection, job_id, "state", state=state, message=message)
            except IntegrityError:  # the transaction is rolled back
                holder = self.get(job_id)
                if holder is not None and holder.set_name != set_name:
                    digits = LONG_HASH_DIGITS  # another set's job has this id
                    continue
                if attempt is not None:
                    made = self._attempt_of(set_name, attempt)
                    if made is not None:
                        return made  # another daemon made this very attempt: it is the one job
                continue  # another writer took this attempt number; count again
            return self.get(job_id)
        raise RuntimeError(f"could not create a job for set {set_name!r}")

    def transition(self, job_id: str, to_state: JobState, message: str, *,
                   from_states: Iterable[JobState] | None = None, **fields: Any) -> bool:
        """Move a job to ``to_state`` if the table allows it from its current state, and, for a
        running job, only if this daemon runs it (a daemon whose job was taken over changes nothing).
        ``from_states`` narrows the table to the states the caller saw the job in: the inbox's
        "waiting, now complete" must not put back in the queue a job that this daemon's worker
        claimed a moment ago (the table allows running -> queued, for a stopping daemon).

        Returns False (and changes nothing) otherwise, e.g. a job cancelled a moment ago.
        """
        now = utc_now()
        values: dict[str, Any] = {"state": str(to_state), "message": message, "updated_at": now, **_stored(fields)}
        if to_state == JobState.QUEUED:
            values.setdefault("queued_at", now)
        if to_state in (JobState.DONE, JobState.FAILED, JobState.CANCELLED):
            values.setdefault("finished_at", now)
        if to_state != JobState.RUNNING:
            values.setdefault("lease_expires_at", None)
            values.setdefault("lease_owner", None)
        wanted = ALLOWED_FROM[to_state] if from_states is None else ALLOWED_FROM[to_state] & frozenset(from_states)
        allowed = [str(state) for state in wanted]
        with self.engine.begin() as connection:
            changed = connection.execute(
                update(jobs).where(and_(jobs.c.id == job_id, jobs.c.state.in_(allowed), self._ours())).values(**values)
            ).rowcount
            if changed:
                stage = fields.get("stage")
                self._log_event(connection, job_id, "state", state=to_state, stage=stage, message=message)
        return bool(changed)

    def claim_next(self, pass_over: Collection[str] = ()) -> JobRecord | None:
        """Take the oldest queued job, or a running one whose host let its lease pass (it died or
        lost the database): it resumes here from its last finished stage. The candidate is locked
        (SKIP LOCKED on PostgreSQL) and the update checks the condition again, so two daemons never
        take the same job. ``pass_over``: ids this daemon does not want now (jobs waiting for its
        disk space); they keep their place for the next claim."""
        for _ in range(5):
            now = utc_now()
            claimable = or_(
                jobs.c.state == str(JobState.QUEUED),
                and_(jobs.c.state == str(JobState.RUNNING), jobs.c.lease_expires_at < self._clock_now()),
            )
            candidate = select(jobs.c.id, jobs.c.state, jobs.c.host, jobs.c.lease_owner).where(claimable)
            if pass_over:
                candidate = candidate.where(jobs.c.id.not_in(list(pass_over)))
            candidate = candidate.order_by(jobs.c.queued_at, jobs.c.id).limit(1)
            if self.engine.dialect.name == "postgresql":
                candidate = candidate.with_for_update(skip_locked=True)
            with self.engine.begin() as connection:
                found = connection.execute(candidate).first()
                if found is None:
                    return None
                message = "started"
                if found.state == str(JobState.RUNNING):
                    message = (f"taken over from {found.host}, whose lease ran out" if found.lease_owner != self.process
                               else "resumed after its lease ran out here (the job store was away)")
                row = connection.execute(
                    update(jobs)
                    .where(and_(jobs.c.id == found.id, claimable))
                    .values(
                        state=str(JobState.RUNNING),
                        host=self.host,
                        lease_owner=self.process,
                        lease_epoch=func.coalesce(jobs.c.lease_epoch, 0) + 1,
                        gpu=self.gpu,
                        lease_expires_at=self._clock_now() + self.lease,
                        started_at=func.coalesce(jobs.c.started_at, now),
                        updated_at=now,
                        message=message,
                    )
                    .returning(*jobs.c)
                ).first()
                if row is None:
                    continue  # claimed by another daemon between the two statements: look again
                self._log_event(connection, row.id, "state", state=JobState.RUNNING, stage=row.stage, message=message)
            return JobRecord.from_row(row)
        return None

    def fenced(self, job_id: str, epoch: int, action: Callable[[], None]) -> bool:
        """Run ``action`` (renames into the job's folders) only while this daemon still holds the
        claim ``epoch`` of the running job, and with the job's row locked meanwhile: a takeover, an
        update of the same row, waits until the action is done, so nothing of an older claim lands
        after a newer one began. False, and nothing done, when the claim is not ours any more."""
        with self.engine.begin() as connection:
            held = connection.execute(
                update(jobs)
                .where(and_(jobs.c.id == job_id, jobs.c.state == str(JobState.RUNNING),
                            jobs.c.lease_owner == self.process, jobs.c.lease_epoch == epoch))
                .values(lease_epoch=epoch)  # a write: it takes the row's lock (SQLite: the database's) until commit
            ).rowcount
            if held:
                action()
        return bool(held)

    def renew_lease(self, job_id: str) -> bool:
        """Extend this daemon's hold on its running job; False when the job is no longer ours
        (taken over after our lease ran out, or no longer running): the caller must stop."""
        with self.engine.begin() as connection:
            renewed = connection.execute(
                update(jobs)
                .where(and_(jobs.c.id == job_id, jobs.c.state == str(JobState.RUNNING), jobs.c.lease_owner == self.process))
                .values(lease_expires_at=self._clock_now() + self.lease)
            ).rowcount
        return bool(renewed)

    def update_fields(self, job_id: str, *, owner_only: bool = False, in_states: Iterable[JobState] | None = None,
                      **fields: Any) -> None:
        """Progress, metrics and the like: no state change, so no transition check. ``owner_only``:
        only while the job runs in this process (the runner's writes: ours may have been taken over,
        and even finished, by another daemon). ``in_states``: only while the job is in one of them
        (as the caller saw it)."""
        where = and_(jobs.c.id == job_id, self._running_here()) if owner_only else jobs.c.id == job_id
        if in_states is not None:
            where = and_(where, jobs.c.state.in_([str(state) for state in in_states]))
        with self.engine.begin() as connection:
            connection.execute(update(jobs).where(where).values(updated_at=utc_now(), **_stored(fields)))

    def set_private(self, job_id: str, private: bool, in_states: Iterable[JobState]) -> bool:
        """Make a job that has not started private or public (its set's job.toml changed while it
        waited); its page key is made the first time and kept. True if the job changed."""
        where = and_(jobs.c.id == job_id, jobs.c.private != private,
                     jobs.c.state.in_([str(state) for state in in_states]))
        with self.engine.begin() as connection:
            changed = connection.execute(
                update(jobs).where(where).values(
                    private=private, page_key=func.coalesce(jobs.c.page_key, literal(new_page_key())),
                    updated_at=utc_now())
            ).rowcount
        return bool(changed)

    def set_stage(self, job_id: str, stage: str, record: StageRecord, message: str, **fields: Any) -> None:
        """Record a stage starting or ending: its entry in ``stages`` and an event (only while the job
        runs in this process: not once another daemon took it over, nor after it finished there)."""
        with self.engine.begin() as connection:
            current = connection.execute(select(jobs.c.stages).where(jobs.c.id == job_id)).scalar_one()
            stages = {**(current or {}), stage: record.to_json()}
            changed = connection.execute(
                update(jobs)
                .where(and_(jobs.c.id == job_id, self._running_here()))
                .values(stage=stage, stages=stages, message=message, updated_at=utc_now(), **_stored(fields))
            ).rowcount
            if changed:
                self._log_event(connection, job_id, "stage", stage=stage, state=str(record.state), message=message)

    def request_cancel(self, job_id: str, reason: str) -> JobRecord | None:
        """Cancel a job: at once when it is not running, else ask its supervisor to stop it."""
        job = self.get(job_id)
        if job is None:
            return None
        if job.state in (JobState.WAITING, JobState.QUEUED):
            # not if claimed since (by this daemon's worker, say): its supervisor must stop the stage
            if self.transition(job_id, JobState.CANCELLED, reason, cancel_reason=reason,
                               from_states=(JobState.WAITING, JobState.QUEUED)):
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

    def requeue_orphans(self, name_was_free: bool) -> list[JobRecord]:
        """Running jobs whose daemon process is provably gone (it ran on this machine and has
        exited, or ran in an earlier boot of it) go back to the queue at once, to resume. Any other
        running job stays its holder's until its lease runs out. ``name_was_free``: this daemon took
        its name from a holder that was gone (DaemonRegistry.claim); then the jobs of that name
        that were started before leases named their process are its orphans too."""
        orphans = []
        for job in self.list_jobs(states=[JobState.RUNNING]):
            if job.lease_owner is None:
                gone = name_was_free and job.host in (None, self.host)
            else:
                gone = liveness(job.lease_owner) is Liveness.GONE
            if gone and self._requeue_orphan(job):
                orphans.append(job)
        return orphans

    def _requeue_orphan(self, job: JobRecord) -> bool:
        """Back to the queue, if still held by the same gone process (another daemon may have
        taken it over meanwhile)."""
        where = f" at {job.stage}" if job.stage else ""
        message = f"resuming{where}: the daemon that ran it ({job.host}) has stopped"
        held_by = jobs.c.lease_owner.is_(None) if job.lease_owner is None else jobs.c.lease_owner == job.lease_owner
        with self.engine.begin() as connection:
            changed = connection.execute(
                update(jobs)
                .where(and_(jobs.c.id == job.id, jobs.c.state == str(JobState.RUNNING), held_by))
                .values(state=str(JobState.QUEUED), message=message, lease_owner=None, lease_expires_at=None,
                        updated_at=utc_now())
            ).rowcount
            if changed:
                self._log_event(connection, job.id, "state", state=JobState.QUEUED, stage=job.stage, message=message)
        return bool(changed)

    def _clock_now(self) -> Any:
        """The time leases are measured by: PostgreSQL's own clock, so hosts whose clocks disagree
        still agree on when a lease ran out; this host's clock for SQLite (one host)."""
        if self.engine.dialect.name == "postgresql":
            return func.now()
        return utc_now()

    def _ours(self):
        """A job not running, or running in this process: the only ones this daemon may change as it
        runs them."""
        return or_(jobs.c.state != str(JobState.RUNNING), jobs.c.lease_owner == self.process)

    def _running_here(self):
        """A job running in this process: the only writes a runner may make, whoever ran it since."""
        return and_(jobs.c.state == str(JobState.RUNNING), jobs.c.lease_owner == self.process)

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

    # ---- work folder retention (daemon/jobs/retention.py)

    def finished_before(self, states: Iterable[JobState], moment: datetime) -> list[JobRecord]:
        """Jobs in ``states`` (finished ones only) that finished before ``moment`` and whose work
        folder is not recorded as removed (``record_work_removed``), the longest finished first."""
        wanted = {JobState(state) for state in states}
        if not wanted <= TERMINAL_STATES:
            raise ValueError(f"only finished jobs have a finished_at: {sorted(wanted - TERMINAL_STATES)}")
        removed = select(work_removals.c.job_id).where(work_removals.c.job_id == jobs.c.id).exists()
        query = (
            select(jobs)
            .where(and_(jobs.c.state.in_([str(s) for s in wanted]), jobs.c.finished_at < moment, ~removed))
            .order_by(jobs.c.finished_at, jobs.c.id)
        )
        with self.engine.connect() as connection:
            return [JobRecord.from_row(row) for row in connection.execute(query)]

    def record_work_removed(self, job_id: str, at: datetime, bytes_freed: int | None, note: str | None) -> bool:
        """Record that a finished job's work folder is gone (``bytes_freed`` None: it was gone
        already). Its outputs, paths into that folder, are cleared (kept in the work_removals row)
        and ``note`` joins its warnings, so its status.json, written again, names no file that is
        gone. False, changing nothing, when the job is not finished or another daemon recorded the
        removal first: the primary key of work_removals lets one record per job through."""
        finished = [str(state) for state in TERMINAL_STATES]
        record = select(
            jobs.c.id, literal(at, UtcDateTime()), literal(self.host, String()), literal(bytes_freed, BigInteger()),
            jobs.c.outputs,
        ).where(and_(jobs.c.id == job_id, jobs.c.state.in_(finished)))
        try:
            with self.engine.begin() as connection:  # the write first: SQLite then holds its write lock
                added = connection.execute(
                    insert(work_removals)
                    .from_select(["job_id", "removed_at", "host", "bytes_freed", "outputs"], record)
                    .returning(work_removals.c.job_id)  # (psycopg counts no rows of an INSERT ... SELECT)
                ).first()
                if added is None:
                    return False
                row = connection.execute(select(jobs.c.outputs, jobs.c.warnings).where(jobs.c.id == job_id)).one()
                warnings = list(row.warnings or ())
                if note and note not in warnings:
                    warnings.append(note)
                if row.outputs or len(warnings) != len(row.warnings or ()):
                    connection.execute(
                        update(jobs).where(jobs.c.id == job_id).values(outputs={}, warnings=warnings, updated_at=utc_now())
                    )
        except IntegrityError:  # the transaction is rolled back
            return False
        return True

    # ---- removal: a set gone from the inbox, `instarecon remove`

    def jobs_of_set(self, set_name: str) -> list[JobRecord]:
        """Every attempt of the set, the first first."""
        query = select(jobs).where(jobs.c.set_name == set_name).order_by(jobs.c.attempt)
        with self.engine.connect() as connection:
            return [JobRecord.from_row(row) for row in connection.execute(query)]

    def set_names_not_removed(self) -> set[str]:
        """The sets with at least one job that is not removed: those whose leaving the inbox matters."""
        query = select(jobs.c.set_name).where(jobs.c.state != str(JobState.REMOVED)).distinct()
        with self.engine.connect() as connection:
            return set(connection.execute(query).scalars())

    def mark_removed(self, job_id: str, message: str) -> bool:
        """A waiting, queued or ended job becomes removed (an ended one keeps its finished_at);
        False, changing nothing, for a running job (cancel it first: its supervisor must stop the
        stage) or one removed already."""
        return self.transition(job_id, JobState.REMOVED, message,
                               finished_at=func.coalesce(jobs.c.finished_at, utc_now()))
