"""Riding out a job store that stops answering (PostgreSQL restarted, the network between hosts
down, SQLite locked for too long): the daemon keeps running, its running stage keeps going, and
the journal and health.json say what is happening, once and then every few minutes rather
than at every retry.

The main loop and the job worker share one ``StoreOutage``: whichever of them sees the database
fail or answer again tells it.

A store that answers but cannot write because its disk is full (SQLite in the state folder:
"database or disk is full") is told as such, not as a store that does not answer: reads still
work there, so only a write that goes through (or a minute with no write failing) ends it.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from typing import Callable, TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from daemon.run.disk_guard import disk_full_words

log = logging.getLogger("instarecon")

T = TypeVar("T")

REMIND_SECONDS = 300.0  # while it lasts, the journal says so again this often
FIRST_DELAY_SECONDS = 0.5
MAX_DELAY_SECONDS = 30.0
# a full disk is over when no write has failed for this long: every writer retries more often
FULL_QUIET_SECONDS = 2 * MAX_DELAY_SECONDS


class StoreUnavailable(Exception):
    """The daemon is stopping while the job store is still away: the write waited for is given up.
    The job stays marked running with this host; it resumes at the next start, or on another
    host once its lease runs out."""


def is_outage(error: BaseException) -> bool:
    """The database away or refusing connections, as opposed to a bug of ours (a bad statement, a
    broken constraint), which no waiting mends."""
    if isinstance(error, (OperationalError, InterfaceError, PoolTimeoutError)):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


def is_disk_full(error: BaseException) -> bool:
    """A write refused for want of disk space (SQLite's "database or disk is full", PostgreSQL's
    DiskFull, or the OS's own ENOSPC), as opposed to a database that does not answer."""
    cause = getattr(error, "orig", None) or error
    return disk_full_words(str(cause)) is not None or type(cause).__name__ == "DiskFull"


def _full_disk_of(error: BaseException) -> str:
    """Whose disk is full, in words for people: SQLite lives in the state folder."""
    cause = getattr(error, "orig", None) or error
    return "the disk of the state folder" if type(cause).__module__.startswith("sqlite3") else \
        "the database server's disk"


def describe(error: BaseException) -> str:
    """One line: the driver's own first line (no SQL, no parameters)."""
    cause = getattr(error, "orig", None) or error
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0]}" if text else type(cause).__name__


class StoreOutage:
    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self._clock = clock
        self._now = now
        self._lock = threading.Lock()
        self._since: float | None = None
        self._since_wall: datetime | None = None
        self._last_said = 0.0
        # writes refused for a full disk: since when (clock, wall), the last refusal, whose disk
        self._full_since: float | None = None
        self._full_since_wall: datetime | None = None
        self._full_last = 0.0
        self._full_said = -REMIND_SECONDS
        self._full_disk = ""

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    @property
    def problem(self) -> str | None:
        """What health.json says while it lasts (public: no error text, no database address)."""
        since = self._since_wall
        if since is not None:
            return (f"the job store has not answered since {since.strftime('%H:%M:%S')} UTC; retrying, "
                    "and a running stage keeps going")
        with self._lock:
            if self._full_since is None or self._clock() - self._full_last >= FULL_QUIET_SECONDS:
                return None
            return (f"the job store cannot write since {self._full_since_wall.strftime('%H:%M:%S')} UTC: "
                    f"{self._full_disk} is full; retrying until space is freed")

    def failed(self, error: BaseException, doing: str) -> None:
        if is_disk_full(error):
            self._refused_for_space(error, doing)
            return
        with self._lock:
            now = self._clock()
            if self._since is None:
                self._since, self._since_wall, self._last_said = now, self._now(), now
                log.warning("the job store does not answer (%s, while %s); retrying with backoff, "
                            "and a running stage keeps going", describe(error), doing)
            elif now - self._last_said >= REMIND_SECONDS:
                self._last_said = now
                log.warning("the job store has not answered for %.0f s (%s); still retrying", now - self._since,
                            describe(error))

    def _refused_for_space(self, error: BaseException, doing: str) -> None:
        with self._lock:
            now = self._clock()
            if self._full_since is None or now - self._full_last >= FULL_QUIET_SECONDS:
                self._full_since, self._full_since_wall = now, self._now()
            self._full_last = now
            self._full_disk = _full_disk_of(error)
            if now - self._full_said >= REMIND_SECONDS:  # a write that slips through now and then says nothing new
                self._full_said = now
                log.warning("the job store cannot write: %s is full (%s, while %s); retrying until space is freed",
                            self._full_disk, describe(error), doing)

    def answered(self, wrote: bool = False) -> None:
        """The store answered; ``wrote``: a write went through, so its disk has room again."""
        with self._lock:
            if wrote and self._full_since is not None:
                if self._clock() - self._full_last < FULL_QUIET_SECONDS:
                    log.info("the job store writes again, after %.1f s", self._clock() - self._full_since)
                self._full_since = self._full_since_wall = None
            if self._since is None:
                return
            log.info("the job store answers again, after %.1f s", self._clock() - self._since)
            self._since = self._since_wall = None

    def wait_out(self, call: Callable[[], T], doing: str, stop: threading.Event,
                 on_wait: Callable[[float], None] | None = None, writes: bool = False) -> T:
        """``call()``, again and again with backoff while the database is away (or its disk full);
        other errors go through at once. ``on_wait(seconds)`` before each wait. Raises
        StoreUnavailable if ``stop`` is set before it answers."""
        delay = FIRST_DELAY_SECONDS
        while True:
            try:
                result = call()
            except Exception as error:
                if not is_outage(error):
                    raise
                self.failed(error, doing)
                if on_wait is not None:
                    on_wait(delay)
                if stop.wait(delay):
                    raise StoreUnavailable(f"stopping while {doing}: the job store did not answer") from error
                delay = min(delay * 2, MAX_DELAY_SECONDS)
                continue
            self.answered(wrote=writes)
            return result


class PatientStore:
    """The job store as the job runner writes it: a stage's start and end, a job's end, each wait
    out an outage rather than fail a job whose work went well. Progress and cancel checks do not
    come through here: they skip a beat instead of holding up a running stage."""

    def __init__(self, store, outage: StoreOutage, stop: threading.Event):
        self.raw = store  # for the calls that must never wait
        self._outage = outage
        self._stop = stop

    def get(self, job_id: str):
        return self._outage.wait_out(lambda: self.raw.get(job_id), f"reading job {job_id}", self._stop)

    def set_stage(self, job_id: str, *args, **fields) -> None:
        self._outage.wait_out(lambda: self.raw.set_stage(job_id, *args, **fields), f"recording job {job_id}'s stage",
                              self._stop, writes=True)

    def transition(self, job_id: str, *args, **fields) -> bool:
        return self._outage.wait_out(lambda: self.raw.transition(job_id, *args, **fields),
                                     f"recording job {job_id}'s state", self._stop, writes=True)

    def update_fields(self, job_id: str, **fields) -> None:
        self._outage.wait_out(lambda: self.raw.update_fields(job_id, **fields), f"recording job {job_id}", self._stop,
                              writes=True)

    def fenced(self, job_id: str, epoch: int, action) -> bool:
        return self._outage.wait_out(lambda: self.raw.fenced(job_id, epoch, action),
                                     f"recording job {job_id}'s stage", self._stop, writes=True)
