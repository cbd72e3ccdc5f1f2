"""Jobs this daemon found short of disk space, and how long each may hold up the queue.

A job short of space goes back to the queue in its place. For ``space_wait_hold_minutes`` the
jobs behind it wait too (in order: a stream of small sets must not keep a large one waiting for
good); after that the worker passes it over, and runs the jobs behind it that fit. A waiting
job is tried again as soon as the disk says it would fit (looked at every few seconds while
the worker is free) or every few minutes (it may need less than the last estimate said, or
have been cancelled). health.json lists each one while it waits.

This is one daemon's view of its own disks: daemons that share a job store each keep theirs.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Callable

from daemon.run.disk_guard import Shortage, size_text

RETRY_SECONDS = 300.0  # a waiting job is tried again at least this often


@dataclass(frozen=True)
class SpaceWait:
    job_id: str
    stage: str  # the stage it waits to start (or to run again)
    since: datetime  # when it first found the disk short (UTC), for health.json
    held_from: float  # the same moment on the daemon's clock: the hold is counted from it
    tried_at: float  # the last look at the disk on its behalf
    more: int  # bytes still to be freed, at that look
    where: str  # "state folder", or "state folder and outbox folder" when they share a disk

    @property
    def problem(self) -> str:
        """For health.json, which is public: the job and the numbers, no path."""
        return (f"job {self.job_id} has waited for disk space since {self.since.strftime('%H:%M')} UTC: "
                f"needs about {size_text(self.more)} more in the {self.where}")


@dataclass(frozen=True)
class QueuePlan:
    """What the worker does next: wait (a job holds the queue), or claim the next job but these."""

    holding: str | None  # a job still within its hold and not yet worth another try: claim nothing
    pass_over: frozenset[str]  # jobs past their hold and not due for a try: claim the ones behind them


class SpaceWaits:
    def __init__(self, hold_seconds: float, clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self._hold = hold_seconds
        self._clock = clock
        self._now = now
        self._lock = threading.Lock()  # the worker writes, the main loop reads problems
        self._waits: dict[str, SpaceWait] = {}

    def short(self, job_id: str, stage: str, shortage: Shortage) -> bool:
        """Record a look that found the disk short; True if the job was not waiting yet. A job
        that waits again keeps its hold's start: a retry does not buy it another hold."""
        at = self._clock()
        with self._lock:
            known = self._waits.get(job_id)
            if known is None:
                self._waits[job_id] = SpaceWait(job_id, stage, self._now(), at, at, shortage.more, shortage.where)
            else:
                self._waits[job_id] = replace(known, stage=stage, tried_at=at, more=shortage.more, where=shortage.where)
        return known is None

    def forget(self, job_id: str) -> None:
        """The job fits, ended, or left the queue (cancelled, taken by another daemon)."""
        with self._lock:
            self._waits.pop(job_id, None)

    def plan(self, fits: Callable[[str], bool]) -> QueuePlan:
        """``fits(job_id)``: whether the disk would hold that job now. A job is due for a try when
        it fits or its retry time has come; while none is due and one is within its hold, the
        queue waits."""
        now = self._clock()
        with self._lock:
            waits = list(self._waits.values())
        due = {wait.job_id for wait in waits if now - wait.tried_at >= RETRY_SECONDS or fits(wait.job_id)}
        held = [wait for wait in waits if wait.job_id not in due and now - wait.held_from < self._hold]
        if held and not due:
            return QueuePlan(held[0].job_id, frozenset())
        return QueuePlan(None, frozenset(wait.job_id for wait in waits
                                         if wait.job_id not in due and now - wait.held_from >= self._hold))

    def problems(self) -> tuple[str, ...]:
        with self._lock:
            waits = sorted(self._waits.values(), key=lambda wait: wait.held_from)
        return tuple(wait.problem for wait in waits)
