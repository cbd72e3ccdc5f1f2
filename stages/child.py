"""Entry point of a stage's child process: ``python -m stages.child CONTEXT_JSON STAGE_ENTRY``.

Talks to the supervising daemon through three channels only:
- stdout: one JSON object per line, ``{"percent": float, "message": str}``, with
  ``"eta_seconds": float`` when the stage can estimate the time it has left;
- stderr: log lines, each starting with a syslog priority such as ``<6>``;
- the exit code (0 finished, 3 failed for a reason in ``error.json``, else a crash),
  with ``result.json`` or ``error.json`` written atomically into the output folder.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from pathlib import Path

from stages.atomic_files import atomic_write_json
from stages.base import ERROR_FILE, RESULT_FILE, StageContext, StageFailed
from stages.parent_death import die_with_parent
from stages.registry import load_stage

EXIT_FAILED = 3
PARENT_PID_ENV = "INSTARECON_SUPERVISOR_PID"

_SYSLOG_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class _PriorityFormatter(logging.Formatter):
    """Every line gets the priority: a message of several lines (a traceback, or text that quotes a
    name holding a newline) must not leave a line whose own start reads like a priority."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _SYSLOG_PRIORITY.get(record.levelno, 6)
        return "\n".join(f"<{priority}>{line}" for line in super().format(record).split("\n"))


def _report_progress(percent: float, message: str = "", eta_seconds: float | None = None) -> None:
    update = {"percent": round(min(100.0, max(0.0, float(percent))), 2), "message": message}
    if eta_seconds is not None:
        update["eta_seconds"] = round(max(0.0, float(eta_seconds)), 1)
    sys.stdout.write(json.dumps(update) + "\n")
    sys.stdout.flush()


def _die_with_supervisor() -> None:
    """If the daemon is SIGKILLed, its stage must not run on unsupervised (Linux only).

    Otherwise a restarted daemon would run the stage again beside the orphan, both
    writing the same folder.
    """
    supervisor = os.environ.get(PARENT_PID_ENV)
    if not supervisor or not die_with_parent():
        return
    if os.getppid() != int(supervisor):  # the supervisor died before prctl took effect
        os._exit(1)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    _die_with_supervisor()
    if len(argv) != 2:
        print("<3>usage: python -m stages.child CONTEXT_JSON STAGE_ENTRY", file=sys.stderr)
        return 2
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_PriorityFormatter("%(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)

    context = StageContext.from_json(json.loads(Path(argv[0]).read_text()))
    stage = load_stage(argv[1])
    context.output_dir.mkdir(parents=True, exist_ok=True)
    try:
        result = stage.run(context, _report_progress)
    except StageFailed as failure:
        atomic_write_json(context.output_dir / ERROR_FILE, failure.to_json())
        logging.getLogger(f"stages.{stage.name}").error("%s", failure.message)
        return EXIT_FAILED
    except Exception:
        sys.stderr.write("".join(f"<3>{line}\n" for line in traceback.format_exc().splitlines()))
        sys.stderr.flush()
        return 1
    atomic_write_json(context.output_dir / RESULT_FILE, result.to_json())
    _report_progress(100.0, "done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
