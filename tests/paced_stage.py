"""A second stage for daemon tests: slow on purpose, so that tests can kill, cancel and
interrupt a job while a stage runs and after an earlier stage has finished.

It runs in a real child process through the real stage contract; it takes
``iterations`` steps of 0.1 s, records each run it starts in ``paced-runs.txt`` and
its process id in ``paced.pid``.
"""

from __future__ import annotations

import os
import time

from stages.base import Stage, StageContext, StageResult
from stages.registry import PIPELINE, StageSpec

STEP_SECONDS = 0.1


class PacedStage(Stage):
    name = "sfm"

    def run(self, context: StageContext, report) -> StageResult:
        with open(context.job_dir / "paced-runs.txt", "a") as runs:
            runs.write("run\n")
        (context.job_dir / "paced.pid").write_text(str(os.getpid()))
        images = sorted((context.stage_dir("ingest") / "images").iterdir())
        steps = int(context.options["iterations"])
        for step in range(steps):
            time.sleep(STEP_SECONDS)
            report(100.0 * (step + 1) / steps, f"step {step + 1}/{steps}")
        (context.output_dir / "seen.txt").write_text("\n".join(image.name for image in images))
        return StageResult(metrics={"steps": steps, "images": len(images)}, outputs={"seen": "sfm/seen.txt"})


INGEST = next(spec for spec in PIPELINE if spec.name == "ingest")
PACED_PIPELINE = (INGEST, StageSpec("sfm", "tests.paced_stage:PacedStage", (), 600, progress_weight=20.0))
