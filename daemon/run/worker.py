"""The one thread that runs jobs, one at a time, while the main loop watches the inbox."""

from __future__ import annotations

import logging
import threading

from daemon.jobs.records import JobError
from daemon.journal import job_fields
from daemon.run.runner import JobRunner
from daemon.store import JobRecord, JobState, JobStore
from daemon.store.outage import StoreOutage, StoreUnavailable, is_outage

log = logging.getLogger("instarecon.worker")

IDLE_POLL_SECONDS = 2.0  # also picks up jobs queued by `instarecon retry` from another process
SPACE_RETRY_SECONDS = 5.0  # while a job holds the queue waiting for disk space, the disk is looked at this often


class JobWorker(threading.Thread):
    def __init__(self, store: JobStore, runner: JobRunner, stop_requested: threading.Event, outage: StoreOutage):
        super().__init__(name="job-worker", daemon=True)
        self._store = store
        self._outage = outage
        self._runner = runner
        self._stop_requested = stop_requested
        self._nudge = threading.Event()
        self._current: JobRecord | None = None

    @property
    def current_job(self) -> JobRecord | None:
        return self._current

    @property
    def problems(self) -> tuple[str, ...]:
        """What holds the work up, for health.json: a job store that cannot write, jobs waiting
        for disk space."""
        store = self._outage.problem
        return ((store,) if store else ()) + self._runner.space_waits.problems()

    def nudge(self) -> None:
        """Look for a queued job now rather than at the next poll."""
        self._nudge.set()

    def run(self) -> None:
        while not self._stop_requested.is_set():
            try:
                self._forget_waits_gone()
                plan = self._runner.space_waits.plan(self._runner.space_freed)
                if plan.holding is not None:  # the queue waits behind it, in order, for a while
                    self._stop_requested.wait(SPACE_RETRY_SECONDS)
                    continue
                job = self._store.claim_next(pass_over=plan.pass_over)
            except Exception as error:  # keep the thread whatever happens; try again
                if is_outage(error):
                    self._outage.failed(error, "looking for the next job")
                else:
                    log.exception("could not look for the next job; trying again")
                self._stop_requested.wait(IDLE_POLL_SECONDS)
                continue
            self._outage.answered(wrote=job is not None)
            if job is None:
                self._nudge.wait(IDLE_POLL_SECONDS)
                self._nudge.clear()
                continue
            self._current = job
            where = f", resuming at {job.stage}" if job.stage else ""
            log.info("%s: job %s started (attempt %d%s)", job.set_name, job.id, job.attempt, where, extra=job_fields(job))
            try:
                self._runner.run(job)
            except StoreUnavailable:
                log.warning("%s: stopping with job %s still marked running here: the job store did not answer; it "
                            "resumes at the next start, or on another host once its lease runs out", job.set_name,
                            job.id, extra=job_fields(job))
            except Exception as error:  # a bug of ours must not stop the queue
                log.exception("%s: internal error", job.set_name, extra=job_fields(job))
                # the traceback (paths, names) is in the journal; the person reads what kind of error
                message = f"internal error in the daemon ({type(error).__name__})"
                try:
                    self._store.transition(
                        job.id, JobState.FAILED, message, from_states=(JobState.RUNNING,),
                        error=JobError(job.stage, message, "please tell the server's operator: the journal has the details"),
                    )
                except Exception:  # the job stays running here: resumed at the next start, or taken over
                    log.exception("%s: could not record job %s as failed", job.set_name, job.id, extra=job_fields(job))
            finally:
                self._current = None

    def _forget_waits_gone(self) -> None:
        """A job waiting for space that left the queue (cancelled, removed, run by another daemon)
        neither holds the queue nor shows in health.json any more."""
        for job_id in self._runner.waiting_job_ids():
            job = self._store.get(job_id)
            if job is None or job.state is not JobState.QUEUED:
                self._runner.forget(job_id)
