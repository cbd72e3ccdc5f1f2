"""A stage for the job-log tests: it prints the lines a test gives it, slowly, and reports no
progress at all, so whatever status.json shows of them comes from the job's log.

It runs in a real child process through the real stage contract. Its script is a JSON file named
by ``INSTARECON_TEST_LOG_SCRIPT`` (the daemon's environment reaches its stages): per set name,
``{"lines": [...], "step": seconds between lines, "crash": true to raise at the end}``. Lines go
to stdout and stderr by turns, as stray prints and library output would.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from stages.base import Stage, StageContext, StageResult
from stages.registry import PIPELINE, StageSpec

SCRIPT_ENV = "INSTARECON_TEST_LOG_SCRIPT"


class LoggingStage(Stage):
    name = "sfm"

    def run(self, context: StageContext, report) -> StageResult:
        script = json.loads(Path(os.environ[SCRIPT_ENV]).read_text())[context.set_name]
        for number, line in enumerate(script["lines"]):
            print(line, file=sys.stderr if number % 2 else sys.stdout)
            time.sleep(script.get("step", 0.0))
        if script.get("crash"):
            raise RuntimeError("the test stage gave up")
        return StageResult(metrics={"lines": len(script["lines"])})


def write_script(path: Path, sets: dict) -> dict[str, str]:
    """Write the script; returns the environment that names it to a daemon."""
    path.write_text(json.dumps(sets))
    return {SCRIPT_ENV: str(path)}


INGEST = next(spec for spec in PIPELINE if spec.name == "ingest")
LOGGING_PIPELINE = (INGEST, StageSpec("sfm", "tests.log_stage:LoggingStage", (), 600, progress_weight=20.0))
