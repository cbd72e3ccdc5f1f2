"""The job store: jobs and their event log in SQLAlchemy (SQLite by default, PostgreSQL too)."""

from daemon.store.daemon_registry import DaemonRecord, DaemonRegistry, NameClaim, NameInUse, claim_name
from daemon.store.job_store import JobRecord, JobStore, open_store
from daemon.store.states import ACTIVE_STATES, TERMINAL_STATES, JobState

__all__ = ["ACTIVE_STATES", "TERMINAL_STATES", "DaemonRecord", "DaemonRegistry", "JobRecord", "JobState", "JobStore",
           "NameClaim", "NameInUse", "claim_name", "open_store"]
