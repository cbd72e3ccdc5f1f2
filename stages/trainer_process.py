"""Running a 3DGS-compatible trainer as a subprocess and turning its output into progress.

The trainer is a command line (ours, ``python -m gaussian_splatting``, or another trainer with
the reference's flags, named by the ``trainer_command`` setting). Its stdout carries JSON
progress lines ``{"iteration", "iterations", "loss", "gaussians", "iterations_per_second"}``;
other lines on either stream are its log, passed on to ours. It shares our process group, so a
cancel or timeout of the stage stops it too.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
from dataclasses import dataclass
from typing import Callable, Sequence

from stages.parent_death import die_with_parent

log = logging.getLogger("stages.train")

# How a progress line's rate is smoothed for the ETA: later iterations are slower (the model
# grows), so recent rates count most.
RATE_SMOOTHING = 0.3
_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR,
           "CRITICAL": logging.CRITICAL}


@dataclass(frozen=True)
class TrainerProgress:
    iteration: int
    iterations: int
    loss: float
    gaussians: int
    eta_seconds: float | None

    @property
    def percent(self) -> float:
        return 100.0 * self.iteration / max(self.iterations, 1)

    def describe(self) -> str:
        return f"iteration {self.iteration}/{self.iterations}, {self.gaussians:,} Gaussians, loss {self.loss:.4f}"


@dataclass(frozen=True)
class TrainerRun:
    returncode: int
    last_progress: TrainerProgress | None
    log_tail: tuple[str, ...]  # the last lines it logged, for error messages


class _ProgressReader:
    """Parses progress lines and keeps a smoothed rate for the ETA."""

    def __init__(self) -> None:
        self.rate: float | None = None
        self.last: TrainerProgress | None = None

    def parse(self, line: str) -> TrainerProgress | None:
        try:
            data = json.loads(line)
            iteration, iterations = int(data["iteration"]), int(data["iterations"])
            rate = float(data.get("iterations_per_second") or 0.0)
            loss, gaussians = float(data.get("loss", float("nan"))), int(data.get("gaussians", 0))
        except (ValueError, KeyError, TypeError):
            return None
        if rate > 0:
            self.rate = rate if self.rate is None else RATE_SMOOTHING * rate + (1 - RATE_SMOOTHING) * self.rate
        eta = (iterations - iteration) / self.rate if self.rate else None
        self.last = TrainerProgress(iteration, iterations, loss, gaussians, eta)
        return self.last


def run_trainer(
    command: Sequence[str], on_progress: Callable[[TrainerProgress], None], environment: dict[str, str] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> TrainerRun:
    """Run ``command`` to the end, passing its progress on and its log lines to our log;
    ``on_start`` is told the trainer's process id once it runs (the GPU watch counts its memory)."""
    env = {**os.environ, **(environment or {}), "PYTHONUNBUFFERED": "1"}
    log.info("trainer: %s", " ".join(command))
    # the trainer dies with this stage process, which dies with the daemon (parent_death)
    process = subprocess.Popen(
        list(command), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, errors="replace", env=env, bufsize=1, preexec_fn=die_with_parent,
    )  # fmt: skip
    if on_start is not None:
        on_start(process.pid)
    tail: list[str] = []
    tail_lock = threading.Lock()

    def keep(line: str) -> None:
        with tail_lock:
            tail.append(line)
            del tail[:-20]

    def pump_log() -> None:
        for line in process.stderr:
            line = line.rstrip()
            if line:
                keep(line)
                log.log(_level_of(line), "%s", line)

    stderr_thread = threading.Thread(target=pump_log, daemon=True)
    stderr_thread.start()
    reader = _ProgressReader()
    for line in process.stdout:
        line = line.rstrip()
        progress = reader.parse(line) if line.startswith("{") else None
        if progress is not None:
            on_progress(progress)
        elif line:
            keep(line)
            log.info("%s", line)
    returncode = process.wait()
    stderr_thread.join(timeout=5)
    with tail_lock:
        return TrainerRun(returncode, reader.last, tuple(tail))


def _level_of(line: str) -> int:
    """The level our trainer's log format names (``time LEVEL name: message``); INFO otherwise."""
    words = line.split(maxsplit=3)
    for word in words[1:3]:
        if word in _LEVELS:
            return _LEVELS[word]
    return logging.INFO
