"""Job states and the only transitions allowed between them, in one table."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    WAITING = "waiting"  # seen, but the set is not complete yet
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REMOVED = "removed"  # its set left the inbox, or `instarecon remove` deleted its results


TERMINAL_STATES = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED, JobState.REMOVED})
ACTIVE_STATES = frozenset({JobState.WAITING, JobState.QUEUED, JobState.RUNNING})

# to-state -> the states it may be reached from. An ended job changes once more at most: to
# removed. Running a set once more is a new attempt, i.e. a new job. A running job is never
# removed directly: it is cancelled first (its supervisor stops the stage and records that), then
# removed, so the event log tells what happened to the work under way.
ALLOWED_FROM: dict[JobState, frozenset[JobState]] = {
    JobState.WAITING: frozenset({JobState.QUEUED}),  # the set changed before the job started
    JobState.QUEUED: frozenset({JobState.WAITING, JobState.RUNNING}),  # RUNNING: daemon stopped, resume later
    JobState.RUNNING: frozenset({JobState.QUEUED}),
    JobState.DONE: frozenset({JobState.RUNNING}),
    JobState.FAILED: frozenset({JobState.WAITING, JobState.QUEUED, JobState.RUNNING}),
    JobState.CANCELLED: frozenset({JobState.WAITING, JobState.QUEUED, JobState.RUNNING}),
    JobState.REMOVED: frozenset(
        {JobState.WAITING, JobState.QUEUED, JobState.DONE, JobState.FAILED, JobState.CANCELLED}
    ),
}
