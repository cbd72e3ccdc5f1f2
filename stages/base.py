"""The one contract every stage follows, and the promises of the runner that runs it.

A stage reads its inputs from disk (the user's set, earlier stages' folders under
``job_dir``) and writes its outputs into ``output_dir``. The runner promises:

- each stage runs in its own child process, with a per-stage timeout, and may be
  killed at any moment (cancel, timeout, daemon shutdown); its process group goes too;
- ``job_dir`` is laid out as the job's folder, but it is the folder of one claim of the job
  (daemon/run/claim_folder.py): earlier stages appear in it as links, and ``output_dir`` reaches
  the job's folder once the stage finished, and only while the claim holds; outputs are named
  relative to ``job_dir``, so they name the same files before and after;
- ``output_dir`` is empty when ``run`` starts, unless the stage's registry entry says
  it is ``resumable``, in which case it holds (hard-linked) what an interrupted earlier run
  left: a resumable stage writes each file by rename, never in place;
- the stage counts as finished only once ``result.json`` exists, which the runner
  writes atomically from the returned ``StageResult``; a crash before that means the
  stage runs again, so ``run`` must be safe to repeat;
- raising ``StageFailed`` ends the job as failed with that message and hint, for
  problems the user can fix (bad photos, too little overlap); any other exception is
  reported as a crash of the stage.

Two audiences: what a stage returns or raises (warnings, StageFailed's message and hint, the
reasons photos were left out, progress messages) lands in status.json and on the job's public
page, for the person who dropped the photos: no server paths, no daemon settings they cannot
change (job.toml's options are theirs), and ``ASK_THE_OPERATOR`` where only the operator can
act. What the operator needs (paths, settings) the stage logs: its log lines go to the journal.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping, Protocol

RESULT_FILE = "result.json"
ERROR_FILE = "error.json"
# The hint for a problem of the server's, not the photos': the journal has the operator's half
ASK_THE_OPERATOR = "ask the server's operator to fix it (the journal says what to change), then drop a RETRY file"



class ProgressReporter(Protocol):
    """How a stage reports: percent (0-100 within this stage), a short message for people, and
    the seconds it expects to have left when it can tell (training can; most stages cannot)."""

    def __call__(self, percent: float, message: str, eta_seconds: float | None = None) -> None: ...


@dataclass(frozen=True)
class StageContext:
    job_id: str
    set_name: str
    source: Path  # the user's set: a folder, or a .zip file; never written to
    inbox: Path  # root of the inbox, to keep symlinks from leading out of it
    job_dir: Path  # state/jobs/<job_id>/; stage N reads job_dir/<earlier stage>/
    output_dir: Path  # job_dir/<this stage>/
    options: Mapping[str, Any]  # job.toml, validated, with defaults filled in
    settings: Mapping[str, Any]  # the daemon settings stages need (threads, limits)

    def stage_dir(self, stage: str) -> Path:
        return self.job_dir / stage

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "set_name": self.set_name,
            "source": str(self.source),
            "inbox": str(self.inbox),
            "job_dir": str(self.job_dir),
            "output_dir": str(self.output_dir),
            "options": dict(self.options),
            "settings": dict(self.settings),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "StageContext":
        return cls(
            job_id=data["job_id"],
            set_name=data["set_name"],
            source=Path(data["source"]),
            inbox=Path(data["inbox"]),
            job_dir=Path(data["job_dir"]),
            output_dir=Path(data["output_dir"]),
            options=dict(data["options"]),
            settings=dict(data["settings"]),
        )


@dataclass(frozen=True)
class StageResult:
    """What a finished stage tells the daemon; stored in result.json and in status.json."""

    metrics: Mapping[str, Any] = field(default_factory=dict)  # status.json metrics.<stage>
    outputs: Mapping[str, str] = field(default_factory=dict)  # name -> path relative to job_dir
    warnings: tuple[str, ...] = ()
    images: Mapping[str, Any] | None = None  # ingest: {found, accepted, rejected: [{file, reason}]}
    # names in ``outputs`` whose files the daemon copies into <outbox>/<job_id>/ (same file
    # name, atomically) before it records the stage as done: what web servers and users fetch
    to_outbox: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "metrics": dict(self.metrics),
            "outputs": dict(self.outputs),
            "warnings": list(self.warnings),
            "images": None if self.images is None else dict(self.images),
            "to_outbox": list(self.to_outbox),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "StageResult":
        return cls(
            metrics=data.get("metrics", {}),
            outputs=data.get("outputs", {}),
            warnings=tuple(data.get("warnings", ())),
            images=data.get("images"),
            to_outbox=tuple(data.get("to_outbox", ())),
        )


def read_result(context: StageContext, stage: str) -> StageResult:
    """What an earlier stage of this job handed on: the runner starts a stage only once every stage
    before it has its result.json."""
    return StageResult.from_json(json.loads((context.stage_dir(stage) / RESULT_FILE).read_text()))


class StageFailed(Exception):
    """The input cannot go on through the pipeline, for a reason the user can act on."""

    def __init__(self, message: str, hint: str | None = None, images: Mapping[str, Any] | None = None,
                 metrics: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.images = images  # ingest: what was accepted and rejected before giving up
        self.metrics = metrics  # status.json metrics.<stage> all the same (sfm: the photos it could not place, and why)

    def to_json(self) -> dict[str, Any]:
        return {"message": self.message, "hint": self.hint, "images": self.images, "metrics": self.metrics}


class Stage(ABC):
    name: ClassVar[str]

    @abstractmethod
    def run(self, context: StageContext, report: ProgressReporter) -> StageResult:
        """Do the work; call ``report`` as it advances; raise StageFailed for bad input."""
