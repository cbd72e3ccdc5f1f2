"""What the job store keeps of each stage of a job, and of the failure that ended it.

Both are plain, frozen data with one JSON form: the store writes ``to_json()`` into its JSON
columns and reads them back with ``from_json``, so no caller builds or patches these dicts by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Mapping


class StageState(str, Enum):
    PENDING = "pending"  # never stored: what status.json says of a stage that has not run
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # the daemon stopped, or the disk filled: the stage runs again

    def __str__(self) -> str:
        return self.value


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class StageRecord:
    state: StageState
    started_at: str | None = None  # ISO 8601, UTC
    finished_at: str | None = None
    seconds: float | None = None  # how long the stage ran; None when a restart found it finished
    eta_seconds: float | None = None  # while running: what the stage expects to have left, if it can tell
    reused_from: str | None = None  # the earlier attempt whose result of this stage a retry took over

    @classmethod
    def started(cls, now: datetime | None = None) -> StageRecord:
        return cls(StageState.RUNNING, started_at=iso(now or datetime.now(timezone.utc)))

    def ended(self, state: StageState, seconds: float | None, now: datetime | None = None,
              reused_from: str | None = None) -> StageRecord:
        """This stage once it has ended in ``state``: its start kept, its end now, its estimate gone."""
        return StageRecord(state, started_at=self.started_at, finished_at=iso(now or datetime.now(timezone.utc)),
                           seconds=seconds, reused_from=reused_from)

    def with_eta(self, eta_seconds: float | None) -> StageRecord:
        return replace(self, eta_seconds=eta_seconds)

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"state": self.state.value, "started_at": self.started_at,
                                    "finished_at": self.finished_at, "seconds": self.seconds}
        if self.eta_seconds is not None:
            document["eta_seconds"] = self.eta_seconds
        if self.reused_from is not None:
            document["reused_from"] = self.reused_from
        return document

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> StageRecord:
        return cls(StageState(document["state"]), document.get("started_at"), document.get("finished_at"),
                   document.get("seconds"), document.get("eta_seconds"), document.get("reused_from"))


NOT_STARTED = StageRecord(StageState.PENDING)


@dataclass(frozen=True)
class JobError:
    """Why a job failed, for the person who dropped the set: ``message`` says what is wrong, ``hint``
    what to do about it; ``stage`` is where it happened (None: before any stage, or unknown)."""

    stage: str | None
    message: str
    hint: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"stage": self.stage, "message": self.message, "hint": self.hint}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> JobError:
        return cls(document.get("stage"), document.get("message") or "", document.get("hint"))


@dataclass(frozen=True)
class RetryRequest:
    """A retry's wish to reuse an earlier attempt's stages (daemon/jobs/reuse.py): the attempt, and
    the stage to start from (None: the stage that attempt failed or was cancelled in)."""

    earlier_job: str
    from_stage: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"earlier_job": self.earlier_job, "from_stage": self.from_stage}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> RetryRequest:
        return cls(str(document["earlier_job"]), document.get("from_stage"))
