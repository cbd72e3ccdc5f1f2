"""Turns what is in the inbox into jobs: new sets, complete sets, changed sets, CANCEL and RETRY,
and sets that left the inbox.

Called for one set name at a time, as often as anyone likes: the same inbox gives the
same jobs however many events fire (one job per set and content; a finished set is
not run again unless its content changes or a new RETRY file appears).

A set that is no longer in the inbox is removed only once it has been missing for
``settle_seconds``, on two looks at least that long apart, and only while the inbox itself can be
trusted: present, readable, on the file system it was on when the daemon started, and not empty
(an empty folder is what a share's mount point looks like once the share has dropped). Then every
job of the set becomes removed; a running one is stopped first, as a CANCEL file would. A set that
comes back after that is a new set: its next attempt.

Whether a job is private (job.toml's ``private``, else ``private_by_default``) is decided here, from
the set as it is when the job is made, and again whenever the set changes before the job starts:
a job.toml copied in after the photos still counts.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from pathlib import Path
from typing import Iterable

from daemon.config import Settings
from daemon.intake.settle_clock import SettleClock
from daemon.jobs.options import job_privacy
from daemon.jobs.records import JobError, RetryRequest
from daemon.journal import job_fields
from daemon.store import ACTIVE_STATES, TERMINAL_STATES, JobRecord, JobState, JobStore
from daemon.store.outage import is_outage
from inbox_protocol.file_names import display_name
from inbox_protocol.photo_set import CANCEL_MARKER, STATUS_FILE, FileEntry, FileRules, SetListing, walk_set
from inbox_protocol.refusal import SetRefused
from inbox_protocol.retry_file import read_retry_file
from inbox_protocol.set_limits import LimitViolation, SetLimits, first_violation, listed_photos, zip_photos
from stages.registry import STAGE_NAMES

log = logging.getLogger("instarecon.inbox")

CANCEL_FILE_REASON = "cancelled: a CANCEL file was dropped into the set"
# The message of a job removed because its set left the inbox: such a set, when it comes back, is a
# new attempt (a job removed by `instarecon remove` while its set stays is not run again for that).
SET_LEFT_INBOX = "removed: the set is no longer in the inbox"
REMOVED_WHILE_RUNNING = "cancelled: the set was removed from the inbox while the job ran"
CHANGED_AFTER_RUN = "set changed after its last run"
CHANGED_WHILE_RUNNING = "cancelled: the set changed while the job ran; a new attempt starts once it is complete again"
RUNNING_RECHECK_SECONDS = 1.0  # how soon to look again while a removed set's running job stops
READ_RETRIES = 5  # a set that cannot be read this many times in a row fails (a disk error, not a rename)
READ_RETRY_SECONDS = 1.0
# The fingerprint of a job failed because its set could not be examined: any real listing differs,
# so the set runs as a new attempt once it can be examined.
UNEXAMINED = "unexamined"
NOT_STARTED = (JobState.WAITING, JobState.QUEUED)  # the states in which the inbox decides about a job


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
        self._inbox_device = _device_of(settings.inbox)  # a different one later: the share was (un)mounted
        self._inbox_trouble_told: str | None = None
        self._read_failures: dict[str, int] = {}  # set name -> reads failed in a row
        self._unexaminable: set[str] = set()  # sets whose examination failed, told once

    @property
    def rules(self) -> FileRules:
        return self._rules

    def reconcile(self, name: str) -> float | None:
        """Bring the set's latest job in line with the inbox; returns seconds until the
        set should be looked at again (still settling), or None.

        Whatever goes wrong while one set is examined is that set's problem: a read that fails
        (the set renamed or deleted under us) is tried again shortly, a few times; anything else
        fails the set's job with the reason (``examination_failed``). Only the job store's
        outages reach the caller: they are every set's, and the pass waits them out."""
        try:
            remaining = self._reconcile(name)
        except Exception as error:
            if is_outage(error):
                raise
            if isinstance(error, OSError):
                failures = self._read_failures[name] = self._read_failures.get(name, 0) + 1
                if failures <= READ_RETRIES:
                    if failures == 1:
                        log.warning("%s: could not be read (%s); looking again shortly", name, error)
                    return READ_RETRY_SECONDS
            return self.examination_failed(name, error)
        self._read_failures.pop(name, None)
        self._unexaminable.discard(name)
        return remaining

    def examination_failed(self, name: str, error: BaseException) -> None:
        """The set's job fails with what went wrong (its status.json says so), once; the set is
        looked at again at its next event or rescan, and runs once it can be examined."""
        cause = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        if name in self._unexaminable:
            log.debug("%s: still cannot be examined (%s)", name, cause)
            return None
        self._unexaminable.add(name)
        log.error("%s: the set could not be examined (%s); it is looked at again when it changes", name, cause,
                  exc_info=error)
        message = f"the daemon could not examine this set ({display_name(cause)})"
        hint = ("change the set (or drop a RETRY file) to have it looked at again; if this keeps happening, "
                "please report it with the journal (journalctl -u instarecon)")
        try:
            latest = self._store.latest_for_set(name)
            if latest is not None and latest.state is JobState.RUNNING:
                return None  # its run goes on; the journal has the rest
            if latest is None or latest.state in TERMINAL_STATES:
                if latest is not None and latest.fingerprint == UNEXAMINED and latest.state is JobState.FAILED:
                    return None
                path = self._settings.inbox / name
                latest = self._store.create_job(
                    set_name=name, source_path=path, source_kind="zip" if name.lower().endswith(".zip") else "folder",
                    fingerprint=UNEXAMINED, state=JobState.WAITING, message=message,
                    attempt=(latest.attempt if latest is not None else 0) + 1,
                    private=True,  # its job.toml could not be read: it may ask for that
                )
            self._store.transition(latest.id, JobState.FAILED, message, stage="ingest", from_states=NOT_STARTED,
                                   error=JobError("ingest", message, hint))
        except Exception as recording:
            if is_outage(recording):
                raise
            log.exception("%s: could not record that the set cannot be examined", name)
        return None

    def _reconcile(self, name: str) -> float | None:
        path = self._settings.inbox / name
        if not could_be_set(name, self._rules):
            return None
        if path.is_symlink():
            self._settle.found(name)
            return self._refuse_link(name, path)
        found = self._read_set(path)
        if found is None:
            return self._set_gone(name)
        self._settle.found(name)
        kind, listing = found

        latest = self._store.latest_for_set(name)
        if listing.cancel_mtime_ns is not None:
            if latest is not None and latest.state in ACTIVE_STATES:
                self._store.request_cancel(latest.id, CANCEL_FILE_REASON)
                log.info("%s: CANCEL file found", name, extra=job_fields(latest))
            self._settle.forget(name)
            return None

        fingerprint = listing.content_fingerprint()
        if latest is not None and latest.state is JobState.RUNNING and latest.fingerprint != fingerprint:
            return self._stop_stale_run(latest)
        why_new = _why_new_attempt(latest, fingerprint, listing.retry_mtime_ns)
        if why_new == CHANGED_AFTER_RUN:
            # Only once the change has settled, READY or not (a READY left from the last run says
            # nothing about this change): a set being deleted, or rewritten in place, never
            # starts a new attempt from what is half gone or half written.
            remaining = self._settle.remaining(name, listing.activity_fingerprint())
            if remaining > 0:
                return remaining
        if why_new:
            request, refusal = _retry_request(path, listing, latest)
            latest = self._store.create_job(
                set_name=name,
                source_path=path,
                source_kind=kind,
                fingerprint=fingerprint,
                state=JobState.WAITING,
                message=self._waiting_message(listing),
                retry_token=listing.retry_mtime_ns,
                attempt=(latest.attempt if latest is not None else 0) + 1,  # one job, however many daemons see the set
                retry_request=request,
                private=self._private(path),
            )
            log.info("%s: %s, job %s (attempt %d)", name, why_new, latest.id, latest.attempt, extra=job_fields(latest))
            if refusal is not None:  # a RETRY file that asks for what cannot be: said, not guessed at
                self._store.transition(latest.id, JobState.FAILED, refusal.message, stage="ingest",
                                       from_states=NOT_STARTED, error=JobError("ingest", refusal.message, refusal.hint))
                log.error("%s: refused: %s", name, refusal.message, extra=job_fields(latest))
                return None
        if latest.state not in (JobState.WAITING, JobState.QUEUED):
            return None

        refusal = listing.escaping_symlink_refusal()
        if refusal is not None:
            message, hint = refusal
            self._store.transition(
                latest.id, JobState.FAILED, message, stage="ingest", from_states=NOT_STARTED,
                error=JobError("ingest", message, hint),
            )
            log.error("%s: refused: %s", name, message, extra=job_fields(latest))
            self._settle.forget(name)
            return None

        if latest.fingerprint != fingerprint:
            # never to a job claimed since it was read: the job runs what it was queued with, and the
            # change then stops it (_stop_stale_run) at the next look
            self._store.update_fields(latest.id, fingerprint=fingerprint, in_states=NOT_STARTED)
            # job.toml may have come after the photos: the job is private (or public) from now on
            self._store.set_private(latest.id, self._private(path), in_states=NOT_STARTED)
            if latest.state == JobState.QUEUED:
                self._store.transition(latest.id, JobState.WAITING, "the set changed before it started; waiting again")
            latest = self._store.get(latest.id)
        if latest.state is not JobState.WAITING:
            return None  # queued, unchanged: it waits for its turn

        # READY says the sender is done, but some send it first, or stall after it: it counts once
        # nothing in the set has changed for a short quiet period (without it, for settle_seconds)
        quiet = self._settings.ready_quiet_seconds if listing.ready else self._settings.settle_seconds
        remaining = self._settle.remaining(name, listing.activity_fingerprint(), quiet)
        if remaining > 0:
            message = self._waiting_message(listing)
            if latest.message != message:
                self._store.update_fields(latest.id, message=message)
            return remaining
        self._settle.forget(name)
        violation = self._over_limits(path, kind, listing)
        if violation is not None:  # said now, not after hours in the queue (ingest checks again)
            self._store.transition(
                latest.id, JobState.FAILED, violation.message, stage="ingest", from_states=(JobState.WAITING,),
                error=JobError("ingest", violation.message, violation.hint),
            )
            log.error("%s: refused: %s (setting %s)", name, violation.message, violation.setting,
                      extra=job_fields(latest))
            return None
        how = "READY marker" if listing.ready else f"no change for {self._settings.settle_seconds:g} s"
        # from waiting only: this daemon's own worker may run the job already (queued by another daemon)
        if self._store.transition(latest.id, JobState.QUEUED, f"queued ({how})", from_states=(JobState.WAITING,)):
            log.info("%s: complete (%s), queued as %s", name, how, latest.id, extra=job_fields(latest))
        return None

    def retry(self, job: JobRecord, from_stage: str | None = None) -> JobRecord:
        """A new queued attempt of a finished, failed or cancelled job's set (`instarecon retry`),
        which reuses ``job``'s stages before ``from_stage`` where it can (daemon/jobs/reuse.py;
        None: from the stage a failed or cancelled job ended in)."""
        if job.state not in TERMINAL_STATES:
            raise ValueError(
                f"job {job.id} is {job.state}; only a done, failed, cancelled or removed job can be retried"
            )
        path = self._settings.inbox / job.set_name
        found = None if path.is_symlink() else self._read_set(path)
        if found is None:
            raise ValueError(f"the set '{display_name(job.set_name)}' is no longer in the inbox ({display_name(str(path))})")
        kind, listing = found
        return self._store.create_job(
            set_name=job.set_name,
            source_path=path,
            source_kind=kind,
            fingerprint=listing.content_fingerprint(),
            state=JobState.QUEUED,
            message=f"queued again by `instarecon retry {job.id}`",
            retry_token=listing.retry_mtime_ns,
            retry_request=RetryRequest(job.id, from_stage),
            private=self._private(path),
        )

    def _private(self, path: Path) -> bool:
        """Whether a job of the set at ``path`` is private, from its job.toml as it is now."""
        return job_privacy(path, self._rules, self._settings.private_by_default)

    def _read_set(self, path: Path) -> tuple[str, SetListing] | None:
        if path.is_dir():
            return "folder", walk_set(path, self._settings.inbox, self._rules)
        if path.is_file() and path.name.lower().endswith(".zip"):
            return "zip", _zip_listing(path)
        return None

    def _over_limits(self, path: Path, kind: str, listing: SetListing) -> LimitViolation | None:
        limits = SetLimits.from_settings(self._settings.stage_settings())
        try:
            photos = listed_photos(listing) if kind == "folder" else zip_photos(path, self._rules)
        except (SetRefused, OSError):  # an archive that cannot be read: ingest says why, in its own words
            return None
        return first_violation(photos, limits)

    def cancel_marker_present(self, job: JobRecord) -> bool:
        """A cheap look for CANCEL while a job runs: the top of the set only."""
        if job.source_kind != "folder":
            return False
        try:
            return any(entry.lower() == CANCEL_MARKER for entry in os.listdir(job.source_path))
        except OSError:
            return False

    def _stop_stale_run(self, job: JobRecord) -> float:
        """The set changed while its job ran (a copy that stalled, photos added after READY): that run
        would publish a scene of a set that no longer is, so it is cancelled, and the set, once it has
        settled, runs as a new attempt. Looked at again shortly, until the run has stopped."""
        if not job.cancel_requested:
            self._store.request_cancel(job.id, CHANGED_WHILE_RUNNING)
            log.warning("%s: the set changed while job %s ran; stopping it, a new attempt starts once the set is "
                        "complete again", job.set_name, job.id, extra=job_fields(job))
        return RUNNING_RECHECK_SECONDS

    def _waiting_message(self, listing: SetListing) -> str:
        if listing.ready:
            return (f"READY found ({len(listing.photos)} files): starting once nothing in the set has changed for "
                    f"{self._settings.ready_quiet_seconds:g} s")
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
        message = f"'{display_name(name)}' is a symbolic link; the daemon never follows links in the inbox"
        job = self._store.create_job(
            set_name=name, source_path=path, source_kind="link", fingerprint=fingerprint,
            state=JobState.WAITING, message=message, private=self._settings.private_by_default,  # never read
        )
        self._store.transition(
            job.id, JobState.FAILED, message, stage="ingest", from_states=(JobState.WAITING,),
            error=JobError("ingest", message, "copy the photos into the inbox instead of linking them"),
        )
        log.error("%s: refused: %s", name, message, extra=job_fields(job))
        return None

    def missing_sets(self, listed: Iterable[str]) -> set[str]:
        """The sets the job store knows (with a job not removed) that a full listing of the inbox
        did not show, for a rescan to look at as well: a set deleted while the daemon was down, or
        whose events were lost, is found gone too (after the same wait and checks). None while the
        inbox cannot be trusted: a dropped share would make every set look missing."""
        if self._inbox_trouble() is not None:
            return set()
        return self._store.set_names_not_removed() - set(listed)

    def _set_gone(self, name: str) -> float | None:
        """The set is not in the inbox: once it has been missing for settle_seconds, and the
        inbox can be trusted, every job of the set that is not removed yet becomes removed, a
        running one after its stage is stopped. Returns when to look again, or None."""
        self._settle.forget(name)
        jobs = [job for job in self._store.jobs_of_set(name) if job.state != JobState.REMOVED]
        if not jobs:
            self._settle.found(name)
            return None
        remaining = self._settle.missing_remaining(name)
        if remaining > 0:
            return remaining
        if self._inbox_trouble() is not None:
            self._settle.found(name)  # the wait starts over once the inbox can be trusted again
            return self._settings.settle_seconds
        look_again = False
        for job in jobs:
            if job.state == JobState.RUNNING:
                if not job.cancel_requested:
                    self._store.request_cancel(job.id, REMOVED_WHILE_RUNNING)
                    log.warning("%s: the set left the inbox; stopping job %s, then removing it", name, job.id,
                                extra=job_fields(job))
                look_again = True
            elif self._store.mark_removed(job.id, SET_LEFT_INBOX):
                log.info("%s: the set left the inbox; job %s removed", name, job.id, extra=job_fields(job))
            else:
                look_again = True  # it changed meanwhile (another daemon started it): look again
        if look_again:
            return RUNNING_RECHECK_SECONDS
        self._settle.found(name)
        return None

    def _inbox_trouble(self) -> str | None:
        """Why the inbox cannot be trusted to say that a set is gone (said once in the journal),
        or None. Never decide a removal on an inbox that is missing, unreadable, on another file
        system than at start, or empty but for a mounted share: a dropped mount looks like that."""
        inbox = self._settings.inbox
        trouble = None
        try:
            found = os.stat(inbox)  # follows a link: the inbox may be one, to the share
            with os.scandir(inbox) as entries:
                empty = next(entries, None) is None
        except OSError as error:
            trouble = f"the inbox {inbox} cannot be read ({error.strerror})"
        else:
            if not stat.S_ISDIR(found.st_mode):
                trouble = f"the inbox {inbox} is not a folder"
            elif self._inbox_device is None:
                self._inbox_device = found.st_dev
            elif found.st_dev != self._inbox_device:
                trouble = (f"the inbox {inbox} is on another file system than when the daemon started (a share "
                           "mounted or unmounted since?); restart the daemon once it is as it should be")
            if trouble is None and empty and not os.path.ismount(inbox):
                trouble = f"the inbox {inbox} is empty, as a share's mount point is when the share has dropped"
        if trouble != self._inbox_trouble_told:
            if trouble is not None:
                log.warning("%s: sets missing from it are not taken as removed until that changes", trouble)
            else:
                log.info("the inbox %s can be trusted again: sets missing from it count as removed", inbox)
            self._inbox_trouble_told = trouble
        return trouble


def _retry_request(path: Path, listing: SetListing,
                   latest: JobRecord | None) -> tuple[RetryRequest | None, SetRefused | None]:
    """A RETRY file not yet answered, after an attempt that ended: a retry of that attempt, from
    the stage the file names (or the default); with why, when the file asks for what cannot be."""
    if latest is None or latest.state not in TERMINAL_STATES or listing.retry_name is None:
        return None, None
    if listing.retry_mtime_ns == latest.retry_token:
        return None, None
    try:
        return RetryRequest(latest.id, read_retry_file(path / listing.retry_name, STAGE_NAMES)), None
    except SetRefused as refusal:
        return None, refusal


def _why_new_attempt(latest: JobRecord | None, fingerprint: str, retry_mtime_ns: int | None) -> str | None:
    if latest is None:
        return "new set"
    if latest.state == JobState.REMOVED and latest.message == SET_LEFT_INBOX:
        return "the set is back in the inbox after it was removed"
    if latest.state not in TERMINAL_STATES:
        return None
    if latest.fingerprint != fingerprint:
        return CHANGED_AFTER_RUN
    if retry_mtime_ns is not None and retry_mtime_ns != latest.retry_token:
        return "RETRY file found"
    return None


def _zip_listing(path: Path) -> SetListing:
    """A zip set is one file: it is complete once it stops changing; its content is checked by ingest."""
    stat = path.stat()
    return SetListing(photos=(FileEntry(path.name, stat.st_size, stat.st_mtime_ns),))


def _device_of(folder: Path) -> int | None:
    try:
        return os.stat(folder).st_dev
    except OSError:
        return None
