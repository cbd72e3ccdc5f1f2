"""The job's log (state/jobs/<job_id>/job.log) and its tail in status.json: every line a stage
prints reaches the log, status.json follows it while the stage runs and keeps it after a failure,
with the server's folders named short. Real files, real child processes, the real daemon.
(The job page showing the tail in a browser: test_job_log_browser.py.)"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from daemon.jobs.log import MAX_LINE_CHARS, FolderNames, JobLog, last_lines, public_line, public_tail
from daemon.run.supervisor import ChildWatch, Ending, run_child
from site_builder import job_view, write_job_page
from tests.daemon_harness import DaemonProcess, Layout, make_layout, state_is, validate_status, wait_for
from tests.log_stage import write_script
from tests.photo_sets import small_set
from tests.site_documents import status_document

HOSTILE = "<img src=x onerror=alert(1)>"
# An environment without it, as under systemd: the supervisor must make its stages unbuffered itself
# (Python reads an empty PYTHONUNBUFFERED as unset).
BUFFERED = {"PYTHONUNBUFFERED": ""}


class LoggingDaemon(DaemonProcess):
    """The real daemon with the logging test stage (tests/log_stage.py) after ingest."""

    def __init__(self, layout: Layout, **options):
        super().__init__(layout, pipeline="tests.log_stage:LOGGING_PIPELINE", **options)


def bytes_read() -> int:
    """What this process has read so far, as the kernel counts it (read(2) and friends)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def short(layout: Layout, line: str) -> str:
    """A job.log line as status.json should show it: the test's folders named short, cut at 500."""
    for folder in ("inbox", "outbox", "state"):
        line = line.replace(str(getattr(layout, folder)), folder)
    return line if len(line) <= MAX_LINE_CHARS else line[: MAX_LINE_CHARS - 1] + "…"


# ---- the log file ---------------------------------------------------------------------------------------------


def test_the_tail_of_a_huge_log_is_read_from_its_end(tmp_path):
    log = tmp_path / "job.log"
    with open(log, "wb") as file:
        file.truncate(200 * 1024 * 1024)  # 200 MB before the last lines (sparse: no disk needed)
    with JobLog(log) as job_log:
        for number in range(1, 16):
            job_log.append("sfm", f"line {number}")

    before = bytes_read()
    tail = last_lines(log, 10)
    read = bytes_read() - before
    assert [line.split(" ", 1)[1] for line in tail] == [f"sfm: line {number}" for number in range(6, 16)]
    assert read < 64 * 1024, f"read {read} bytes for the last 10 lines"

    # one line longer than what is ever read of it: its end, marked as cut
    with open(log, "ab") as file:
        file.write(b"y" * (2 * 1024 * 1024) + b"\n")
    before = bytes_read()
    (only,) = last_lines(log, 1)
    assert bytes_read() - before < 512 * 1024
    assert only.startswith("…y") and only.endswith("y") and len(only) < 300 * 1024
    assert last_lines(tmp_path / "missing.log", 10) == []


def test_tail_lines_name_the_folders_short_and_stay_text(tmp_path):
    real_state = tmp_path / "disks" / "state"
    real_state.mkdir(parents=True)
    (tmp_path / "state-link").symlink_to(real_state)  # configured through a link: both spellings go
    names = FolderNames({"inbox": tmp_path / "inbox", "outbox": tmp_path / "outbox", "state": tmp_path / "state-link"})

    line = f"reading {tmp_path}/inbox/kermit/a.jpg, writing {real_state}/jobs/kermit-1 and {tmp_path}/state-link/x"
    assert public_line(line, names) == "reading inbox/kermit/a.jpg, writing state/jobs/kermit-1 and state/x"
    assert public_line(f"PosixPath('{tmp_path}/outbox')", names) == "PosixPath('outbox')"
    # only whole paths: a neighbour folder, or the same name deeper somewhere else, stays as it is
    for untouched in (f"{tmp_path}/inboxes/a", f"/elsewhere{tmp_path}/inbox/a"):
        assert public_line(untouched, names) == untouched
    # what a terminal would show: colours gone, a line redrawn with carriage returns at its last state
    assert public_line("\x1b[31mE\x1b[0m bad\x07 thing", names) == "E bad thing"
    assert public_line("progress 10%\rprogress 60%\rprogress 90%\r", names) == "progress 90%"
    long = public_line(f"{tmp_path}/state-link/" + "z" * 1000, names)
    assert len(long) == MAX_LINE_CHARS and long.startswith("state/zzz") and long.endswith("…")
    assert public_line(HOSTILE, names) == HOSTILE  # status.json is data: escaping is the pages' business

    log = tmp_path / "job.log"
    with JobLog(log) as job_log:
        for number in range(12):
            job_log.append("train", f"{tmp_path}/outbox/k-1 {number}")
    tail = public_tail(log, names)
    assert len(tail) == 10 and tail[-1].endswith(" train: outbox/k-1 11") and tail[0].endswith(" 2")


# ---- every line a stage prints reaches the log ------------------------------------------------------------------


def _record(log: list[tuple[int, str]], progress: list[float]) -> ChildWatch:
    return ChildWatch(
        on_progress=lambda percent, message, eta: progress.append(percent),
        on_log_line=lambda priority, text: log.append((priority, text)),
        on_tick=lambda: None,
        should_cancel=lambda: False,
        should_stop=lambda: False,
    )


CHATTY_CHILD = """
    import ctypes, json, os, subprocess, sys, time
    libc = ctypes.CDLL(None)
    print("python stdout")
    print("python stderr", file=sys.stderr)
    os.write(1, b"fd 1\\n")
    libc.printf(b"C stdout\\n")
    libc.fprintf(ctypes.c_void_p.in_dll(libc, "stderr"), b"C stderr\\n")
    subprocess.run(["sh", "-c", "echo grandchild stdout; echo grandchild stderr >&2"])
    print(42)
    print("no newline", end="")
    print(json.dumps({"percent": 50.0, "message": "half"}))
    print("after the progress")
    libc.printf(b"C stdout, last\\n")
    {ending}
"""
EVERY_LINE = ["python stdout", "python stderr", "fd 1", "C stdout", "C stderr", "grandchild stdout", "grandchild stderr",
              "42", "no newline", "after the progress", "C stdout, last"]


def test_every_line_reaches_the_log_even_from_a_stage_killed_at_its_time_limit(tmp_path):
    """Without PYTHONUNBUFFERED in the daemon's environment (systemd sets none), Python's and C's
    buffered stdout died with the stage; a bare number printed on stdout stopped the supervisor."""
    log: list[tuple[int, str]] = []
    progress: list[float] = []
    code = textwrap.dedent(CHATTY_CHILD).replace("{ending}", "time.sleep(60)")
    started = time.monotonic()
    outcome = run_child([sys.executable, "-c", code], timeout_seconds=3, grace_seconds=1,
                        watch=_record(log, progress), env={**os.environ, **BUFFERED})
    assert outcome.ending is Ending.TIMED_OUT and time.monotonic() - started < 20
    assert sorted(text for _, text in log) == sorted(EVERY_LINE)
    assert progress == [50.0]


def test_a_segfault_leaves_a_python_traceback_in_the_log():
    log: list[tuple[int, str]] = []
    code = textwrap.dedent(CHATTY_CHILD).replace("{ending}", "ctypes.string_at(0)")
    outcome = run_child([sys.executable, "-c", code], timeout_seconds=30, grace_seconds=1,
                        watch=_record(log, []), env={**os.environ, **BUFFERED})
    assert outcome.ending is Ending.CRASHED and outcome.returncode == -11
    texts = [text for _, text in log]
    assert set(EVERY_LINE) <= set(texts)
    assert "Fatal Python error: Segmentation fault" in texts
    assert any("string_at" in text for text in texts), texts



def test_lines_reach_the_log_in_the_order_the_stage_wrote_them_on_either_stream():
    """A print() just before the stage's traceback must not land after it: the job page shows
    the log's last line as what went wrong."""
    log: list[tuple[int, str]] = []
    code = ("import sys\n"
            "for n in range(400):\n"
            "    print(f'line {n}', file=sys.stderr if n % 2 else sys.stdout)\n"
            "raise RuntimeError('gave up')")
    outcome = run_child([sys.executable, "-c", code], timeout_seconds=30, grace_seconds=1,
                        watch=_record(log, []), env={**os.environ, **BUFFERED})
    assert outcome.ending is Ending.CRASHED
    texts = [text for _, text in log]
    assert texts[:400] == [f"line {n}" for n in range(400)]
    assert texts[-1] == "RuntimeError: gave up"

def test_a_failing_watch_stops_the_stage_rather_than_leave_it_unwatched(tmp_path):
    pid_file = tmp_path / "pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); print('hello', flush=True); time.sleep(60)"

    def full_disk(priority: int, text: str) -> None:
        raise OSError(28, "No space left on device")

    watch = ChildWatch(on_progress=lambda *_: None, on_log_line=full_disk, on_tick=lambda: None,
                       should_cancel=lambda: False, should_stop=lambda: False)
    try:
        run_child([sys.executable, "-c", code], timeout_seconds=60, grace_seconds=1, watch=watch)
    except OSError:
        pass
    else:
        raise AssertionError("the watch's error did not reach the caller")
    assert not Path(f"/proc/{pid_file.read_text()}").exists(), "the stage runs on, unwatched"


# ---- status.json ----------------------------------------------------------------------------------------------


def _tail_numbers(document: dict | None) -> list[int]:
    """The step numbers the log lines of the test stage show ("... step 07: ...")."""
    return [int(line.split("step ", 1)[1][:2]) for line in (document or {}).get("log_tail", []) if "step " in line]


@pytest.mark.slow
def test_status_json_follows_a_stage_that_only_logs_and_shows_its_last_ten_lines(tmp_path):
    layout = make_layout(tmp_path)
    lines = [f"step {number:02d}: read {layout.inbox}/garden/view-0.png, wrote {layout.state}/jobs/garden-1/sfm "
             f"for {layout.outbox}/garden-1" for number in range(1, 41)]
    env = write_script(tmp_path / "script.json", {"garden": {"lines": lines, "step": 0.3}, "later": {"lines": []}})
    small_set(layout.inbox / "garden", ready=True, stop_after="sfm")

    with LoggingDaemon(layout, env={**env, **BUFFERED}) as daemon:
        first = wait_for(lambda: (d := layout.status("garden")) and d["state"] == "running" and _tail_numbers(d) and d,
                         90, "the first logged lines in status.json")
        # another job changes well after the running one's last change: the publisher reads the latest
        # changes (of the last 2 s) again at every pass, so only now is the running job's row not among them
        time.sleep(2.5)
        small_set(layout.inbox / "later", ready=True, stop_after="sfm")
        wait_for(state_is(layout, "later", "queued"), 30, "the second set to be queued")
        seen = max(_tail_numbers(layout.status("garden")))
        followed = wait_for(lambda: (d := layout.status("garden")) and d["message"] == first["message"]
                            and max(_tail_numbers(d) or [0]) >= seen + 4 and d, 30,
                            "status.json to follow the log while the stage runs")
        # the stage reported no progress: the job's record did not change, only its log grew
        assert (followed["state"], followed["updated_at"], followed["progress"]) == (
            "running", first["updated_at"], first["progress"]), daemon.log()
        wait_for(lambda: max(_tail_numbers(layout.outbox_status("garden-1")) or [0]) >= seen + 4, 10,
                 "the outbox copy to follow as well")
        done = wait_for(state_is(layout, "garden", "done"), 60, "the job to finish")
        wait_for(state_is(layout, "later", "done"), 60, "the second job to finish")
        assert daemon.stop() == 0

    job_log = (layout.state / "jobs" / "garden-1" / "job.log").read_text().splitlines()
    # every line, from stdout and stderr alike, with the folders' full paths
    assert [line.split(" sfm: ", 1)[1] for line in job_log if " sfm: step " in line] == lines
    expected = [short(layout, line) for line in job_log[-10:]]
    assert done["log_tail"] == expected and _tail_numbers(done) == list(range(31, 41))
    assert expected[-1].endswith("sfm: step 40: read inbox/garden/view-0.png, wrote state/jobs/garden-1/sfm "
                                 "for outbox/garden-1")
    assert str(tmp_path) not in json.dumps(done["log_tail"])
    assert layout.outbox_status("garden-1")["log_tail"] == expected


def test_a_failed_job_keeps_the_tail_of_its_log_with_the_traceback(tmp_path):
    layout = make_layout(tmp_path)
    lines = [HOSTILE, f"loading {layout.state}/jobs/broken-1/sfm/" + "w" * 800]
    env = write_script(tmp_path / "script.json", {"broken": {"lines": lines, "crash": True}})
    small_set(layout.inbox / "broken", ready=True, stop_after="sfm")

    with LoggingDaemon(layout, until_idle=True, env={**env, **BUFFERED}) as daemon:
        assert daemon.wait(120) == 0, daemon.log()
    document = layout.status("broken")
    assert document["state"] == "failed" and document["error"]["stage"] == "sfm"
    assert "RuntimeError: the test stage gave up" in document["error"]["message"]

    job_log = (layout.state / "jobs" / "broken-1" / "job.log").read_text().splitlines()
    assert any(line.endswith("sfm: Traceback (most recent call last):") for line in job_log)
    tail = document["log_tail"]
    assert tail == [short(layout, line) for line in job_log[-10:]]
    # the traceback (stderr) and the printed lines (stdout) come through two pipes: each stream
    # keeps its order, but which of them reaches the log last is a race
    assert [line for line in tail if "Traceback" in line or "RuntimeError" in line][-1].endswith(
        "sfm: RuntimeError: the test stage gave up")
    assert any(line.endswith(f"sfm: {HOSTILE}") for line in tail)
    (cut,) = [line for line in tail if "loading " in line]
    assert len(cut) == MAX_LINE_CHARS and "loading state/jobs/broken-1/sfm/www" in cut and cut.endswith("…")
    assert layout.outbox_status("broken-1")["log_tail"] == tail


# ---- the job page, as built ----------------------------------------------------------------------------------


def test_job_pages_carry_the_tail_as_escaped_text_and_a_new_line_alone_rebuilds_nothing(tmp_path):
    tail = ["2026-11-27T10:00:00+00:00 sfm: matching", f"2026-11-27T10:00:01+00:00 sfm: {HOSTILE}"]
    error = {"stage": "sfm", "message": "the sfm stage exited with code 1", "hint": None}
    failed = validate_status({**status_document("wall-1", "wall", "failed", error=error), "log_tail": tail})
    write_job_page(tmp_path, job_view(failed, tmp_path / "wall-1"), "test")
    page = (tmp_path / "wall-1" / "index.html").read_text()
    assert "<img src=x" not in page and "sfm: &lt;img src=x onerror=alert(1)&gt;" in page
    assert page.index('class="job-error"') < page.index('<details class="job-log">') < page.index('class="job-stages"')

    running = validate_status({**status_document("pond-1", "pond", "running", progress=30.0), "log_tail": []})
    view = job_view(running, tmp_path / "pond-1")
    write_job_page(tmp_path, view, "test")
    page = (tmp_path / "pond-1" / "index.html").read_text()
    assert '<section class="job-log" hidden>' in page and 'data-field="log-tail"' in page  # filled in live
    grown = job_view({**running, "log_tail": tail}, tmp_path / "pond-1")
    assert grown.log_tail == tuple(tail) and grown.settled() == view.settled()  # the page reads it itself

    done = validate_status({**status_document("done-1", "done", "done", published=True), "log_tail": tail})
    write_job_page(tmp_path, job_view(done, tmp_path / "done-1"), "test")
    assert "job-log" not in (tmp_path / "done-1" / "index.html").read_text()
