"""A second stage for daemon tests: slow on purpose, so that tests can kill, cancel and
interrupt a job while a stage runs and after an earlier stage has finished.

It runs in a real child process through the real stage contract; it takes
``iterations`` steps of 0.1 s, records each run it starts in ``paced-runs.txt`` and
its process id in ``paced.pid``; the folder it finishes holds ``writer.txt``, the process id of the
run that wrote it.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from stages.base import Stage, StageContext, StageResult
from stages.registry import PIPELINE, StageSpec

STEP_SECONDS = 0.1
# with this environment variable set to N, the stage stops itself (SIGSTOP) after its N-th step:
# a test freezes a run at a known point, as a paused machine would be
STOP_AT_STEP = "PACED_STOP_AT_STEP"


def job_folder(context: StageContext) -> Path:
    """The job's own work folder, which outlives its claims: a stage runs in a claim's folder
    (``claims/<epoch>/`` inside it, daemon/run/claim_folder.py), which goes once the job is done."""
    return context.job_dir.parent.parent if context.job_dir.parent.name == "claims" else context.job_dir


class PacedStage(Stage):
    name = "sfm"

    def run(self, context: StageContext, report) -> StageResult:
        with open(job_folder(context) / "paced-runs.txt", "a") as runs:
            runs.write("run\n")
        (job_folder(context) / "paced.pid").write_text(str(os.getpid()))
        images = sorted((context.stage_dir("ingest") / "images").iterdir())
        steps = int(context.options["iterations"])
        stop_at = os.environ.get(STOP_AT_STEP)
        for step in range(steps):
            time.sleep(STEP_SECONDS)
            report(100.0 * (step + 1) / steps, f"step {step + 1}/{steps}")
            if stop_at is not None and step + 1 == int(stop_at):
                os.kill(os.getpid(), signal.SIGSTOP)  # frozen here until a test sends SIGCONT
        (context.output_dir / "seen.txt").write_text("\n".join(image.name for image in images))
        (context.output_dir / "writer.txt").write_text(str(os.getpid()))  # which run wrote the folder
        return StageResult(metrics={"steps": steps, "images": len(images)}, outputs={"seen": "sfm/seen.txt"})


INGEST = next(spec for spec in PIPELINE if spec.name == "ingest")
PACED_PIPELINE = (INGEST, StageSpec("sfm", "tests.paced_stage:PacedStage", (), 600, progress_weight=20.0))
