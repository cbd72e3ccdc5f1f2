"""The daemon's main loop: watch the inbox, keep jobs and status.json in step, talk to systemd.

One thread here, one worker thread running jobs (``daemon.run.worker``). SIGTERM and
SIGINT only set a flag: the loop then stops the running stage, puts its job back in
the queue to resume at the next start, and returns an exit code.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from types import TracebackType
from typing import Callable, Mapping, Sequence

from apscheduler.schedulers.background import BackgroundScheduler

from daemon import __version__
from daemon.config import EXIT_CONFIG, Settings
from daemon.intake.set_intake import CANCEL_FILE_REASON, SetIntake, list_set_names
from daemon.intake.settle_clock import SettleClock
from daemon.intake.watcher import InboxWatcher
from daemon.jobs.retention import WorkFolderRetention
from daemon.report.reporting import Reporting
from daemon.run.runner import JobRunner
from daemon.run.worker import JobWorker
from daemon.store import ACTIVE_STATES, DaemonRegistry, JobStore, NameInUse, claim_name, open_store
from daemon.store.outage import StoreOutage, StoreUnavailable, is_outage
from daemon.systemd_notify import SystemdNotifier
from daemon.this_process import this_process
from stages.registry import PIPELINE, StageSpec

log = logging.getLogger("instarecon")

BUSY_TICK_SECONDS = 0.5  # while a job runs: how fresh status.json stays
IDLE_TICK_SECONDS = 5.0
WATCHER_CHECK_SECONDS = 1.0  # while the inbox watcher is down: how often to try it again
UNWATCHED_RESCAN_SECONDS = 5.0  # and to rescan the inbox, as a polling watcher would


class Daemon:
    def __init__(
        self,
        settings: Settings,
        pipeline: Sequence[StageSpec] = PIPELINE,
        notifier: SystemdNotifier | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._settings = settings
        self._pipeline = tuple(pipeline)
        self._notifier = notifier or SystemdNotifier()
        self._clock = clock
        self._stop_requested = threading.Event()
        self._wake = threading.Event()
        self._rescan_requested = True
        self._deadlines: dict[str, float] = {}  # set name -> when to look again (settling)
        self._watcher: InboxWatcher | None = None
        self._next_unwatched_rescan = 0.0

    def request_stop(self, *_signal_args) -> None:
        self._stop_requested.set()
        self._wake.set()

    def _request_rescan(self) -> None:
        self._rescan_requested = True
        self._wake.set()

    def run(self, until_idle: bool = False) -> int:
        settings = self._settings
        outage = StoreOutage(self._clock)
        try:
            store = outage.wait_out(self._open_store, "opening the job store", self._stop_requested,
                                    on_wait=lambda seconds: self._notifier.starting("waiting for the job store", seconds + 30))
        except StoreUnavailable:
            log.info("stopped before the job store answered")
            return 0
        except NameInUse as taken:
            log.error("%s", taken)
            return EXIT_CONFIG
        reporting = Reporting(settings, store, self._pipeline, __version__, self._clock)
        intake = SetIntake(settings, store, SettleClock(settings.settle_seconds, self._clock))
        runner = JobRunner(settings, store, self._pipeline, self._stop_requested, self._wake.set, outage)
        worker = JobWorker(store, runner, self._stop_requested, outage)
        watcher = InboxWatcher(settings.inbox, settings.watch_mode, settings.poll_interval_seconds, self._wake.set)
        scheduler = BackgroundScheduler(daemon=True)
        # The safety net: sets dropped while the daemon was down, events lost on
        # network shares or by a full inotify queue are all found by a full rescan.
        scheduler.add_job(self._request_rescan, "interval", seconds=settings.rescan_interval_seconds, id="rescan")
        # Housekeeping: work folders of finished jobs past keep_work_days / keep_failed_days (daemon/jobs/retention.py).
        scheduler.add_job(WorkFolderRetention.for_settings(settings, store, self._stop_requested.is_set), "interval",
                          hours=1, next_run_time=WorkFolderRetention.first_pass_at(), misfire_grace_time=None,
                          coalesce=True, id="retention")

        log.info(
            "instarecon %s starting as %s%s: inbox %s, outbox %s, state %s, %s watching", __version__, store.host,
            f" on GPU {store.gpu}" if store.gpu else "", settings.inbox, settings.outbox, settings.state,
            settings.watch_mode,
        )
        self._watcher = watcher
        previous_hook, threading.excepthook = threading.excepthook, self._thread_ended_on_exception
        watcher.start()  # a watcher that cannot start is tried again from the loop (InboxWatcher.check)
        scheduler.start()
        worker.start()
        last_ping = self._clock()
        exit_code = 0
        ready = False
        try:
            while not self._stop_requested.is_set():
                if not worker.is_alive():
                    log.critical("the job worker thread has stopped; exiting so that systemd restarts the daemon")
                    exit_code = 1
                    break
                passed = alive = False
                line = None
                try:
                    self._tick(store, intake, worker)
                    line = reporting.report(worker.current_job, _problems(watcher) + worker.problems)
                    if ready:
                        self._notifier.status(line)
                    outage.answered()
                    passed = alive = True
                except Exception as error:
                    self._rescan_requested = True  # what the failed pass took from the watcher is looked at again
                    if is_outage(error):  # the loop itself is fine, and keeps the watchdog fed
                        outage.failed(error, "watching the inbox")
                        reporting.trouble(worker.current_job, outage.problem)
                        self._notifier.status(outage.problem)
                        alive = True
                    else:  # a bug of ours: the watchdog restarts the daemon if it lasts
                        log.exception("inbox pass failed; trying again")
                        reporting.trouble(worker.current_job)
                if not ready:  # after the first pass, whatever its outcome: systemd waits for no more
                    self._notifier.ready(line or "started; the first inbox pass failed (see the journal)")
                    ready = True
                if passed and until_idle and self._idle(store, worker):
                    log.info("nothing left waiting, queued or running; exiting (--until-idle)")
                    break
                ping_every = self._notifier.watchdog_ping_seconds
                if alive and ping_every is not None and self._clock() - last_ping >= ping_every * 0.9:
                    self._notifier.watchdog()
                    last_ping = self._clock()
                self._wake.wait(self._tick_timeout(worker, ping_every))
                self._wake.clear()
        finally:
            self._notifier.stopping()
            log.info("stopping")
            self._stop_requested.set()
            worker.nudge()
            worker.join()
            watcher.stop()
            scheduler.shutdown(wait=False)
            reporting.stopped()
            self._notifier.close()
            store.engine.dispose()
            threading.excepthook = previous_hook
        return exit_code

    def _thread_ended_on_exception(self, args: threading.ExceptHookArgs) -> None:
        """Any thread that dies of an exception says so in the journal, with its traceback; one of the
        inbox watcher's (watchdog's own threads, which the watcher cannot see) is restarted."""
        thread = args.thread.name if args.thread is not None else "?"
        log.error("thread %s stopped on an exception", thread,
                  exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
        if self._watcher is not None and _raised_in_watchdog(args.exc_traceback):
            self._watcher.thread_died(thread, args.exc_value)
            self._wake.set()

    def _open_store(self) -> JobStore:
        """The job store, under this daemon's name (one live process per name: claim_name), with the
        jobs of daemon processes that are gone back in the queue."""
        settings = self._settings
        store = open_store(settings.resolved_database_url, lease_seconds=settings.lease_seconds)
        claim = claim_name(DaemonRegistry(store.engine), settings.host_name, process=this_process(),
                           version=__version__, interval_seconds=settings.heartbeat_seconds)
        store = store.named(claim.name, gpu=given_gpu())
        for job in store.requeue_orphans(claim.previous_provably_gone):
            log.info("%s: job %s was interrupted (its daemon %s stopped); it resumes at %s", job.set_name, job.id,
                     job.host, job.stage or "its start")
        return store

    def _tick(self, store: JobStore, intake: SetIntake, worker: JobWorker) -> None:
        now = self._clock()
        names = {name for name, due in self._deadlines.items() if due <= now}
        if self._watcher is not None:
            if self._watcher.check():
                self._rescan_requested = True  # its events were missed
            names |= self._watcher.take_dirty()
            if not self._watcher.watching and now >= self._next_unwatched_rescan:
                self._rescan_requested = True  # no events come while it is down: look ourselves
                self._next_unwatched_rescan = now + UNWATCHED_RESCAN_SECONDS
        if self._rescan_requested:
            self._rescan_requested = False
            listed = list_set_names(self._settings.inbox, intake.rules)
            # sets gone since (deleted while the daemon was down, or their events lost) are looked at too
            names |= set(listed) | set(self._deadlines) | intake.missing_sets(listed)
        for name in sorted(names):
            remaining = intake.reconcile(name)  # a set's own trouble stays the set's (SetIntake.reconcile)
            if remaining is None:
                self._deadlines.pop(name, None)
            else:
                self._deadlines[name] = now + remaining
        current = worker.current_job
        if current is not None and intake.cancel_marker_present(current):
            store.request_cancel(current.id, CANCEL_FILE_REASON)
        if names:
            worker.nudge()

    def _tick_timeout(self, worker: JobWorker, ping_every: float | None) -> float:
        timeout = BUSY_TICK_SECONDS if worker.current_job is not None else IDLE_TICK_SECONDS
        if self._watcher is not None and not self._watcher.watching:
            timeout = min(timeout, WATCHER_CHECK_SECONDS)
        if self._deadlines:
            timeout = min(timeout, max(0.05, min(self._deadlines.values()) - self._clock()))
        if ping_every is not None:
            timeout = min(timeout, ping_every / 2)
        return timeout

    def _idle(self, store: JobStore, worker: JobWorker) -> bool:
        if self._deadlines or worker.current_job is not None:
            return False
        counts = store.count_by_state()
        return not any(counts[state] for state in ACTIVE_STATES)


def _raised_in_watchdog(trace: TracebackType | None) -> bool:
    while trace is not None:
        if f"{os.sep}watchdog{os.sep}" in trace.tb_frame.f_code.co_filename:
            return True
        trace = trace.tb_next
    return False


def _problems(watcher: InboxWatcher) -> tuple[str, ...]:
    return () if watcher.problem is None else (watcher.problem,)


def install_signal_handlers(daemon: Daemon) -> None:
    signal.signal(signal.SIGTERM, daemon.request_stop)
    signal.signal(signal.SIGINT, daemon.request_stop)


def given_gpu(environ: Mapping[str, str] = os.environ) -> str | None:
    """The GPU this daemon was given: CUDA_VISIBLE_DEVICES, as instarecon@N.service sets it to N (one
    daemon per GPU); None when it names none in particular (unset: every GPU is visible)."""
    return environ.get("CUDA_VISIBLE_DEVICES") or None
