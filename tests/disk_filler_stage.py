"""A first stage for the disk guard's tests: it stands in for ingest, and writes far more than
ingest's estimate (a ballast file of ``FILL_BYTES``), so that the disk runs short between two
stages of one job. The paced stage (tests/paced_stage.py) follows it."""

from __future__ import annotations

from stages.base import Stage, StageContext, StageResult
from stages.registry import StageSpec
from tests.paced_stage import PACED_PIPELINE

FILL_BYTES = 34 * 1024 * 1024
BALLAST = "ballast.bin"


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


FILLING_PIPELINE = (StageSpec("ingest", "tests.disk_filler_stage:DiskFillerStage", (), 600, progress_weight=2.0),
                    PACED_PIPELINE[1])
