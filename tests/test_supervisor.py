"""The stage supervisor with real child processes: progress, logs, timeout, cancel, crashes."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time

from daemon.run.supervisor import ChildWatch, Ending, describe_exit, parse_log_line, run_child


class Recorder:
    """Collects what the supervisor reports, and answers its questions from flags."""

    def __init__(self, cancel_after: float | None = None, stop_after: float | None = None):
        self.progress: list[tuple[float, str]] = []
        self.log: list[tuple[int, str]] = []
        self.started = time.monotonic()
        self.cancel_after = cancel_after
        self.stop_after = stop_after

    def watch(self) -> ChildWatch:
        elapsed = lambda: time.monotonic() - self.started  # noqa: E731
        return ChildWatch(
            on_progress=lambda p, m, eta: self.progress.append((p, m)),
            on_log_line=lambda prio, text: self.log.append((prio, text)),
            on_tick=lambda: None,
            should_cancel=lambda: self.cancel_after is not None and elapsed() > self.cancel_after,
            should_stop=lambda: self.stop_after is not None and elapsed() > self.stop_after,
        )


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def test_progress_and_log_lines_are_read_and_exit_codes_map_to_endings():
    recorder = Recorder()
    outcome = run_child(
        _python("""
            import json, sys
            for i in range(3):
                print(json.dumps({"percent": (i + 1) * 25, "message": f"step {i}"}), flush=True)
            print("<4>careful", file=sys.stderr)
            print("plain line", file=sys.stderr)
        """),
        timeout_seconds=30, grace_seconds=1, watch=recorder.watch(),
    )
    assert outcome.ending is Ending.FINISHED and outcome.returncode == 0
    assert recorder.progress == [(25, "step 0"), (50, "step 1"), (75, "step 2")]
    assert recorder.log == [(4, "careful"), (6, "plain line")]

    failed = run_child(_python("import sys; sys.exit(3)"), timeout_seconds=30, grace_seconds=1, watch=Recorder().watch())
    assert failed.ending is Ending.FAILED
    crashed = run_child(_python("raise RuntimeError('boom')"), timeout_seconds=30, grace_seconds=1, watch=Recorder().watch())
    assert crashed.ending is Ending.CRASHED and crashed.returncode == 1
    assert crashed.last_log_lines[-1] == "RuntimeError: boom"


def test_timeout_stops_the_whole_process_group(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    outcome = run_child(
        _python(f"""
            import subprocess, sys, time
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
            open({str(pid_file)!r}, "w").write(str(child.pid))
            time.sleep(60)
        """),
        timeout_seconds=1.0, grace_seconds=1, watch=Recorder().watch(),
    )
    assert outcome.ending is Ending.TIMED_OUT
    grandchild = int(pid_file.read_text())
    time.sleep(0.2)
    assert not _alive(grandchild)


def test_sigterm_is_followed_by_sigkill_after_the_grace_period():
    started = time.monotonic()
    outcome = run_child(
        _python("""
            import signal, time
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            print('{"percent": 1, "message": "ignoring SIGTERM"}', flush=True)
            time.sleep(60)
        """),
        timeout_seconds=30, grace_seconds=1.0, watch=Recorder(cancel_after=0.5).watch(),
    )
    assert outcome.ending is Ending.CANCELLED
    assert outcome.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 10


def test_stop_request_interrupts_the_child():
    outcome = run_child(_python("import time; time.sleep(60)"), timeout_seconds=30, grace_seconds=1,
                        watch=Recorder(stop_after=0.3).watch())
    assert outcome.ending is Ending.INTERRUPTED


def test_a_child_killed_by_sigkill_is_a_crash_described_as_out_of_memory():
    outcome = run_child(_python("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"),
                        timeout_seconds=30, grace_seconds=1, watch=Recorder().watch())
    assert outcome.ending is Ending.CRASHED
    assert "out-of-memory" in describe_exit(outcome.returncode)
    assert describe_exit(137) == describe_exit(-9)
    assert describe_exit(2) == "exited with code 2"
    assert describe_exit(-15) == "was killed by SIGTERM"


def test_log_priority_prefixes():
    assert parse_log_line("<3>bad") == (3, "bad")
    assert parse_log_line("no prefix") == (6, "no prefix")
    assert parse_log_line("<x>odd") == (6, "<x>odd")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead for our purposes
        return stat.read().split()[2] != "Z"
