"""Turns what is in the inbox into jobs: new sets, complete sets, changed sets, CANCEL and RETRY.

Called for one set name at a time, as often as anyone likes: the same inbox gives the
same jobs however many events fire (one job per set and content; a finished set is
not run again unless its content changes or a new RETRY file appears).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from daemon.config import Settings
from daemon.journal import job_fields
from daemon.settle_clock import SettleClock
from daemon.store import ACTIVE_STATES, TERMINAL_STATES, JobRecord, JobState, JobStore
from stages.photo_set import CANCEL_MARKER, STATUS_FILE, FileEntry, FileRules, SetListing, walk_set

log = logging.getLogger("instarecon.inbox")

CANCEL_FILE_REASON = "cancelled: a CANCEL file was dropped into the set"


def could_be_set(name: str, rules: FileRules) -> bool:
    """Hidden names are temporaries (rsync) or litter, and *status.json is ours: never sets."""
    return not (name.startswith(".") or rules.is_junk(name) or rules.is_in_progress(name) or name.endswith(STATUS_FILE))


def list_set_names(inbox: Path, rules: FileRules) -> list[str]:
    """Top-level folders and .zip files (and links, which are refused)."""
    names = []
    try:
        entries = list(os.scandir(inbox))
    except OSError:
        return []
    for entry in entries:
        name = entry.name
        if not could_be_set(name, rules):
            continue
        if entry.is_symlink() or entry.is_dir(follow_symlinks=False):
            names.append(name)
        elif entry.is_file(follow_symlinks=False) and name.lower().endswith(".zip"):
            names.append(name)
    return sorted(names)


class SetIntake:
    def __init__(self, settings: Settings, store: JobStore, settle: SettleClock):
        self._settings = settings
        self._store = store
        self._settle = settle
        self._rules = FileRules(settings.ignore_patterns)

    @property
    def rules(self) -> FileRules:
        return self._rules

    def reconcile(self, name: str) -> float | None:
        """Bring the set's latest job in line with the inbox; returns seconds until the
        set should be looked at again (still settling), or None."""
        path = self._settings.inbox / name
        if not could_be_set(name, self._rules):
            return None
        if path.is_symlink():
            return self._refuse_link(name, path)
        found = self._read_set(path)
        if found is None:
            self._set_gone(name)
            return None
        kind, listing = found

        latest = self._store.latest_for_set(name)
        if listing.cancel_mtime_ns is not None:
            if latest is not None and latest.state in ACTIVE_STATES:
                self._store.request_cancel(latest.id, CANCEL_FILE_REASON)
                log.info("%s: CANCEL file found", name, extra=job_fields(latest))
            self._settle.forget(name)
            return None

        fingerprint = listing.content_fingerprint()
        why_new = _why_new_attempt(latest, fingerprint, listing.retry_mtime_ns)
        if why_new:
            latest = self._store.create_job(
                set_name=name,
                source_path=path,
                source_kind=kind,
                fingerprint=fingerprint,
                state=JobState.WAITING,
                message=self._waiting_message(listing),
                retry_token=listing.retry_mtime_ns,
                attempt=(latest.attempt if latest is not None else 0) + 1,  # one job, however many daemons see the set
            )
            log.info("%s: %s, job %s (attempt %d)", name, why_new, latest.id, latest.attempt, extra=job_fields(latest))
        if latest.state not in (JobState.WAITING, JobState.QUEUED):
            return None

        refusal = listing.escaping_symlink_refusal()
        if refusal is not None:
            message, hint = refusal
            self._store.transition(
                latest.id, JobState.FAILED, message, stage="ingest",
                error={"stage": "ingest", "message": message, "hint": hint},
            )
            log.error("%s: refused: %s", name, message, extra=job_fields(latest))
            self._settle.forget(name)
            return None

        if latest.fingerprint != fingerprint:
            self._store.update_fields(latest.id, fingerprint=fingerprint)
            if latest.state == JobState.QUEUED:
                self._store.transition(latest.id, JobState.WAITING, "the set changed before it started; waiting again")
                latest = self._store.get(latest.id)

        remaining = 0.0 if listing.ready else self._settle.remaining(name, listing.activity_fingerprint())
        if remaining > 0:
            message = self._waiting_message(listing)
            if latest.message != message:
                self._store.update_fields(latest.id, message=message)
            return remaining
        self._settle.forget(name)
        if latest.state == JobState.WAITING:
            how = "READY marker" if listing.ready else f"no change for {self._settings.settle_seconds:g} s"
            self._store.transition(latest.id, JobState.QUEUED, f"queued ({how})")
            log.info("%s: complete (%s), queued as %s", name, how, latest.id, extra=job_fields(latest))
        return None

    def retry(self, job: JobRecord) -> JobRecord:
        """A new queued attempt of a finished, failed or cancelled job's set (`instarecon retry`)."""
        if job.state not in TERMINAL_STATES:
            raise ValueError(f"job {job.id} is {job.state}; only a done, failed or cancelled job can be retried")
        path = self._settings.inbox / job.set_name
        found = None if path.is_symlink() else self._read_set(path)
        if found is None:
            raise ValueError(f"the set '{job.set_name}' is no longer in the inbox ({path})")
        kind, listing = found
        return self._store.create_job(
            set_name=job.set_name,
            source_path=path,
            source_kind=kind,
            fingerprint=listing.content_fingerprint(),
            state=JobState.QUEUED,
            message=f"queued again by `instarecon retry {job.id}`",
            retry_token=listing.retry_mtime_ns,
        )

    def _read_set(self, path: Path) -> tuple[str, SetListing] | None:
        if path.is_dir():
            return "folder", walk_set(path, self._settings.inbox, self._rules)
        if path.is_file() and path.name.lower().endswith(".zip"):
            return "zip", _zip_listing(path)
        return None

    def cancel_marker_present(self, job: JobRecord) -> bool:
        """A cheap look for CANCEL while a job runs: the top of the set only."""
        if job.source_kind != "folder":
            return False
        try:
            return any(entry.lower() == CANCEL_MARKER for entry in os.listdir(job.source_path))
        except OSError:
            return False

    def _waiting_message(self, listing: SetListing) -> str:
        message = (
            f"waiting for the set to be complete ({len(listing.photos)} files so far): drop a file named READY "
            f"into it, or leave it unchanged for {self._settings.settle_seconds:g} s"
        )
        if listing.in_progress:
            message += f"; {len(listing.in_progress)} file(s) still being written"
        return message

    def _refuse_link(self, name: str, path: Path) -> None:
        target = os.readlink(path)
        fingerprint = hashlib.sha256(f"link\0{target}".encode()).hexdigest()
        latest = self._store.latest_for_set(name)
        if latest is not None and latest.fingerprint == fingerprint:
            return None
        message = f"'{name}' is a symbolic link; the daemon never follows links in the inbox"
        job = self._store.create_job(
            set_name=name, source_path=path, source_kind="link", fingerprint=fingerprint,
            state=JobState.WAITING, message=message,
        )
        self._store.transition(
            job.id, JobState.FAILED, message, stage="ingest",
            error={"stage": "ingest", "message": message, "hint": "copy the photos into the inbox instead of linking them"},
        )
        log.error("%s: refused: %s", name, message, extra=job_fields(job))
        return None

    def _set_gone(self, name: str) -> None:
        self._settle.forget(name)
        latest = self._store.latest_for_set(name)
        if latest is not None and latest.state in (JobState.WAITING, JobState.QUEUED):
            message = "the set disappeared from the inbox before it could run"
            self._store.transition(latest.id, JobState.FAILED, message, error={"stage": None, "message": message, "hint": None})
            log.warning("%s: %s", name, message, extra=job_fields(latest))


def _why_new_attempt(latest: JobRecord | None, fingerprint: str, retry_mtime_ns: int | None) -> str | None:
    if latest is None:
        return "new set"
    if latest.state not in TERMINAL_STATES:
        return None
    if latest.fingerprint != fingerprint:
        return "set changed after its last run"
    if retry_mtime_ns is not None and retry_mtime_ns != latest.retry_token:
        return "RETRY file found"
    return None


def _zip_listing(path: Path) -> SetListing:
    """A zip set is one file: it is complete once it stops changing; its content is checked by ingest."""
    stat = path.stat()
    return SetListing(photos=(FileEntry(path.name, stat.st_size, stat.st_mtime_ns),))
