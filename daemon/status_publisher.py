"""Writes status.json beside each set and into the outbox: a projection of the job store.

Whoever changes a job only writes the store; the daemon's main loop calls ``sync`` to
write the documents of every job changed since the last pass. One writer, one place,
and jobs changed by ``instarecon cancel`` or ``retry`` from another process are
covered too.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Sequence

from daemon.config import Settings
from daemon.journal import job_fields
from daemon.status_document import build_status
from daemon.store import JobRecord, JobStore
from stages.atomic_files import atomic_write_json, remove_temporaries
from stages.photo_set import STATUS_FILE
from stages.registry import StageSpec

log = logging.getLogger("instarecon.status")

# Jobs updated this close before the last pass are written again: clocks and
# transactions do not order updated_at perfectly.
_OVERLAP = timedelta(seconds=2)


def inbox_status_path(settings: Settings, job: JobRecord) -> Path:
    if job.source_kind == "zip":
        return settings.inbox / f"{job.set_name}.{STATUS_FILE}"
    return settings.inbox / job.set_name / STATUS_FILE


class StatusPublisher:
    def __init__(self, settings: Settings, store: JobStore, pipeline: Sequence[StageSpec]):
        self._settings = settings
        self._store = store
        self._pipeline = pipeline
        self._watermark: datetime | None = None
        self._last_written: dict[str, dict[str, Any]] = {}
        self._unwritable_sets: dict[str, str] = {}
        self._swept: set[Path] = set()  # status files whose crash leftovers this run removed

    def sync(self) -> list[dict[str, Any]]:
        """Write every job changed since the last pass (the first pass: every job); returns the
        documents written."""
        since = None if self._watermark is None else self._watermark - _OVERLAP
        written = []
        for job in self._store.changed_since(since):
            self._watermark = max(self._watermark or job.updated_at, job.updated_at)
            document = self.publish(job)
            if document is not None:
                written.append(document)
        return written

    def publish(self, job: JobRecord) -> dict[str, Any] | None:
        """Write the job's status.json documents; returns the document, or None if unchanged."""
        document = build_status(job, self._pipeline, self._settings.jobs_dir)
        if self._last_written.get(job.id) == document:
            return None
        latest = self._store.latest_for_set(job.set_name)
        if latest is not None and latest.id == job.id:
            self._write_beside_set(job, document)
        problem = self._unwritable_sets.get(job.set_name)
        outbox_document = dict(document)
        if problem:
            outbox_document["warnings"] = [*document["warnings"], problem]
        job_outbox = self._settings.outbox / job.id
        job_outbox.mkdir(parents=True, exist_ok=True)
        self._write(job_outbox / STATUS_FILE, outbox_document)
        self._last_written[job.id] = document
        return outbox_document

    def _write(self, path: Path, document: dict[str, Any]) -> None:
        """Atomically; the first time in this run, after removing the temporary files a daemon
        killed mid-write left beside it (this daemon is the one writer of its jobs' status)."""
        if path not in self._swept:
            if remove_temporaries(path):
                log.info("removed half-written copies of %s left by an earlier run", path)
            self._swept.add(path)
        atomic_write_json(path, document)

    def _write_beside_set(self, job: JobRecord, document: dict[str, Any]) -> None:
        target = inbox_status_path(self._settings, job)
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
