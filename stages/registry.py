"""The pipeline the daemon runs: stage names, where their code lives, what they need.

Entries name their class as "module:Class" so that the daemon can list, check and
schedule stages without importing them; only the stage's child process imports it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from stages.base import Stage


@dataclass(frozen=True)
class StageSpec:
    name: str
    entry: str  # "package.module:ClassName"
    requires: tuple[str, ...]  # importable modules the stage needs (checked by `instarecon doctor`)
    default_timeout_seconds: int
    progress_weight: float  # share of the job's overall progress, relative to the others
    resumable: bool = False  # keep the output folder across interrupted runs (checkpoints)


# Stages land one issue at a time (train, evaluate, publish follow); the pipeline runs
# those present, in this order. Progress weights follow typical durations: SfM takes
# minutes where ingest takes seconds.
PIPELINE: tuple[StageSpec, ...] = (
    StageSpec("ingest", "stages.ingest:IngestStage", ("PIL",), 3600, progress_weight=5.0),
    StageSpec("sfm", "stages.sfm:SfmStage", ("pycolmap",), 6 * 3600, progress_weight=25.0),
)


def load_stage(entry: str) -> Stage:
    module_name, _, class_name = entry.partition(":")
    stage_class = getattr(importlib.import_module(module_name), class_name)
    return stage_class()
