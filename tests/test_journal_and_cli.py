"""What operators read: log lines with priorities and job fields, `instarecon status`, `doctor`."""

from __future__ import annotations

import io
import json
import logging
import re
import socket
from datetime import datetime, timedelta, timezone

import pytest

from daemon.cli import metric_lines
from daemon.journal import PriorityFormatter, job_fields, setup_logging
from tests.daemon_harness import DaemonProcess, make_layout, run_cli
from tests.photo_sets import small_set

HOSTILE = '<img src=x onerror=alert(1)> & "quotes"'


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


# ---- history: status's filters and a job's event log, on a job store made here (no daemon run needed)


def history_store(layout) -> dict[str, str]:
    """Four jobs made through the real JobStore, their creation moved back in time as the test needs:
    a failed one from 10 days ago, a done one from 3 days ago, a failed one and a queued one (with a
    hostile name) from the last hour. Returns their ids by role."""
    from sqlalchemy import update

    from daemon.jobs.records import JobError, StageRecord, StageState
    from daemon.store import JobState, open_store
    from daemon.store.tables import jobs

    layout.state.mkdir(exist_ok=True)
    store = open_store(f"sqlite:///{layout.state / 'jobs.sqlite3'}")
    now = datetime.now(timezone.utc)
    made = {}
    for role, name, age in (("old_failed", "garden", timedelta(days=10)), ("done", "statue", timedelta(days=3)),
                            ("new_failed", "wall", timedelta(minutes=50)), ("queued", HOSTILE, timedelta(minutes=20))):
        job = store.create_job(set_name=name, source_path=layout.inbox / name, source_kind="folder",
                               fingerprint="f" * 64, state=JobState.QUEUED, message="queued: 24 photos")
        with store.engine.begin() as connection:
            connection.execute(update(jobs).where(jobs.c.id == job.id).values(created_at=now - age))
        made[role] = job.id
    for role in ("old_failed", "done", "new_failed"):
        claimed = store.claim_next()
        assert claimed.id == made[role]
        started = StageRecord.started()
        store.set_stage(claimed.id, "ingest", started, "ingest: starting")
        if role == "done":
            store.set_stage(claimed.id, "ingest", started.ended(StageState.DONE, 1.5), "ingest: done")
            assert store.transition(claimed.id, JobState.DONE, "done after ingest", stage="ingest")
        else:
            store.set_stage(claimed.id, "ingest", started.ended(StageState.FAILED, 0.5), "ingest: failed")
            assert store.transition(claimed.id, JobState.FAILED, "only 2 usable photos", stage="ingest",
                                    error=JobError("ingest", "only 2 usable photos"))
    return made


def listed(result) -> list[str]:
    """The job ids of `instarecon status`'s table, in order."""
    assert result.returncode == 0, result.stderr
    jobs = result.stdout.split("\n\n")[1].splitlines()
    assert jobs[0].split()[:2] == ["JOB", "STATE"]
    return [line.split()[0] for line in jobs[1:]]


def test_status_lists_only_the_jobs_in_the_states_and_since_the_time_asked_for(tmp_path):
    layout = make_layout(tmp_path)
    ids = history_store(layout)
    five_days_ago = (datetime.now(timezone.utc) - timedelta(days=5)).date().isoformat()

    assert listed(run_cli(layout, "status")) == [ids[r] for r in ("queued", "new_failed", "done", "old_failed")]
    assert listed(run_cli(layout, "status", "--only", "failed")) == [ids["new_failed"], ids["old_failed"]]
    assert listed(run_cli(layout, "status", "--only", "failed", "--since", "2d")) == [ids["new_failed"]]
    assert listed(run_cli(layout, "status", "--since", "12h")) == [ids["queued"], ids["new_failed"]]
    assert listed(run_cli(layout, "status", "--only", "failed,done", "--since", five_days_ago)) == [
        ids["new_failed"], ids["done"]]
    assert listed(run_cli(layout, "status", "--only", "done", "--only", "queued")) == [ids["queued"], ids["done"]]
    assert listed(run_cli(layout, "status", "--since", f"{five_days_ago}T00:00+00:00", "--limit", "1")) == [ids["queued"]]
    none = run_cli(layout, "status", "--only", "cancelled")
    assert none.returncode == 0 and none.stdout.rstrip().endswith("no jobs match")

    documents = json.loads(run_cli(layout, "status", "--only", "failed", "--since", "4d", "--json").stdout)
    assert [document["job_id"] for document in documents] == [ids["new_failed"]]
    (failed,) = documents
    assert (failed["state"], failed["stage"], failed["message"]) == ("failed", "ingest", "only 2 usable photos")
    assert {"progress", "host", "created_at", "updated_at"} <= failed.keys()
    created = datetime.fromisoformat(failed["created_at"].replace("Z", "+00:00"))
    assert timedelta(minutes=49) < datetime.now(timezone.utc) - created < timedelta(minutes=52)
    hostile = json.loads(run_cli(layout, "status", "--only", "queued", "--json").stdout)
    assert [document["name"] for document in hostile] == [HOSTILE]


def test_status_says_which_states_and_times_it_takes(tmp_path):
    layout = make_layout(tmp_path)
    ids = history_store(layout)
    state = run_cli(layout, "status", "--only", "broken")
    assert state.returncode == 2 and state.stdout == ""
    assert ("'broken' is not a job state: give one of waiting, queued, running, done, failed, cancelled, removed"
            in state.stderr)
    since = run_cli(layout, "status", "--since", "last week")
    assert since.returncode == 2
    assert "'last week' is not a time: give a date (2026-12-01)" in since.stderr and "(2d, 12h)" in since.stderr
    folder = run_cli(layout, "status", "--state", "failed")  # --state is the state folder, for every command
    assert folder.returncode == 2 and "the jobs in a state: --only failed" in folder.stderr
    one_job = run_cli(layout, "status", ids["done"], "--only", "done")
    assert one_job.returncode == 2 and "without a job id" in one_job.stderr


def test_the_states_status_accepts_are_the_job_stores():
    from daemon.cli import STATE_WORDS
    from daemon.store import JobState

    assert STATE_WORDS == tuple(str(state) for state in JobState)


def test_events_prints_a_jobs_log_one_line_per_change_oldest_first(tmp_path):
    layout = make_layout(tmp_path)
    ids = history_store(layout)
    result = run_cli(layout, "events", ids["new_failed"])
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    assert header.split() == ["AT", "(UTC)", "KIND", "STATE", "STAGE", "MESSAGE"]
    assert [line.split(maxsplit=4)[1:] for line in lines] == [
        ["state", "queued", "-", "queued: 24 photos"],
        ["state", "running", "-", "started"],
        ["stage", "running", "ingest", "ingest: starting"],
        ["stage", "failed", "ingest", "ingest: failed"],
        ["state", "failed", "ingest", "only 2 usable photos"],
    ]
    times = [line.split()[0] for line in lines]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", time) for time in times) and times == sorted(times)

    as_json = json.loads(run_cli(layout, "events", ids["queued"], "--json").stdout)
    assert as_json == [{"at": as_json[0]["at"], "kind": "state", "state": "queued", "stage": None,
                        "message": "queued: 24 photos"}]
    assert abs(datetime.fromisoformat(as_json[0]["at"].replace("Z", "+00:00")) - datetime.now(timezone.utc)) < timedelta(minutes=5)

    missing = run_cli(layout, "events", "nope-1")
    assert missing.returncode == 1 and "no job 'nope-1'" in missing.stderr
