"""Everyone who watches the daemon, told after every pass of its main loop: status.json (beside
the set and in the outbox), the website, health.json, the Prometheus text file, notifications
of jobs that end, and the line systemd shows. They all follow the job store, so a job changed by ``instarecon cancel`` from
another process reaches them too.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

from daemon.config import Settings
from daemon.notify import Notifications
from daemon.report.heartbeat import Heartbeat
from daemon.report.metrics_textfile import MetricsTextfile
from daemon.report.site_lock import site_lock
from daemon.report.site_publisher import SitePublisher
from daemon.report.status_publisher import StatusPublisher
from daemon.store import DaemonRegistry, JobRecord, JobState, JobStore
from daemon.store.outage import is_outage
from stages.registry import StageSpec

QUEUE_STATES = (JobState.WAITING, JobState.QUEUED, JobState.RUNNING)
# health.json is public: what went wrong stays in the journal
TROUBLE = "the inbox pass failed and is being retried; details in the journal"
NOTIFY_CLOSE_SECONDS = 5.0  # at shutdown, pending notifications get this long; systemd allows 60 s


class Reporting:
    def __init__(self, settings: Settings, store: JobStore, pipeline: Sequence[StageSpec], version: str,
                 clock: Callable[[], float] = time.monotonic):
        self._store = store
        self._publisher = StatusPublisher(settings, store, pipeline)
        self._site = SitePublisher(settings.outbox, version, store.host, lambda: site_lock(store.engine, settings.state))
        self._heartbeat = Heartbeat(settings.outbox, settings.heartbeat_seconds, version, store.host,
                                    DaemonRegistry(store.engine), clock, process=store.process, gpu=store.gpu)
        self._metrics = MetricsTextfile(Path(settings.metrics_textfile), version) if settings.metrics_textfile else None
        # Built before the first pass: the jobs already stored are not news when it shows them ended.
        self._notifications = Notifications(settings, clock, known_jobs=store.job_ids())
        self._queue: dict[str, int] = {}  # the last counts read, for a heartbeat when the store fails

    def report(self, current: JobRecord | None, problems: tuple[str, ...] = ()) -> str:
        """Bring every view up to date; returns the one line for `systemctl status`. ``problems``:
        what health.json should say is wrong beside the jobs (the inbox watcher is down, a job waits for
        disk space)."""
        documents, counts = self._follow_jobs()
        job = (self._store.get(current.id) or current) if current is not None else None
        beaten = self._heartbeat.beat("running" if job else "idle", self._queue, _running(job), problems)
        self._write_metrics(counts, documents or beaten)
        return summary_line(counts, job)

    def trouble(self, current: JobRecord | None, problem: str = TROUBLE) -> None:
        """A pass failed (the job store does not answer, say): health.json says so, with the job
        this daemon runs as it was last read."""
        self._heartbeat.beat("running" if current else "idle", self._queue, _running(current), (problem,))

    def stopped(self) -> None:
        try:
            documents, counts = self._follow_jobs()
            self._write_metrics(counts, bool(documents))
        except Exception as error:
            if not is_outage(error):
                raise
            # status.json catches up at the next start, from the store
        self._notifications.close(NOTIFY_CLOSE_SECONDS)
        self._heartbeat.beat("stopped", self._queue, None)

    def _follow_jobs(self) -> tuple[list[dict], dict[JobState, int]]:
        """status.json of every job changed since the last pass, then everything built from it."""
        documents = self._publisher.sync()
        self._site.update(documents)
        self._notifications.observe(documents)
        if self._metrics is not None:
            self._metrics.observe(documents)
        counts = self._store.count_by_state()
        self._queue = {str(state): counts[state] for state in QUEUE_STATES}
        return documents, counts

    def _write_metrics(self, counts: dict[JobState, int], changed: bool) -> None:
        """Once a pass at most: when a job changed, or with the heartbeat."""
        if self._metrics is not None and changed:
            self._metrics.write({str(state): number for state, number in counts.items()}, time.time())


def _running(job: JobRecord | None) -> dict | None:
    if job is None:
        return None
    running = {"job_id": job.id, "name": job.set_name, "stage": job.stage, "progress": round(float(job.progress), 1)}
    return {**running, "private": True} if job.private else running  # health.json leaves out its id and name


def summary_line(counts: dict[JobState, int], job: JobRecord | None) -> str:
    """"running kermit: ingest 40%, 2 queued"."""
    tail = f"{counts[JobState.QUEUED]} queued" + (f", {counts[JobState.WAITING]} waiting" if counts[JobState.WAITING] else "")
    if job is None:
        return f"idle, {tail}"
    return f"running {job.set_name}: {job.stage or 'starting'} {job.progress:.0f}%, {tail}"
