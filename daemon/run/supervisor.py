"""Runs one stage in a child process and watches it: progress, timeout, cancel, crash.

The child leads its own process group (``start_new_session``), so stopping it stops
everything it started too (COLMAP threads, a trainer's workers).
"""

from __future__ import annotations

import json
import math
import os
import queue
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import IO, Callable, Sequence

from stages.child import EXIT_FAILED, PARENT_PID_ENV

POLL_SECONDS = 0.2
# So that every line a stage prints reaches the job's log even when the stage is then killed
# (timeout, cancel): Python's output unbuffered; and a Python traceback on a fatal signal (a
# segfault or abort in a C++ library), which otherwise ends the child without a word.
CHILD_ENVIRONMENT = {"PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"}


class Ending(StrEnum):
    FINISHED = "finished"  # exit 0
    FAILED = "failed"  # exit 3: the stage explained why in error.json
    CRASHED = "crashed"  # any other exit, or killed by a signal we did not send
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # the daemon is stopping; the stage will run again


@dataclass(frozen=True)
class ChildOutcome:
    ending: Ending
    returncode: int | None
    last_log_lines: tuple[str, ...]


@dataclass(frozen=True)
class ChildWatch:
    """What the supervisor asks about while the child runs; all called from its thread."""

    on_progress: Callable[[float, str, float | None], None]  # percent, message, eta_seconds
    on_log_line: Callable[[int, str], None]  # syslog priority, text
    on_tick: Callable[[], None]  # every poll, for work held back between lines
    should_cancel: Callable[[], bool]
    should_stop: Callable[[], bool]


def _pump(stream: IO[bytes], lines: "queue.Queue[str | None]") -> None:
    for raw in iter(stream.readline, b""):
        lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
    lines.put(None)


def parse_log_line(text: str) -> tuple[int, str]:
    """``<3>message`` -> (3, "message"); lines without a prefix are informational."""
    if len(text) > 3 and text[0] == "<" and text[2] == ">" and text[1].isdigit():
        return int(text[1]), text[3:]
    return 6, text


def parse_progress_line(text: str) -> tuple[float, str, float | None] | None:
    """``{"percent": 40, "message": "...", "eta_seconds": 12}`` -> (40.0, "...", 12.0); None for
    any other line (``print(42)`` in a stage is JSON too, but no progress)."""
    if not text.startswith("{"):
        return None
    try:
        update = json.loads(text)
        percent = float(update["percent"])
        eta = update.get("eta_seconds")
        eta = None if eta is None else float(eta)
    except (ValueError, KeyError, TypeError):
        return None
    if not math.isfinite(percent) or (eta is not None and not math.isfinite(eta)):
        return None
    return percent, str(update.get("message", "")), eta


def split_progress_line(text: str) -> tuple[str, tuple[float, str, float | None] | None]:
    """A line of the child's output -> (what to log, progress). Output printed without a newline
    just before a progress line shares its line (``loading...{"percent": 10, ...}``): both are kept."""
    update = parse_progress_line(text)
    if update is not None:
        return "", update
    start = text.find('{"percent"')
    if start > 0 and (update := parse_progress_line(text[start:])) is not None:
        return text[:start], update
    return text, None


def run_child(
    command: Sequence[str],
    *,
    timeout_seconds: float,
    grace_seconds: float,
    watch: ChildWatch,
    env: dict[str, str] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> ChildOutcome:
    process = subprocess.Popen(
        list(command),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        # One pipe for both, so the lines keep the order the stage wrote them in: two pipes read
        # by two threads let a line printed just before a crash reach the log after the traceback
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**(os.environ if env is None else env), **CHILD_ENVIRONMENT, PARENT_PID_ENV: str(os.getpid())},
    )
    lines: "queue.Queue[str | None]" = queue.Queue()
    threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True).start()
    deadline = clock() + timeout_seconds
    recent_log: list[str] = []
    ending: Ending | None = None
    output_open = True

    def handle(text: str) -> None:
        text, update = split_progress_line(text)
        if update is None or text:  # a log line, or a stray print() or a library's output: a log line too
            priority, message = parse_log_line(text)
            recent_log.append(message)
            del recent_log[:-20]
            watch.on_log_line(priority, message)
        if update is not None:
            watch.on_progress(*update)

    try:
        next_check = clock()
        group_reaped = False
        while True:
            try:
                text = lines.get(timeout=POLL_SECONDS)
                if text is None:
                    output_open = False
                else:
                    handle(text)
            except queue.Empty:
                pass
            if process.poll() is not None:
                if not output_open:
                    break
                if not group_reaped:
                    # the stage has exited, but something it started still holds our pipes
                    _kill_group(process.pid)
                    group_reaped = True
                continue
            if ending is None and clock() >= next_check:
                next_check = clock() + POLL_SECONDS
                watch.on_tick()
                if watch.should_stop():
                    ending = Ending.INTERRUPTED
                elif watch.should_cancel():
                    ending = Ending.CANCELLED
                elif clock() > deadline:
                    ending = Ending.TIMED_OUT
                if ending is not None:
                    _stop_group(process, grace_seconds)
    except BaseException:  # raised by a watch callback: the stage must not run on unwatched
        _kill_group(process.pid)
        process.wait()
        raise
    process.wait()
    _kill_group(process.pid)  # anything the stage left behind in its group
    if ending is None and process.returncode != 0 and watch.should_stop():
        ending = Ending.INTERRUPTED  # the signal that stops the daemon reached the stage first
    if ending is None:
        if process.returncode == 0:
            ending = Ending.FINISHED
        elif process.returncode == EXIT_FAILED:
            ending = Ending.FAILED
        else:
            ending = Ending.CRASHED
    return ChildOutcome(ending, process.returncode, tuple(recent_log))


def _stop_group(process: subprocess.Popen, grace_seconds: float) -> None:
    """SIGTERM to the whole group, SIGKILL after the grace period."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        _kill_group(process.pid)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def describe_exit(returncode: int | None) -> str:
    """Exit codes as words: -9 and 137 are, in practice, the out-of-memory killer."""
    if returncode is None:
        return "did not exit"
    if returncode < 0 or returncode > 128:
        number = -returncode if returncode < 0 else returncode - 128
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        if number == signal.SIGKILL:
            return f"was killed by {name}, most likely by the out-of-memory killer"
        return f"was killed by {name}"
    return f"exited with code {returncode}"
