"""The one thread that runs jobs, one at a time, while the main loop watches the inbox."""

from __future__ import annotations

import logging
import threading

from daemon.job_runner import JobRunner
from daemon.journal import job_fields
from daemon.store import JobRecord, JobState, JobStore

log = logging.getLogger("instarecon.worker")

IDLE_POLL_SECONDS = 2.0  # also picks up jobs queued by `instarecon retry` from another process


class JobWorker(threading.Thread):
    def __init__(self, store: JobStore, runner: JobRunner, stop_requested: threading.Event):
        super().__init__(name="job-worker", daemon=True)
        self._store = store
        self._runner = runner
        self._stop_requested = stop_requested
        self._nudge = threading.Event()
        self._current: JobRecord | None = None

    @property
    def current_job(self) -> JobRecord | None:
        return self._current

    def nudge(self) -> None:
        """Look for a queued job now rather than at the next poll."""
        self._nudge.set()

    def run(self) -> None:
        while not self._stop_requested.is_set():
            try:
                job = self._store.claim_next()
            except Exception:  # the database is briefly away: keep the thread, try again
                log.exception("could not look for the next job; trying again")
                self._stop_requested.wait(IDLE_POLL_SECONDS)
                continue
            if job is None:
                self._nudge.wait(IDLE_POLL_SECONDS)
                self._nudge.clear()
                continue
            self._current = job
            where = f", resuming at {job.stage}" if job.stage else ""
            log.info("%s: job %s started (attempt %d%s)", job.set_name, job.id, job.attempt, where, extra=job_fields(job))
            try:
                self._runner.run(job)
            except Exception as error:  # a bug of ours must not stop the queue
                log.exception("%s: internal error", job.set_name, extra=job_fields(job))
                message = f"internal error in the daemon: {error}"
                self._store.transition(
                    job.id, JobState.FAILED, message,
                    error={"stage": job.stage, "message": message, "hint": "please report this with the journal"},
                )
            finally:
                self._current = None
