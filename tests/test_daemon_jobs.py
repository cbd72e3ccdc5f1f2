"""The daemon end to end: real folders, real SQLite, real child processes."""

from __future__ import annotations

import json
import os
import time
import zipfile

import pytest

from tests.daemon_harness import DaemonProcess, make_layout, run_cli, stage_starts, state_is, wait_for
from tests.file_states import file_states
from tests.photo_sets import small_set

pytestmark = pytest.mark.slow  # whole-daemon runs


def _slow_set(layout, name: str = "slow", steps: int = 600) -> None:
    """A set whose paced sfm stage takes ``steps`` tenths of a second."""
    small_set(layout.inbox / name, ready=True)
    (layout.inbox / name / "job.toml").write_text(f"iterations = {steps}\n")


def _wait_for_sfm(layout, name: str = "slow") -> None:
    wait_for(lambda: (layout.status(name) or {}).get("stage") == "sfm", 60, "the sfm stage to start")


def test_three_sets_dropped_together_run_one_after_the_other(tmp_path):
    layout = make_layout(tmp_path)
    for name in ("alpha", "bravo", "charlie"):
        small_set(layout.inbox / name, ready=True)
        (layout.inbox / name / "job.toml").write_text("iterations = 5\n")
    with DaemonProcess(layout, until_idle=True, paced=True) as daemon:
        assert daemon.wait(120) == 0, daemon.log()
    documents = [layout.status(name) for name in ("alpha", "bravo", "charlie")]
    assert [d["state"] for d in documents] == ["done"] * 3
    spans = sorted((d["started_at"], d["finished_at"]) for d in documents)
    for (_, finished), (started, _) in zip(spans, spans[1:]):
        assert finished <= started, f"jobs overlapped: {spans}"
    for document in documents:
        assert document["progress"] == 100
        assert set(document["stages"]) == {"ingest", "sfm"}
        assert document["metrics"]["sfm"]["images"] == 4
        assert layout.outbox_status(document["job_id"])["state"] == "done"


def test_sigkill_mid_stage_then_restart_resumes_without_redoing_finished_stages(tmp_path):
    layout = make_layout(tmp_path)
    small_set(layout.inbox / "kermit", ready=True)
    (layout.inbox / "kermit" / "job.toml").write_text("iterations = 40\n")
    first = DaemonProcess(layout, paced=True).start()
    wait_for(lambda: "sfm: step" in (layout.status("kermit") or {}).get("message", ""), 60,
             "the sfm stage to be under way")
    first.kill()
    job_dir = layout.state / "jobs" / "kermit-1"
    ingest_result = (job_dir / "ingest" / "result.json").stat().st_mtime_ns
    # what a kill between a status write and its rename leaves (atomic_write_bytes's names)
    leftovers = [layout.inbox / "kermit" / ".status.json.k1ll3d.tmp", layout.outbox / "kermit-1" / ".status.json.x9.tmp"]
    for leftover in leftovers:
        leftover.write_text('{"half": ')

    with DaemonProcess(layout, until_idle=True, paced=True) as second:
        assert second.wait(120) == 0, second.log()
    document = layout.status("kermit")
    assert document["state"] == "done"
    assert document["job_id"] == "kermit-1"
    assert stage_starts(layout, "kermit-1", "ingest") == 1
    assert stage_starts(layout, "kermit-1", "sfm") == 2
    assert (job_dir / "ingest" / "result.json").stat().st_mtime_ns == ingest_result
    assert (job_dir / "paced-runs.txt").read_text().count("run") == 2
    assert "resum" in second.log()
    assert not any(leftover.exists() for leftover in leftovers), "half-written status files left in place"


def test_sigterm_stops_cleanly_and_the_job_resumes_at_the_next_start(tmp_path):
    layout = make_layout(tmp_path)
    _slow_set(layout, "et", steps=40)
    daemon = DaemonProcess(layout, paced=True).start()
    _wait_for_sfm(layout, "et")
    assert daemon.stop() == 0
    interrupted = layout.status("et")
    assert interrupted["state"] == "queued"
    assert interrupted["stages"]["sfm"]["state"] == "interrupted"
    assert "resumes at sfm" in interrupted["message"]
    with DaemonProcess(layout, until_idle=True, paced=True) as again:
        assert again.wait(120) == 0
    assert layout.status("et")["state"] == "done"
    assert stage_starts(layout, "et-1", "ingest") == 1


def test_cancel_file_stops_the_running_child(tmp_path):
    layout = make_layout(tmp_path)
    _slow_set(layout)
    with DaemonProcess(layout, paced=True):
        _wait_for_sfm(layout)
        (layout.inbox / "slow" / "CANCEL").touch()
        document = wait_for(state_is(layout, "slow", "cancelled"), 20, "the job to be cancelled")
    assert "CANCEL file" in document["message"]
    assert document["stages"]["sfm"]["state"] == "cancelled"
    assert document["stages"]["sfm"]["seconds"] < 30  # 600 steps would take 60 s
    assert sorted(p.name for p in (layout.inbox / "slow").iterdir() if p.suffix == ".jpg") == [
        f"view_{i:03d}.jpg" for i in range(4)
    ]


def test_instarecon_cancel_stops_a_running_job_and_retry_runs_it_again(tmp_path):
    layout = make_layout(tmp_path)
    _slow_set(layout)
    with DaemonProcess(layout, paced=True):
        _wait_for_sfm(layout)
        cancelled = run_cli(layout, "cancel", "slow-1")
        assert cancelled.returncode == 0, cancelled.stderr
        assert "cancel requested" in cancelled.stdout
        document = wait_for(state_is(layout, "slow", "cancelled"), 20, "the job to be cancelled")
        assert "instarecon cancel" in document["message"]

        # same content, new mtime; written aside and renamed, as editors save, so that the daemon
        # never sees a truncated job.toml (a rewrite in place can be seen half done: two attempts)
        (layout.inbox / "slow" / "job.toml.tmp").write_bytes(b"iterations = 600\n")
        os.replace(layout.inbox / "slow" / "job.toml.tmp", layout.inbox / "slow" / "job.toml")
        # a changed set becomes a new attempt
        wait_for(lambda: (layout.status("slow") or {}).get("job_id") == "slow-2", 20, "a second attempt")
        assert run_cli(layout, "cancel", "slow-2").returncode == 0
        wait_for(lambda: layout.status("slow")["state"] == "cancelled", 20, "slow-2 cancelled")

        retried = run_cli(layout, "retry", "slow-2")
        assert retried.returncode == 0, retried.stderr
        assert "slow-3" in retried.stdout
        wait_for(lambda: layout.status("slow")["job_id"] == "slow-3"
                 and layout.status("slow")["state"] == "running", 30, "slow-3 to run")


def test_bad_photos_are_rejected_with_reasons_while_good_ones_go_on(tmp_path):
    layout = make_layout(tmp_path)
    folder = layout.inbox / "mixed"
    small_set(folder)
    (folder / "notes.jpg").write_text("this is not a photo")
    (folder / "tiny.png").write_bytes(_tiny_png())
    (folder / "view_000 copy.jpg").write_bytes((folder / "view_000.jpg").read_bytes())
    (folder / "READY").touch()
    with DaemonProcess(layout, until_idle=True) as daemon:
        assert daemon.wait(60) == 0, daemon.log()
    document = layout.status("mixed")
    assert document["state"] == "done"
    assert document["images"]["accepted"] == 4
    reasons = {item["file"]: item["reason"] for item in document["images"]["rejected"]}
    assert set(reasons) == {"notes.jpg", "tiny.png", "view_000.jpg"} or set(reasons) == {
        "notes.jpg", "tiny.png", "view_000 copy.jpg"
    }
    assert "not an image" in reasons["notes.jpg"]
    assert "100" in reasons["tiny.png"]
    assert any("duplicate" in reason for reason in reasons.values())
    assert len(list((layout.state / "jobs" / "mixed-1" / "ingest" / "images").iterdir())) == 4


def test_a_set_with_two_good_photos_fails_with_a_clear_message(tmp_path):
    layout = make_layout(tmp_path)
    small_set(layout.inbox / "pair", views=2, ready=True)
    with DaemonProcess(layout, until_idle=True) as daemon:
        assert daemon.wait(60) == 0
    document = layout.status("pair")
    assert document["state"] == "failed"
    assert document["error"]["stage"] == "ingest"
    assert "at least 3" in document["error"]["message"]
    assert document["error"]["hint"]
    assert document["images"]["accepted"] == 2
    assert "pair" in daemon.log() and "at least 3" in daemon.log()


def test_symlink_pointing_out_of_the_inbox_is_refused(tmp_path):
    layout = make_layout(tmp_path)
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "passwd.jpg").write_text("not for you")
    small_set(layout.inbox / "linked", ready=True)
    os.symlink(outside / "passwd.jpg", layout.inbox / "linked" / "extra.jpg")
    os.symlink(outside, layout.inbox / "linked-folder")
    with DaemonProcess(layout, until_idle=True) as daemon:
        assert daemon.wait(60) == 0
    document = layout.status("linked")
    assert document["state"] == "failed"
    assert "symbolic link 'extra.jpg'" in document["error"]["message"]
    assert "outside the inbox" in document["error"]["message"]
    assert not (layout.state / "jobs" / "linked-1" / "ingest").exists()  # refused before any stage ran
    link_job = json.loads((layout.outbox / "linked-folder-1" / "status.json").read_text())
    assert link_job["state"] == "failed" and "symbolic link" in link_job["error"]["message"]
    assert not (outside / "status.json").exists()  # never written through the link


def test_zip_set_with_parent_entries_is_refused_and_a_good_zip_runs(tmp_path):
    layout = make_layout(tmp_path)
    photos = small_set(tmp_path / "made")
    with zipfile.ZipFile(layout.inbox / "evil.zip", "w") as archive:
        for photo in photos:
            archive.write(photo, photo.name)
        archive.writestr("../escaped.jpg", photos[0].read_bytes())
    with zipfile.ZipFile(layout.inbox / "good.zip", "w") as archive:
        archive.write(tmp_path / "made" / "job.toml", "job.toml")  # stop after ingest
        for photo in photos:
            archive.write(photo, f"trip/{photo.name}")
    with DaemonProcess(layout, until_idle=True) as daemon:
        assert daemon.wait(60) == 0, daemon.log()
    evil = layout.status("evil.zip")
    assert evil["state"] == "failed"
    assert "../escaped.jpg" in evil["error"]["message"]
    assert not (layout.inbox.parent / "escaped.jpg").exists()
    assert not list(layout.state.rglob("escaped.jpg"))
    good = layout.status("good.zip")
    assert good["state"] == "done" and good["images"]["accepted"] == 4


def test_bad_job_toml_fails_the_job_with_the_key_named(tmp_path):
    layout = make_layout(tmp_path)
    small_set(layout.inbox / "typo", ready=True)
    (layout.inbox / "typo" / "job.toml").write_text("iteration = 7000\n")
    small_set(layout.inbox / "badvalue", ready=True)
    (layout.inbox / "badvalue" / "job.toml").write_text('stop_after = "everything"\n')
    with DaemonProcess(layout, until_idle=True) as daemon:
        assert daemon.wait(60) == 0
    typo = layout.status("typo")
    assert typo["state"] == "failed"
    assert "unknown key 'iteration'" in typo["error"]["message"]
    assert typo["stages"]["ingest"]["state"] == "failed" and typo["stages"]["ingest"]["seconds"] is None
    bad = layout.status("badvalue")
    assert bad["state"] == "failed" and "stop_after" in bad["error"]["message"]


def test_finished_set_is_not_run_again_but_a_changed_set_or_retry_file_is(tmp_path):
    layout = make_layout(tmp_path)
    photos = small_set(layout.inbox / "castle", views=5, ready=True)
    with DaemonProcess(layout, until_idle=True) as daemon:
        assert daemon.wait(60) == 0
    assert layout.status("castle")["job_id"] == "castle-1"

    with DaemonProcess(layout, until_idle=True) as daemon:  # restart, nothing changed
        assert daemon.wait(60) == 0
    assert layout.status("castle")["job_id"] == "castle-1"

    photos[-1].unlink()  # the user changes the set: a new attempt
    with DaemonProcess(layout, until_idle=True) as daemon:
        assert daemon.wait(60) == 0
    document = layout.status("castle")
    assert document["job_id"] == "castle-2" and document["images"]["accepted"] == 4
    assert layout.outbox_status("castle-1")["state"] == "done"  # the earlier result stays

    (layout.inbox / "castle" / "RETRY").touch()
    with DaemonProcess(layout, until_idle=True) as daemon:
        assert daemon.wait(60) == 0
    assert layout.status("castle")["job_id"] == "castle-3"
    assert layout.status("castle")["state"] == "done"

    # a RETRY file may name the stage to start from; one that names what is no stage is refused, not guessed at
    retry = layout.inbox / "castle" / "RETRY"
    retry.write_text('from = "publsh"\n')
    os.utime(retry, ns=(retry.stat().st_atime_ns, retry.stat().st_mtime_ns + 1_000_000_000))  # a new RETRY
    with DaemonProcess(layout, until_idle=True) as daemon:
        assert daemon.wait(60) == 0
    refused = layout.status("castle")
    assert (refused["job_id"], refused["state"]) == ("castle-4", "failed")
    assert refused["error"]["message"] == "the RETRY file asks to start from 'publsh', which is not a stage"
    assert refused["error"]["hint"].startswith('leave RETRY empty, or write one line such as from = "publish"')


def test_the_inbox_is_never_modified_except_status_json(tmp_path):
    layout = make_layout(tmp_path)
    small_set(layout.inbox / "kept", ready=True)
    (layout.inbox / "kept" / "bad.jpg").write_text("nope")
    before = file_states(layout.inbox)
    with DaemonProcess(layout, until_idle=True) as daemon:
        assert daemon.wait(60) == 0
    after = file_states(layout.inbox)
    assert {k: v for k, v in after.items() if not k.endswith("status.json")} == before


def _tiny_png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_stage_killed_like_by_the_oom_killer_fails_its_job_and_the_daemon_carries_on(tmp_path):
    layout = make_layout(tmp_path)
    _slow_set(layout, "victim")
    with DaemonProcess(layout, paced=True) as daemon:
        pid_file = layout.state / "jobs" / "victim-1" / "paced.pid"
        wait_for(pid_file.exists, 60, "the sfm stage to start")
        os.kill(int(pid_file.read_text()), 9)
        failed = wait_for(state_is(layout, "victim", "failed"), 20, "the job to fail")
        small_set(layout.inbox / "next", ready=True)
        (layout.inbox / "next" / "job.toml").write_text("iterations = 3\n")
        wait_for(state_is(layout, "next", "done"), 60, "the next set to run")
    assert failed["error"]["stage"] == "sfm"
    assert failed["error"]["message"] == "the sfm stage was killed by SIGKILL, most likely by the out-of-memory killer"
    assert "out of memory" in failed["error"]["hint"]
    assert failed["stages"]["sfm"]["state"] == "failed" and failed["stages"]["ingest"]["state"] == "done"
    assert daemon.process.poll() is None or daemon.process.returncode == 0


def test_a_stage_over_its_time_limit_is_stopped_and_its_job_fails(tmp_path):
    layout = make_layout(tmp_path, stage_timeouts={"sfm": 1})
    _slow_set(layout, "endless")
    with DaemonProcess(layout, until_idle=True, paced=True) as daemon:
        assert daemon.wait(60) == 0
    document = layout.status("endless")
    assert document["state"] == "failed"
    assert document["error"]["message"] == "sfm did not finish within its time limit of 1 s and was stopped"
    assert "operator" in document["error"]["hint"] and "stage_timeouts" not in document["error"]["hint"]
    assert "stage_timeouts.sfm" in daemon.log()  # the operator's half, in the journal
    assert document["stages"]["sfm"]["seconds"] < 10


def test_periodic_rescan_finds_a_set_whose_events_were_missed(tmp_path):
    # a polling observer that looks only once an hour sees nothing: only the rescan can find the set
    layout = make_layout(tmp_path, watch_mode="polling", poll_interval_seconds=3600, rescan_interval_seconds=1)
    with DaemonProcess(layout):
        time.sleep(1.0)
        small_set(layout.inbox / "late", ready=True)
        wait_for(state_is(layout, "late", "done"), 20, "the rescan to find the set")
