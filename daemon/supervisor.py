"""Runs one stage in a child process and watches it: progress, timeout, cancel, crash.

The child leads its own process group (``start_new_session``), so stopping it stops
everything it started too (COLMAP threads, a trainer's workers).
"""

from __future__ import annotations

import json
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


def _pump(stream: IO[bytes], tag: str, lines: "queue.Queue[tuple[str, str]]") -> None:
    for raw in iter(stream.readline, b""):
        lines.put((tag, raw.decode("utf-8", "replace").rstrip("\n")))
    lines.put((tag, None))


def parse_log_line(text: str) -> tuple[int, str]:
    """``<3>message`` -> (3, "message"); lines without a prefix are informational."""
    if len(text) > 3 and text[0] == "<" and text[2] == ">" and text[1].isdigit():
        return int(text[1]), text[3:]
    return 6, text


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
        stderr=subprocess.PIPE,
        start_new_session=True,
        env={**(os.environ if env is None else env), PARENT_PID_ENV: str(os.getpid())},
    )
    lines: "queue.Queue[tuple[str, str | None]]" = queue.Queue()
    pumps = [
        threading.Thread(target=_pump, args=(process.stdout, "out", lines), daemon=True),
        threading.Thread(target=_pump, args=(process.stderr, "err", lines), daemon=True),
    ]
    for pump in pumps:
        pump.start()
    deadline = clock() + timeout_seconds
    recent_log: list[str] = []
    ending: Ending | None = None
    open_streams = 2

    def handle(tag: str, text: str) -> None:
        if tag == "out":
            try:
                update = json.loads(text)
                eta = update.get("eta_seconds")
                watch.on_progress(
                    float(update["percent"]), str(update.get("message", "")), None if eta is None else float(eta)
                )
            except (ValueError, KeyError, TypeError):
                watch.on_log_line(6, text)  # a stray print(): keep it as a log line
        else:
            priority, message = parse_log_line(text)
            recent_log.append(message)
            del recent_log[:-20]
            watch.on_log_line(priority, message)

    next_check = clock()
    group_reaped = False
    while True:
        try:
            tag, text = lines.get(timeout=POLL_SECONDS)
            if text is None:
                open_streams -= 1
            else:
                handle(tag, text)
        except queue.Empty:
            pass
        if process.poll() is not None:
            if open_streams == 0:
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
