"""Table definitions; Alembic migrations under daemon/migrations create and evolve them."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

from inbox_protocol.file_names import name_from_store, stored_name, without_surrogates


class UtcDateTime(TypeDecorator):
    """Aware UTC datetimes in and out, on SQLite (which keeps no zone) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the job store")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class FileNameText(TypeDecorator):
    """A set's name or path exactly as the file system holds it, even when it is not valid UTF-8
    (inbox_protocol/file_names.py escapes '%' and undecodable bytes as %XX in the database)."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else stored_name(value)

    def process_result_value(self, value, dialect):
        return None if value is None else name_from_store(value)


class MessageText(TypeDecorator):
    """A message for people, which may quote a file name: an undecodable byte in it is stored as
    the text \\xNN rather than refused by the database."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else without_surrogates(value)


metadata = MetaData()

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("set_name", FileNameText(1024), nullable=False),
    Column("source_path", FileNameText, nullable=False),
    Column("source_kind", String(16), nullable=False),  # "folder" or "zip"
    Column("fingerprint", String(64), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("stage", String(32)),
    Column("progress", Float, nullable=False, default=0.0),
    Column("message", MessageText, nullable=False, default=""),
    Column("error", JSON),
    Column("metrics", JSON, nullable=False, default=dict),
    Column("options", JSON),
    Column("outputs", JSON, nullable=False, default=dict),
    Column("warnings", JSON, nullable=False, default=list),
    Column("images", JSON),
    Column("stages", JSON, nullable=False, default=dict),
    Column("host", String(255)),  # the daemon running the job (its name: host_name, or the machine's)
    Column("lease_owner", String(255)),  # and its process (daemon/this_process.py): who holds the lease
    Column("lease_epoch", Integer),  # how many times the job was claimed: names the claim's work folder
    Column("gpu", String(255)),  # the GPU it ran on: CUDA_VISIBLE_DEVICES of the daemon that claimed it last
    Column("lease_expires_at", UtcDateTime),  # a running job whose lease passed may be taken over
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("cancel_reason", MessageText),
    Column("retry_token", BigInteger),  # mtime of the RETRY file this attempt answered
    Column("retry_request", JSON),  # RetryRequest: the earlier attempt whose stages this one may reuse
    Column("private", Boolean, nullable=False, default=False),  # job.toml's private: left out of the site's lists
    Column("page_key", String(64)),  # a private job's outbox folder is <id>.<page_key> (daemon/store/job_ids.py)
    Column("created_at", UtcDateTime, nullable=False),
    Column("queued_at", UtcDateTime),
    Column("started_at", UtcDateTime),
    Column("finished_at", UtcDateTime),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("set_name", "attempt", name="uq_jobs_set_attempt"),
    Index("ix_jobs_state_queued_at", "state", "queued_at"),
    Index("ix_jobs_updated_at", "updated_at"),
)

job_events = Table(
    "job_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(255), ForeignKey("jobs.id"), nullable=False, index=True),
    Column("at", UtcDateTime, nullable=False),
    Column("kind", String(16), nullable=False),  # "state" or "stage"
    Column("state", String(16)),
    Column("stage", String(32)),
    Column("message", MessageText, nullable=False, default=""),
)

# One row per job whose work folder (state/jobs/<job_id>/) retention removed, or found already gone
# (daemon/jobs/retention.py). The primary key makes the record once-only whichever daemon gets there
# first; ``outputs`` keeps what the job's outputs named in that folder before they were cleared.
work_removals = Table(
    "work_removals",
    metadata,
    Column("job_id", String(255), ForeignKey("jobs.id"), primary_key=True),
    Column("removed_at", UtcDateTime, nullable=False),
    Column("host", String(255)),  # the daemon that removed it
    Column("bytes_freed", BigInteger),  # disk space the folder took (as du counts it); null: already gone
    Column("outputs", JSON),
)

# One row per daemon name (host_name, or the machine's), rewritten at every heartbeat: who is alive,
# and doing what. A name belongs to one live process at a time (DaemonRegistry.claim).
daemons = Table(
    "daemons",
    metadata,
    Column("host", String(255), primary_key=True),
    Column("version", String(64), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("process", String(255)),  # the process key (daemon/this_process.py) that holds the name now
    Column("started_at", UtcDateTime, nullable=False),
    Column("seen_at", UtcDateTime, nullable=False),  # the database's clock on PostgreSQL
    Column("interval_seconds", Float, nullable=False),
    Column("state", String(16), nullable=False),  # idle, running or stopped
    Column("current_job", JSON),  # {job_id, name, stage, progress} while running
    Column("problems", JSON, nullable=False, default=list),
    Column("gpu", String(255)),  # its CUDA_VISIBLE_DEVICES (instarecon@N.service: N); null: not given one
)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)
