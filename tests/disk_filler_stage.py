"""Stand-in stages for the disk guard's tests.

``DiskFillerStage`` stands in for ingest, and writes far more than ingest's estimate (a ballast
file of ``FILL_BYTES``), so that the disk runs short between two stages of one job. The paced
stage (tests/paced_stage.py) follows it.

``DiskFullStage`` stands in for a stage that writes a large model (COLMAP's database, training
checkpoints): ``MODEL_BYTES`` into its folder, a chunk at a time, more than the guard's estimate
for sfm; on a disk that fills first, the write's OSError (ENOSPC) ends it as it would any
stage. A run that finds a partial model (its folder kept: resumable) continues it. The aborting
variant dies as COLMAP does when a write fails: SIGABRT, without a word about the disk. Each
run is recorded in ``<job>/model-runs.txt``, with the size of the model it found.
"""

from __future__ import annotations

import os

from stages.base import Stage, StageContext, StageResult
from stages.registry import StageSpec
from tests.paced_stage import INGEST, PACED_PIPELINE, job_folder

FILL_BYTES = 34 * 1024 * 1024
BALLAST = "ballast.bin"
MODEL = "model.bin"
MODEL_BYTES = 24_000_000
CHUNK_BYTES = 1_000_000
MODEL_RUNS = "model-runs.txt"


class DiskFillerStage(Stage):
    name = "ingest"

    def run(self, context: StageContext, report) -> StageResult:
        images = context.output_dir / "images"
        images.mkdir(exist_ok=True)
        for photo in sorted(context.source.glob("*.jpg")):
            (images / photo.name).write_bytes(photo.read_bytes())
        with open(context.output_dir / BALLAST, "wb") as ballast:
            ballast.write(b"\0" * FILL_BYTES)  # real blocks: a sparse file would take no space
        report(100.0, "filled")
        return StageResult(metrics={"filled": FILL_BYTES})


class DiskFullStage(Stage):
    name = "sfm"

    def run(self, context: StageContext, report) -> StageResult:
        model = context.output_dir / MODEL
        with open(job_folder(context) / MODEL_RUNS, "a") as runs:
            runs.write(f"run from {model.stat().st_size if model.exists() else 0}\n")
        with open(model, "ab") as handle:
            while (written := handle.tell()) < MODEL_BYTES:
                handle.write(b"\1" * min(CHUNK_BYTES, MODEL_BYTES - written))
                handle.flush()
                report(100.0 * handle.tell() / MODEL_BYTES, f"{handle.tell()} bytes written")
        return StageResult(metrics={"model_bytes": model.stat().st_size})


class AbortingDiskFullStage(DiskFullStage):
    def run(self, context: StageContext, report) -> StageResult:
        try:
            return super().run(context, report)
        except OSError:
            os.abort()


FILLING_PIPELINE = (StageSpec("ingest", "tests.disk_filler_stage:DiskFillerStage", (), 600, progress_weight=2.0),
                    PACED_PIPELINE[1])
DISK_FULL_PIPELINE = (INGEST, StageSpec("sfm", "tests.disk_filler_stage:DiskFullStage", (), 600, progress_weight=20.0))
ABORTING_PIPELINE = (INGEST, StageSpec("sfm", "tests.disk_filler_stage:AbortingDiskFullStage", (), 600,
                                       progress_weight=20.0))
RESUMABLE_PIPELINE = (INGEST, StageSpec("sfm", "tests.disk_filler_stage:DiskFullStage", (), 600, progress_weight=20.0,
                                        resumable=True))
