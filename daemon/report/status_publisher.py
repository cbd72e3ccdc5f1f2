"""Writes status.json beside each set and into the outbox: a projection of the job store.

Whoever changes a job only writes the store; the daemon's main loop calls ``sync`` to
write the documents of every job changed since the last pass. One writer, one place,
and jobs changed by ``instarecon cancel`` or ``retry`` from another process are
covered too. The one part of a document that changes without its job's row is the tail of
the job's log: ``sync`` also looks at the logs of the jobs this daemon runs (a stat each
pass), so status.json follows a stage that logs without reporting progress.

A removed job's folders are never made again: beside the set there is no folder any more (the
zip's status.json, ours, goes with the zip), and its folder in the outbox, made under the site
lock for a job not removed, is kept saying removed or, with ``unpublish_removed``, deleted.

A job whose set's job.toml made it private, or public again, before it started (the file came
after the photos) has its folder under the other name: the old one is deleted as the new one is
written, so that nothing in the outbox is left naming it.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Sequence

from daemon.config import Settings
from daemon.jobs.folders import JobFolders
from daemon.jobs.log import FolderNames, signature
from daemon.journal import job_fields
from daemon.report.site_lock import site_lock
from daemon.report.site_publisher import unpublish
from daemon.report.status_document import build_status, outbox_copy
from daemon.store import JobRecord, JobState, JobStore
from daemon.store.job_ids import outbox_folder_name
from stages.atomic_files import atomic_write_json, remove_temporaries
from stages.registry import StageSpec

log = logging.getLogger("instarecon.status")

# Jobs updated this close before the last pass are written again: clocks and
# transactions do not order updated_at perfectly.
_OVERLAP = timedelta(seconds=2)
# Another daemon killed mid-write leaves its temporary file beside a status.json that this daemon
# keeps writing: looked for again this often.
SWEEP_EVERY_SECONDS = 60.0


class StatusPublisher:
    def __init__(self, settings: Settings, store: JobStore, pipeline: Sequence[StageSpec]):
        self._settings = settings
        self._store = store
        self._pipeline = pipeline
        self._watermark: datetime | None = None
        self._last_written: dict[str, dict[str, Any]] = {}
        self._unwritable_sets: dict[str, str] = {}
        self._swept: dict[Path, float] = {}  # status file -> when its crash leftovers were last swept
        # status.json is public: its log lines name these folders short
        self._folder_names = FolderNames.of(settings.inbox, settings.outbox, settings.state)
        self._running: dict[str, JobRecord] = {}  # jobs this daemon runs, as last read from the store
        self._log_seen: dict[str, tuple[int, int] | None] = {}  # their logs' signatures when last published

    def sync(self) -> list[dict[str, Any]]:
        """Write every job changed since the last pass (the first pass: every job), and every job
        this daemon runs whose log grew; returns the documents written."""
        since = None if self._watermark is None else self._watermark - _OVERLAP
        written = []
        changed = self._store.changed_since(since)
        for job in changed:
            self._watermark = max(self._watermark or job.updated_at, job.updated_at)
            if job.state is JobState.RUNNING and job.host == self._store.host:
                self._running[job.id] = job
            else:
                self._running.pop(job.id, None)
                self._log_seen.pop(job.id, None)
            written.append(self.publish(job))
        read = {job.id for job in changed}
        for job in list(self._running.values()):
            if job.id not in read and signature(self._log_path(job)) != self._log_seen.get(job.id):
                written.append(self.publish(job))
        return [document for document in written if document is not None]

    def publish(self, job: JobRecord) -> dict[str, Any] | None:
        """Write the job's status.json documents; returns the document, or None if unchanged."""
        if job.id in self._running:
            self._log_seen[job.id] = signature(self._log_path(job))  # before the read: a later line shows next pass
        folders = JobFolders.of(self._settings, job)
        document = build_status(job, self._pipeline, folders, self._folder_names, self._settings.public_url)
        if self._last_written.get(job.id) == document:
            return None
        latest = self._store.latest_for_set(job.set_name)
        if latest is not None and latest.id == job.id:
            self._write_beside_set(job, document)
        problem = self._unwritable_sets.get(job.set_name)
        self._unpublish_other_name(job)
        outbox_document = outbox_copy(document, folders.outbox)
        if problem:
            outbox_document["warnings"] = [*document["warnings"], problem]
        if job.state is JobState.REMOVED:
            self._publish_removed(job, folders, outbox_document)
        elif not self._write_outbox(job, folders, outbox_document):
            return None  # removed meanwhile: the next pass publishes it as such
        self._last_written[job.id] = document
        return outbox_document

    def _write_outbox(self, job: JobRecord, folders: JobFolders, document: dict[str, Any]) -> bool:
        """The outbox copy; False if the job was removed meanwhile (``instarecon remove`` in another
        process, which deletes the folder under the site lock): the job's folder is made under
        that lock, and never for a removed job."""
        if not folders.outbox.is_dir():
            with site_lock(self._store.engine, self._settings.state):
                now = self._store.get(job.id)
                if now is None or now.state is JobState.REMOVED:
                    return False
                folders.outbox.mkdir(parents=True, exist_ok=True)
                self._write(folders.outbox_status, document)
            return True
        try:
            self._write(folders.outbox_status, document)
        except FileNotFoundError:
            if folders.outbox.is_dir():
                raise
            return False
        return True

    def _unpublish_other_name(self, job: JobRecord) -> None:
        """The job's folder under the name it had before it was made private (or public again)."""
        if job.page_key is None:
            return  # never private: one name only
        other = outbox_folder_name(job.id, None if job.private else job.page_key)
        if not os.path.lexists(self._settings.outbox / other):
            return
        with site_lock(self._store.engine, self._settings.state):
            files = unpublish(self._settings.outbox, other)
        log.info("%s: job %s is %s now; its folder in the outbox under its %s name is deleted (%d files)",
                 job.set_name, job.id, "private" if job.private else "public", "public" if job.private else "private",
                 files, extra=job_fields(job))

    def _publish_removed(self, job: JobRecord, folders: JobFolders, document: dict[str, Any]) -> None:
        """A removed job's folder in the outbox: with ``unpublish_removed`` deleted (its page, its
        results, its status.json; the site then leaves the job out), else its status.json says
        removed. Never made again. Under the site lock, as ``instarecon remove`` does it."""
        folder = folders.outbox
        if not os.path.lexists(folder):
            return
        with site_lock(self._store.engine, self._settings.state):
            if self._settings.unpublish_removed:
                files = unpublish(self._settings.outbox, job.outbox_name)
                log.info("%s: job %s removed; its folder in the outbox is deleted (%d files, unpublish_removed)",
                         job.set_name, job.id, files, extra=job_fields(job))
            elif folder.is_dir() and not folder.is_symlink():
                self._write(folders.outbox_status, document)

    def _log_path(self, job: JobRecord) -> Path:
        return JobFolders.of(self._settings, job).log

    def _write(self, path: Path, document: dict[str, Any]) -> None:
        """Atomically; first (and again at most once a minute) removing the temporary files that a
        daemon killed mid-write left beside it. Several daemons write the same status files, so
        only what is provably abandoned goes (``remove_temporaries``): never another's write."""
        now = time.monotonic()
        if now - self._swept.get(path, -SWEEP_EVERY_SECONDS) >= SWEEP_EVERY_SECONDS:
            if remove_temporaries(path):
                log.info("removed half-written copies of %s left by a daemon that was stopped mid-write", path)
            self._swept[path] = now
        atomic_write_json(path, document)

    def _write_beside_set(self, job: JobRecord, document: dict[str, Any]) -> None:
        target = JobFolders.of(self._settings, job).status_beside_set
        if job.state is JobState.REMOVED and not os.path.lexists(job.source_path):
            if job.source_kind == "zip":
                target.unlink(missing_ok=True)  # ours, beside a zip that is gone
            return
        if target.parent.is_symlink() or not target.parent.is_dir():
            return  # set gone, or a link we never follow
        try:
            self._write(target, document)
        except OSError as error:
            if job.set_name not in self._unwritable_sets:
                problem = f"status.json cannot be written into the set folder ({error.strerror}); see the outbox copy"
                self._unwritable_sets[job.set_name] = problem
                log.warning("%s: %s", job.set_name, problem, extra=job_fields(job))
        else:
            self._unwritable_sets.pop(job.set_name, None)
