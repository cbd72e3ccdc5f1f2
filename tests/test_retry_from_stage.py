"""Retry from a stage: a new attempt takes over the earlier attempt's results of the stages before
the one it starts from, when the photos are byte for byte the same and the job.toml options those
stages depend on are equal; otherwise it says why it starts earlier.

Under the real daemon: a job fails in publish (its stage timeout set far too short), and its retry
runs publish alone on the same model. Then a photo is rewritten in place with its size and time
kept (a copy that keeps times), which the inbox cannot see: the retry, asked to start from
publish, finds the new bytes and starts from the beginning, saying which photo changed. The rest
are decisions of daemon/jobs/reuse.py on real folders and a real SQLite store."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from daemon.demo_set import write_demo_set
from daemon.jobs.folders import JobFolders
from daemon.jobs.records import RetryRequest
from daemon.jobs.reuse import plan_reuse, take_over
from daemon.store import JobState, open_store
from inbox_protocol.photo_digests import DIGESTS_FILE
from inbox_protocol.refusal import SetRefused
from inbox_protocol.retry_file import read_retry_file
from stages.base import RESULT_FILE
from stages.registry import PIPELINE, STAGE_NAMES
from tests.daemon_harness import DaemonProcess, make_layout, run_cli, state_is, wait_for

STAGES = list(STAGE_NAMES)
OPTIONS = {"iterations": 100, "train_max_image_size": None, "max_gaussians": None, "max_image_size": 2000,
           "original_resolution": False, "eval": True, "stop_after": "publish"}


@pytest.mark.slow
def test_a_job_failed_in_publish_retries_from_publish_and_a_rewritten_photo_forces_a_full_run(tmp_path):
    layout = make_layout(tmp_path, stage_timeouts={"publish": 0.001})
    folder = layout.inbox / "ring"
    write_demo_set(folder, views=8, width=160, height=120, ready_marker=False, spacing_degrees=15)
    (folder / "job.toml").write_text("iterations = 100\n")
    (folder / "READY").touch()
    with DaemonProcess(layout, until_idle=True) as daemon:
        assert daemon.wait(300) == 0, daemon.log()
    failed = wait_for(state_is(layout, "ring", "failed"), 5, "the job to fail in publish")
    assert failed["error"]["stage"] == "publish", failed["error"]
    first = failed["job_id"]

    layout.config.write_text(layout.config.read_text().split("[stage_timeouts]")[0])  # publish may take its time
    asked = run_cli(layout, "retry", first)
    assert asked.returncode == 0, asked.stderr
    with DaemonProcess(layout, until_idle=True) as daemon:
        assert daemon.wait(120) == 0, daemon.log()
    done = wait_for(state_is(layout, "ring", "done"), 5, "the retry to be done")
    second = done["job_id"]
    assert second != first
    stages = done["stages"]
    assert [stages[name].get("reused_from") for name in STAGES] == [first, first, first, first, None]
    assert [stages[name]["seconds"] for name in STAGES[:4]] == [None] * 4 and stages["publish"]["seconds"] > 0
    assert not any("this retry starts" in warning for warning in done["warnings"])
    jobs = layout.state / "jobs"
    model = Path("train") / "model" / "point_cloud" / "iteration_100" / "point_cloud.ply"
    assert (jobs / second / model).read_bytes() == (jobs / first / model).read_bytes()
    assert (jobs / second / model).stat().st_ino == (jobs / first / model).stat().st_ino  # linked, not copied
    assert done["metrics"]["train"] == failed["metrics"]["train"]
    assert done["metrics"]["evaluate"]["psnr"] == failed["metrics"]["evaluate"]["psnr"]
    # the new attempt's outbox folder has the scene, and what the reused stages published
    outbox = layout.outbox / second
    assert {"scene.splat", "cover.jpg", "heldout-view_000-photo.jpg"} <= {path.name for path in outbox.iterdir()}
    assert (outbox / "index.html").read_text().count(f"reused from {first}") == 4  # in the page's table of stages

    # a photo rewritten in place, its size and time kept: the inbox sees no change, the digests do
    photo = folder / "view_003.jpg"
    before = photo.stat()
    data = bytearray(photo.read_bytes())
    data[len(data) // 2] ^= 0xFF
    photo.write_bytes(bytes(data))
    os.utime(photo, ns=(before.st_atime_ns, before.st_mtime_ns))
    asked = run_cli(layout, "retry", second, "--from", "publish")
    assert asked.returncode == 0, asked.stderr
    with DaemonProcess(layout, until_idle=True) as daemon:
        assert daemon.wait(300) == 0, daemon.log()
    again = wait_for(state_is(layout, "ring", "done", "failed"), 5, "the full run to end")
    assert again["job_id"] not in (first, second)
    assert not any(entry.get("reused_from") for entry in again["stages"].values())
    assert all(again["stages"][name]["seconds"] is not None for name in STAGES)
    (note,) = [warning for warning in again["warnings"] if "this retry starts" in warning]
    assert note == (f"this retry starts from the beginning, not from publish: 1 photo changed, came or went since "
                    f"{second} read the set: view_003.jpg")


def test_a_retry_file_may_name_the_stage_and_anything_else_in_it_is_refused(tmp_path):
    retry = tmp_path / "RETRY"
    for content, stage in (("", None), ('from = "publish"\n', "publish"), ("# again\nfrom = 'sfm'", "sfm")):
        retry.write_text(content)
        assert read_retry_file(retry, STAGES) == stage
    for content, says in (('from = "pubish"', "asks to start from 'pubish', which is not a stage"),
                          ("stage = 'train'", "names stage; it may only say which stage to start from"),
                          ("from = ", "is not valid TOML"), ("x" * 5000, "larger than 4096 bytes")):
        retry.write_text(content)
        with pytest.raises(SetRefused) as refused:
            read_retry_file(retry, STAGES)
        assert says in refused.value.message
        assert refused.value.hint == ('leave RETRY empty, or write one line such as from = "publish" (stages: '
                                      '"ingest", "sfm", "train", "evaluate", "publish")')
    retry.unlink()
    retry.symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").write_text('from = "publish"')
    with pytest.raises(SetRefused, match="could not be read"):  # never followed out of the set
        read_retry_file(retry, STAGES)


@pytest.fixture
def attempts(tmp_path):
    """A real store with a set's attempt that failed in publish, its work folder as the stages
    left it (a result.json per finished stage, ingest's photo digests), and the set in the inbox."""
    store = open_store(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    inbox, jobs_dir = tmp_path / "inbox", tmp_path / "state" / "jobs"
    photos = {"a.jpg": b"first", "b.jpg": b"second", "c.jpg": b"third"}
    (inbox / "set").mkdir(parents=True)
    for name, data in photos.items():
        (inbox / "set" / name).write_bytes(data)
    earlier = store.create_job(set_name="set", source_path=inbox / "set", source_kind="folder", fingerprint="f",
                               state=JobState.QUEUED, message="queued")
    store.update_fields(earlier.id, options=OPTIONS, state="failed", stage="publish")
    folders = JobFolders(jobs_dir / earlier.id, tmp_path / "outbox" / earlier.id, inbox / "set" / "status.json")
    for stage in STAGES[:4]:
        outputs = {"digests": f"ingest/{DIGESTS_FILE}"} if stage == "ingest" else {}
        folders.stage(stage).mkdir(parents=True)
        (folders.stage(stage) / RESULT_FILE).write_text(json.dumps({"metrics": {}, "outputs": outputs}))
    (folders.stage("ingest") / DIGESTS_FILE).write_text(json.dumps(
        {name: hashlib.sha256(data).hexdigest() for name, data in photos.items()}))
    (folders.stage("train") / "model.ply").write_bytes(b"the model")
    return store, store.get(earlier.id), folders


def _plan(attempts, from_stage=None, options=OPTIONS, digests=None):
    store, earlier, folders = attempts
    digests_now = digests or (lambda: json.loads((folders.stage("ingest") / DIGESTS_FILE).read_text()))
    return plan_reuse(PIPELINE, RetryRequest(earlier.id, from_stage), store.get(earlier.id), folders, options,
                      digests_now)


def test_by_default_a_failed_attempt_is_retried_from_the_stage_it_failed_in(attempts):
    reuse = _plan(attempts)
    assert (reuse.asked_from, reuse.stages, reuse.why_not) == ("publish", ("ingest", "sfm", "train", "evaluate"), None)
    assert _plan(attempts, "train").stages == ("ingest", "sfm")
    assert _plan(attempts, "ingest").stages == ()


def test_a_changed_option_keeps_only_the_stages_before_the_first_that_depends_on_it(attempts):
    reuse = _plan(attempts, options={**OPTIONS, "iterations": 300})
    assert reuse.stages == ("ingest", "sfm")
    assert reuse.why_not == f"job.toml's iterations is 300 now and was 100 for {attempts[1].id}, and train depends on it"
    assert _plan(attempts, options={**OPTIONS, "stop_after": "evaluate"}).stages[-1] == "evaluate"  # changes no stage
    assert _plan(attempts, options={**OPTIONS, "max_image_size": 1000}).stages == ()


def test_changed_photos_or_a_missing_record_of_them_mean_nothing_is_reused(attempts):
    store, earlier, folders = attempts
    unchanged = hashlib.sha256(b"second").hexdigest()
    reuse = _plan(attempts, digests=lambda: {"a.jpg": "0" * 64, "b.jpg": unchanged, "d.jpg": "y"})  # c.jpg went
    assert reuse.stages == ()
    assert reuse.why_not == f"3 photos changed, came or went since {earlier.id} read the set: a.jpg, c.jpg, d.jpg"
    (folders.stage("sfm") / RESULT_FILE).unlink()
    assert _plan(attempts).stages == ("ingest",)
    assert _plan(attempts).why_not == f"{earlier.id} has no finished sfm stage to reuse"
    (folders.stage("ingest") / DIGESTS_FILE).unlink()  # an attempt made before ingest recorded them
    assert _plan(attempts, digests=lambda: {}).stages == ()
    assert "recorded no digests of the photos it read" in _plan(attempts, digests=lambda: {}).why_not


def test_taking_over_links_each_stage_folder_and_replaces_what_an_interrupted_run_left(attempts, tmp_path):
    _, earlier, folders = attempts
    target = JobFolders(folders.work.parent / "set-2", tmp_path / "outbox" / "set-2", folders.status_beside_set)
    (target.stage("train") / "half").mkdir(parents=True)  # an earlier try of this attempt, cut short
    take_over(folders, target, ["ingest", "sfm", "train"])
    assert sorted(path.name for path in target.work.iterdir()) == ["ingest", "sfm", "train"]
    assert (target.stage("train") / "model.ply").stat().st_ino == (folders.stage("train") / "model.ply").stat().st_ino
    assert not (target.stage("train") / "half").exists()
