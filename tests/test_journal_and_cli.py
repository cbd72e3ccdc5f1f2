"""What operators read: log lines with priorities and job fields, `instarecon status`, `doctor`."""

from __future__ import annotations

import io
import json
import logging
import socket

import pytest

from daemon.cli import metric_lines
from daemon.journal import PriorityFormatter, job_fields, setup_logging
from tests.daemon_harness import DaemonProcess, make_layout, run_cli
from tests.photo_sets import small_set


class _Job:
    id = "kermit-1"
    set_name = "kermit"
    stage = "ingest"


def test_stderr_lines_carry_syslog_priorities_and_job_fields():
    stream = io.StringIO()
    handler = setup_logging("info", stream)
    try:
        log = logging.getLogger("instarecon.test")
        log.info("started")
        log.warning("two\nlines", extra=job_fields(_Job()))
        log.debug("hidden at info")
    finally:
        logging.getLogger().removeHandler(handler)
    assert stream.getvalue().splitlines() == [
        "<6>started",
        "<4>two [JOB_ID=kermit-1 SET_NAME=kermit STAGE=ingest]",
        "<4>lines",
    ]
    assert isinstance(handler.formatter, PriorityFormatter)


@pytest.mark.slow
def test_status_lists_jobs_newest_first_and_shows_one_in_detail(tmp_path):
    layout = make_layout(tmp_path)
    small_set(layout.inbox / "older", ready=True)
    with DaemonProcess(layout, until_idle=True) as daemon:
        assert daemon.wait(60) == 0
    small_set(layout.inbox / "newer", views=2, ready=True)
    with DaemonProcess(layout, until_idle=True) as daemon:
        assert daemon.wait(60) == 0

    table = run_cli(layout, "status")
    assert table.returncode == 0, table.stderr
    daemons, jobs = (part.splitlines() for part in table.stdout.split("\n\n"))
    assert daemons[0].split() == ["DAEMON", "CONDITION", "HEARTBEAT", "VERSION", "DOING"]
    assert len(daemons) == 2 and daemons[1].split()[:2] == [socket.gethostname(), "stopped"]  # one host, two runs
    assert jobs[0].split() == ["JOB", "STATE", "STAGE", "PROGRESS", "HOST", "UPDATED", "MESSAGE"]
    assert jobs[1].split()[:3] == ["newer-1", "failed", "ingest"] and jobs[1].split()[4] == socket.gethostname()
    assert jobs[2].split()[:5] == ["older-1", "done", "ingest", "100%", socket.gethostname()]

    detail = run_cli(layout, "status", "newer-1")
    assert "error     [ingest] only 2 usable photos" in detail.stdout
    assert "hint      " in detail.stdout

    as_json = run_cli(layout, "status", "older-1", "--json")
    assert json.loads(as_json.stdout) == layout.status("older")

    missing = run_cli(layout, "status", "nope-1")
    assert missing.returncode == 1 and "no job 'nope-1'" in missing.stderr
    assert run_cli(layout, "cancel", "older-1").returncode == 1  # already done


def test_status_says_whether_the_scores_are_on_held_out_photos_or_on_training_views():
    scores = {"images": 3, "psnr": 24.512, "mean_colour_psnr": 14.1, "ssim": 0.8512, "lpips": None}
    held_out = metric_lines({"evaluate": {**scores, "scored_on": "held-out photos"}})
    older = metric_lines({"evaluate": scores})  # a job scored before scored_on was written: held-out photos
    training = metric_lines({"evaluate": {**scores, "images": 4, "scored_on": "training views"}})
    assert held_out == older == [
        "scores    3 held-out photos: PSNR 24.51 dB (flat mean colour 14.10 dB), SSIM 0.851, LPIPS n/a"]
    assert training == ["scores    4 training views (too few photos to hold one out): PSNR 24.51 dB (flat mean colour "
                        "14.10 dB), SSIM 0.851, LPIPS n/a"]


def test_doctor_passes_here_and_names_what_to_fix(tmp_path):
    layout = make_layout(tmp_path)
    healthy = run_cli(layout, "doctor")
    assert healthy.returncode == 0, healthy.stdout
    assert "all required checks passed" in healthy.stdout
    broken = run_cli(layout, "doctor", "--inbox", str(tmp_path / "missing"))
    assert broken.returncode == 1
    assert "to fix:" in broken.stdout and "inbox folder" in broken.stdout


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_times_and_level_words_instead_of_priorities():
    stream = _Terminal()
    handler = setup_logging("info", stream)
    try:
        logging.getLogger("instarecon.test").warning("careful", extra=job_fields(_Job()))
    finally:
        logging.getLogger().removeHandler(handler)
    line = stream.getvalue().strip()
    assert line.endswith("WARNING careful [JOB_ID=kermit-1 SET_NAME=kermit STAGE=ingest]")
    assert not line.startswith("<")
