"""Retention: the work folders of finished jobs go after a while; what was published stays.

``state/jobs/<job_id>/`` holds a job's intermediate files (its copies of the photos, the COLMAP
project, training checkpoints, renders, job.log): gigabytes for a large set, worth keeping for a
look at what went wrong or for other tools, dead weight after that. Every hour, and shortly after
the daemon starts, the folder of a done, cancelled or removed job is removed ``keep_work_days``
after the job finished, that of a failed job ``keep_failed_days`` after. What stays: the job's record, its
outbox folder (scene files, page, status.json) and, always, the inbox.

What may go, and only that: the folder named exactly the job's id, directly under state/jobs, a real
folder (not a link, resolving nowhere else), of a job the store says is finished. Removal is
recorded in the store (``JobStore.record_work_removed``): the job's outputs, paths into the folder,
are cleared and a warning says when it went, so status.json names no file that is gone. A folder
that cannot be removed (permissions) is named in the journal and tried again at the next pass; the
others go on.

Folders that no job in the store knows are left alone and named in the journal once: they come
from a store replaced or restored from a backup, or from a second installation pointed at this
state folder by mistake, and nothing here can tell that their work is not wanted.

Several daemons sharing the state folder and one database: a pass runs under a lock (PostgreSQL's
advisory lock, or an flock beside the SQLite database); a daemon that finds it taken skips the
pass. Were two passes to overlap anyway, nothing breaks: a file gone under rmtree is no error,
and the store lets one record per job through.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import stat
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator

from sqlalchemy import text

from daemon.config import Settings
from daemon.jobs.folders import work_folder
from daemon.journal import job_fields
from daemon.run.disk_guard import disk_usage
from daemon.store import JobRecord, JobState, JobStore
from daemon.store.tables import utc_now

log = logging.getLogger("instarecon")

RETENTION_LOCK_KEY = 0x1A5E_0D15  # pg_try_advisory_lock's key for retention passes; the same in every daemon
# Which setting keeps the work folder of a job that ended in each state.
KEPT_FOR = {JobState.DONE: "keep_work_days", JobState.CANCELLED: "keep_work_days", JobState.REMOVED: "keep_work_days",
            JobState.FAILED: "keep_failed_days"}
LOCK_FILE = "retention.lock"  # in the state folder (SQLite: the daemons of one host)
FIRST_PASS_DELAY_SECONDS = 10.0  # after start: past the first inbox pass, and soon enough for a restart loop to show
_JOB_ID = re.compile(r"[A-Za-z0-9._-]+-[0-9]+")  # daemon.store.job_ids' form: never ".", "..", or a path


@dataclass
class RetentionPass:
    """What one pass did, job ids each."""

    removed: dict[str, int] = field(default_factory=dict)  # -> bytes freed
    already_gone: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # not a real folder of ours: left alone
    failed: list[str] = field(default_factory=list)  # could not be removed; tried again next pass
    skipped: bool = False  # another daemon was running a pass


class WorkFolderRetention:
    """One pass per call of ``run``; the daemon's scheduler calls the object itself, which logs
    whatever goes wrong and never raises. ``should_stop``, checked between folders, lets a stopping
    daemon end a long pass early."""

    def __init__(
        self,
        store: JobStore,
        jobs_dir: Path,
        keep_work: timedelta,
        keep_failed: timedelta,
        now: Callable[[], datetime] = utc_now,
        should_stop: Callable[[], bool] = lambda: False,
        lock_file: Path | None = None,
    ):
        self._store = store
        self._jobs_dir = Path(jobs_dir)
        self._setting = KEPT_FOR
        self._keep = {state: keep_failed if setting == "keep_failed_days" else keep_work
                      for state, setting in KEPT_FOR.items()}
        self._now = now
        self._should_stop = should_stop
        self._lock_file = lock_file or self._jobs_dir.parent / LOCK_FILE
        self._told: set[str] = set()  # folders refused or unknown, named in the journal once a run

    @classmethod
    def for_settings(cls, settings: Settings, store: JobStore, should_stop: Callable[[], bool] = lambda: False,
                     now: Callable[[], datetime] = utc_now) -> "WorkFolderRetention":
        return cls(store, settings.jobs_dir, timedelta(days=settings.keep_work_days),
                   timedelta(days=settings.keep_failed_days), now=now, should_stop=should_stop)

    @staticmethod
    def first_pass_at() -> datetime:
        return datetime.now(timezone.utc) + timedelta(seconds=FIRST_PASS_DELAY_SECONDS)

    def __call__(self) -> None:
        try:
            self.run()
        except Exception:  # the database away, say: the next pass tries again; the scheduler goes on
            log.exception("work folder retention failed; it runs again within the hour")

    def run(self) -> RetentionPass:
        outcome = RetentionPass()
        with self._pass_lock() as held:
            if not held:
                log.debug("another daemon is removing old work folders; skipping this pass")
                outcome.skipped = True
                return outcome
            now = self._now()
            due = [job for state, keep in self._keep.items() for job in self._store.finished_before([state], now - keep)]
            for job in sorted(due, key=lambda job: (job.finished_at, job.id)):
                if self._should_stop():
                    return outcome
                self._remove(job, now, outcome)
            self._name_unknown_folders()
        return outcome

    def _remove(self, job: JobRecord, now: datetime, outcome: RetentionPass) -> None:
        folder = work_folder(self._jobs_dir, job.id)
        try:
            info = os.lstat(folder)
        except FileNotFoundError:
            info = None
        except OSError as error:
            log.warning("%s: work folder %s cannot be looked at (%s); trying again at the next pass",
                        job.set_name, folder, error.strerror, extra=job_fields(job))
            outcome.failed.append(job.id)
            return
        if info is None:  # removed by hand, by another daemon's pass, or the job never ran a stage
            note = f"work folder found gone on {_day(now)}; what was published to the outbox stays"
            if self._store.record_work_removed(job.id, now, None, note if job.outputs else None):
                log.debug("%s: work folder %s was already gone", job.set_name, folder, extra=job_fields(job))
            outcome.already_gone.append(job.id)
            return
        problem = self._unsafe(folder, info, job.id)
        if problem:
            if job.id not in self._told:
                self._told.add(job.id)
                log.warning("%s: work folder %s %s; retention leaves it alone", job.set_name, folder, problem,
                            extra=job_fields(job))
            outcome.refused.append(job.id)
            return
        size = disk_usage(folder)
        try:
            # rmtree itself refuses a link in its place and never follows links inside (fd-based on Linux)
            shutil.rmtree(folder, onerror=_gone_is_fine)
        except OSError as error:
            log.warning("%s: work folder %s could not be removed (%s: %s); trying again at the next pass",
                        job.set_name, folder, error.filename or folder, error.strerror or error,
                        extra=job_fields(job))
            outcome.failed.append(job.id)
            return
        setting, keep = self._setting[job.state], self._keep[job.state]
        what = "intermediate files and job.log are" if job.state == JobState.FAILED else "intermediate files are"
        # the journal line below names the setting; the person reads how long work is kept
        note = (f"work folder removed on {_day(now)}, {_days(keep)} after the job ended: its "
                f"{what} gone; what was published to the outbox stays")
        self._store.record_work_removed(job.id, now, size, note)
        outcome.removed[job.id] = size
        log.info("%s: removed work folder %s, %s freed (%s %s ago; %s = %s)", job.set_name, folder, _size(size),
                 job.state, _days(now - job.finished_at), setting, f"{keep / timedelta(days=1):g}", extra=job_fields(job))

    def _unsafe(self, folder: Path, info: os.stat_result, job_id: str) -> str | None:
        """Why ``folder`` must not be removed, or None: it must be a real folder named exactly the
        job's id directly under the jobs folder, wherever that folder itself lies."""
        if not _JOB_ID.fullmatch(job_id):
            return "is not named like a job"
        if stat.S_ISLNK(info.st_mode):
            return f"is a symbolic link (to {os.readlink(folder)!r}), never followed"
        if not stat.S_ISDIR(info.st_mode):
            return "is not a folder"
        real = Path(os.path.realpath(folder))
        if real != work_folder(Path(os.path.realpath(self._jobs_dir)), job_id):
            return f"resolves to {real}, outside {self._jobs_dir}"
        return None

    def _name_unknown_folders(self) -> None:
        """Folders under state/jobs that no job has: named once a run, never removed. Listed before
        the store is read, so a job created in between is known by then."""
        try:
            names = {entry.name for entry in os.scandir(self._jobs_dir) if not entry.name.startswith(".")}
        except FileNotFoundError:
            return
        for name in sorted(names - self._store.job_ids() - self._told):
            self._told.add(name)
            log.info("%s belongs to no job in the store; retention leaves it alone (remove it by hand if nothing "
                     "needs it)", work_folder(self._jobs_dir, name))

    @contextmanager
    def _pass_lock(self) -> Iterator[bool]:
        """Held (True) or taken by another daemon (False); never waits."""
        engine = self._store.engine
        if engine.dialect.name == "postgresql":
            with engine.connect() as holder:
                held = holder.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": RETENTION_LOCK_KEY}).scalar()
                try:
                    yield bool(held)
                finally:
                    if held:
                        holder.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": RETENTION_LOCK_KEY})
                    holder.commit()
            return
        with open(self._lock_file, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _gone_is_fine(function, path, exc_info) -> None:
    """rmtree's error handler: something removed already (by another pass) is what we wanted."""
    if not issubclass(exc_info[0], FileNotFoundError):
        raise exc_info[1]


def _day(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d")


def _days(span: timedelta) -> str:
    days = span / timedelta(days=1)
    return f"{days:.1f} days" if days >= 1 else f"{span.total_seconds():.0f} s"


def _size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit} ({count:,} bytes)"
    return f"{count:,} bytes"
