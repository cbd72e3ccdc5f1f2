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
    # the job.toml options its output depends on (with the set's photos and the earlier stages'
    # outputs): a retry reuses an earlier attempt's result of this stage only while they are equal
    options: tuple[str, ...] = ()


# The pipeline runs these, in this order. Progress weights follow typical durations: training
# takes the most, then SfM; ingest, evaluation and publishing take seconds to a few minutes.
PIPELINE: tuple[StageSpec, ...] = (
    StageSpec("ingest", "stages.ingest:IngestStage", ("PIL",), 3600, progress_weight=2.0,
              options=("max_image_size", "original_resolution")),
    StageSpec("sfm", "stages.sfm:SfmStage", ("pycolmap",), 6 * 3600, progress_weight=15.0,
              options=("eval",)),  # which photos are held out
    StageSpec("train", "stages.train:TrainStage", ("torch", "numba", "plyfile", "sklearn", "gaussian_splatting"),
              24 * 3600, progress_weight=80.0, resumable=True,
              options=("iterations", "train_max_image_size", "max_gaussians", "train_strategy", "eval")),
    StageSpec("evaluate", "stages.evaluate:EvaluateStage", ("torch", "gaussian_splatting"), 2 * 3600,
              progress_weight=3.0, options=("eval",)),
    StageSpec("publish", "stages.publish:PublishStage", ("torch", "sklearn", "plyfile", "gaussian_splatting", "PIL"),
              3600, progress_weight=2.0, options=("eval",)),
)
STAGE_NAMES = tuple(spec.name for spec in PIPELINE)  # in order: what --from, a RETRY file and stop_after may name
# job.toml options that change no stage's output: how far the job goes, where its page is
OPTIONS_OF_NO_STAGE = ("stop_after", "private")


def load_stage(entry: str) -> Stage:
    module_name, _, class_name = entry.partition(":")
    stage_class = getattr(importlib.import_module(module_name), class_name)
    return stage_class()
