"""No job starts, and no stage starts, without room for what it will write plus min_free_gb: it
waits in the queue, says why in status.json and the journal, and runs once space is freed. On a
real small file system (a tmpfs the test mounts as root) under the real daemon, and the estimate
and the verdict on their own."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pytest

from daemon.config import Settings
from daemon.jobs.options import JobOptionsError, read_job_options, validate_options
from daemon.run.disk_guard import (
    GB,
    MB,
    DiskGuard,
    DiskNeed,
    SetSize,
    Shortage,
    estimate_writes,
    free_bytes,
    measure_set,
    size_text,
)
from daemon.run.space_waits import RETRY_SECONDS, QueuePlan, SpaceWaits
from daemon.store import JobState, open_store
from daemon.store.outage import StoreOutage
from inbox_protocol.photo_set import FileRules
from tests.daemon_harness import DaemonProcess, Layout, make_layout, stage_starts, state_is, wait_for
from tests.disk_filler_stage import BALLAST, FILL_BYTES, MODEL, MODEL_BYTES, MODEL_RUNS
from tests.photo_sets import small_set

TMPFS_MB = 48
MIN_FREE_GB = 0.008  # 8 MB: the headroom, in the units operators write


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 48 MB tmpfs, mounted for this test: a disk that really fills."""
    mount_point = Path(tempfile.mkdtemp(prefix="instarecon-small-disk-"))
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m,mode=0755", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        mount_point.rmdir()
        pytest.skip(f"mounting a tmpfs needs root with CAP_SYS_ADMIN: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
        mount_point.rmdir()


def on_small_disk(tmp_path: Path, small_disk: Path, **settings) -> Layout:
    """Inbox and outbox in the test's folder; the state folder (job store, work folders) on the small disk."""
    state = small_disk / "state"
    state.mkdir()
    layout = make_layout(tmp_path, state=str(state), min_free_gb=MIN_FREE_GB, **settings)
    return dataclasses.replace(layout, state=state)


def health(layout: Layout) -> dict:
    try:
        return json.loads((layout.outbox / "health.json").read_text())
    except FileNotFoundError:
        return {"problems": []}


def status_says(layout: Layout, set_name: str, words: str):
    return lambda: (d := layout.status(set_name)) and words in d["message"] and d


def fill_until(folder: Path, free: int) -> Path:
    """A ballast file that leaves about ``free`` bytes free on ``folder``'s file system."""
    ballast = folder / "ballast.bin"
    size = free_bytes(folder) - free
    with open(ballast, "wb") as handle:
        os.posix_fallocate(handle.fileno(), 0, size)
    return ballast


@pytest.mark.slow
def test_a_job_waits_in_the_queue_until_its_stages_fit_then_runs(tmp_path, small_disk):
    layout = on_small_disk(tmp_path, small_disk)
    small_set(layout.inbox / "garden", ready=True, stop_after="sfm")
    (layout.inbox / "garden" / "job.toml").write_text('stop_after = "sfm"\niterations = 3\n')
    # ingest (the photos, ~30 kB) + sfm (2 MB a photo: 8 MB) + 8 MB of headroom do not fit in 12 MB
    ballast = fill_until(small_disk, 12 * MB)
    with DaemonProcess(layout, paced=True) as daemon:
        waiting = wait_for(lambda: (d := layout.status("garden")) and "waiting before ingest" in d["message"] and d,
                           30, "the job to wait for space")
        assert waiting["state"] == "queued"
        assert "not enough free space in the state folder" in waiting["message"]
        assert "the server keeps 8.0 MB free" in waiting["message"]
        assert not (layout.state / "jobs" / waiting["job_id"] / "ingest").exists()  # nothing started
        wait_for(lambda: "starts when space is freed" in daemon.log(), 10, "the journal to say so")
        ballast.unlink()
        done = wait_for(state_is(layout, "garden", "done", "failed"), 60, "the job to run once space is freed")
        assert daemon.stop() == 0
    assert done["state"] == "done", done
    assert daemon.log().count("starts when space is freed") == 1  # told once, not at every look


@pytest.mark.slow
def test_no_stage_starts_when_the_disk_runs_short_between_stages(tmp_path, small_disk):
    layout = on_small_disk(tmp_path, small_disk)
    small_set(layout.inbox / "garden", ready=True, stop_after="sfm")
    (layout.inbox / "garden" / "job.toml").write_text('stop_after = "sfm"\niterations = 3\n')
    with DaemonProcess(layout, pipeline="tests.disk_filler_stage:FILLING_PIPELINE") as daemon:
        # the first stage writes 34 MB more than estimated: 8 MB for sfm + 8 MB headroom no longer fit
        waiting = wait_for(lambda: (d := layout.status("garden")) and "waiting before sfm" in d["message"] and d,
                           60, "the job to wait before sfm")
        job_dir = layout.state / "jobs" / waiting["job_id"]
        assert waiting["state"] == "queued" and waiting["stages"]["ingest"]["state"] == "done"
        assert not (job_dir / "sfm").exists()
        (job_dir / "ingest" / BALLAST).unlink()  # an operator frees space
        done = wait_for(state_is(layout, "garden", "done", "failed"), 60, "the job to go on once space is freed")
        assert daemon.stop() == 0
    assert done["state"] == "done" and done["metrics"]["ingest"]["filled"] == FILL_BYTES
    assert (job_dir / "paced-runs.txt").read_text().splitlines() == ["run"]


def test_the_estimate_counts_only_the_stages_left():
    size = SetSize(photos=40, bytes=200 * MB)
    whole = estimate_writes(["ingest", "sfm", "train", "evaluate", "publish"], size, max_gaussians=1_000_000)
    # the photos and the cover, 2 MB a photo, two checkpoints and a .ply, 1/4 MB a photo and the held-out
    # strip's 1/16, the .ply, .splat and .sog; the cover and the strip go to the outbox too
    assert whole.state_bytes == 200.5 * MB + 80 * MB + (2 * 750 + 248) * MB + 12.5 * MB + (312 * MB + 5 * MB)
    assert whole.outbox_bytes == 0.5 * MB + 2.5 * MB + 312 * MB + 5 * MB
    assert estimate_writes(["publish"], size, 1_000_000) == DiskNeed(317 * MB, 317 * MB)
    assert estimate_writes(["ingest"], size, 1_000_000) == DiskNeed(200.5 * MB, 0.5 * MB)
    assert estimate_writes(["evaluate"], size, 1_000_000) == DiskNeed(12.5 * MB, 2.5 * MB)
    # a coarser .sog (at most 32 bytes a Gaussian) for each splat budget the scene may exceed
    levels = (3_000_000, 1_500_000, 600_000)
    assert estimate_writes(["publish"], size, 1_000_000, levels) == DiskNeed(317 * MB + 19.2 * MB, 317 * MB + 19.2 * MB)
    assert estimate_writes(["publish"], size, 500_000, levels) == estimate_writes(["publish"], size, 500_000)


def test_the_verdict_names_the_folder_and_adds_the_headroom(tmp_path):
    shared_memory = Path("/dev/shm")
    if not shared_memory.is_dir() or os.stat(shared_memory).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on a file system of its own")
    free = {tmp_path: 100 * MB, shared_memory: 30 * MB}
    guard = DiskGuard(tmp_path, shared_memory, min_free_gb=0.01, free_space=free.__getitem__,
                      total_space=lambda folder: 1000 * MB)
    assert guard.shortage(DiskNeed(state_bytes=89 * MB, outbox_bytes=19 * MB)) is None
    assert guard.shortage(DiskNeed(state_bytes=91 * MB, outbox_bytes=0)).reason == (
        "not enough free space in the state folder: 100.0 MB free, the job needs about 91.0 MB more and "
        "the server keeps 10.0 MB free")
    assert "in the outbox folder: 30.0 MB free" in guard.shortage(DiskNeed(0, 21 * MB)).reason
    # one file system for both: their needs add up
    together = DiskGuard(tmp_path / "a", tmp_path / "b", 0.01, free_space=lambda folder: 100 * MB,
                         total_space=lambda folder: 1000 * MB)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    assert "state folder and outbox folder: 100.0 MB free, the job needs about 95.0 MB" in \
        together.shortage(DiskNeed(60 * MB, 35 * MB)).reason
    assert DiskGuard(tmp_path, tmp_path, 0.0).shortage(DiskNeed(0, 0)) is None  # the real statvfs


def test_the_set_is_measured_as_ingest_will_take_it(tmp_path):
    photos = small_set(tmp_path / "inbox" / "garden", views=3)
    (tmp_path / "inbox" / "garden" / ".DS_Store").write_bytes(b"\0" * 5000)  # junk is not a photo
    size = measure_set(tmp_path / "inbox" / "garden", tmp_path / "inbox", FileRules(()))
    assert size == SetSize(3, sum(photo.stat().st_size for photo in photos))
    assert measure_set(tmp_path / "inbox" / "gone", tmp_path / "inbox", FileRules(())) == SetSize(0, 0)


# ---- a job that can never fit, and one that waits: how long it holds the queue


def test_a_need_beyond_the_whole_file_system_never_fits(tmp_path):
    free, whole = {tmp_path: 50 * GB}, {tmp_path: 80 * GB}
    guard = DiskGuard(tmp_path, tmp_path / "outbox", min_free_gb=10, free_space=free.__getitem__,
                      total_space=whole.__getitem__)
    (tmp_path / "outbox").mkdir()
    free[tmp_path / "outbox"] = free[tmp_path]  # one file system: same answers for both folders
    whole[tmp_path / "outbox"] = whole[tmp_path]
    short = guard.shortage(DiskNeed(state_bytes=203 * GB, outbox_bytes=28 * GB))
    assert short.never_fits and short.reason == (
        "the job needs about 231.00 GB in the state folder and outbox folder, more than their whole file system "
        "holds (80.00 GB)")
    # it fits the empty disk, but not with the headroom min_free_gb keeps
    assert guard.shortage(DiskNeed(75 * GB, 0)).reason == (
        "the job needs about 75.00 GB in the state folder and outbox folder and the server keeps 10.00 GB free, "
        "more than their whole file system holds (80.00 GB)")
    waits = guard.shortage(DiskNeed(60 * GB, 5 * GB))  # it would fit once 25 GB are freed: it waits
    assert not waits.never_fits and waits.more == 25 * GB and waits.reason.startswith("not enough free space")
    assert guard.shortage(DiskNeed(30 * GB, 10 * GB)) is None


def test_a_waiting_job_holds_the_queue_for_the_hold_then_is_passed_over_and_tried_again():
    clock = [1000.0]
    waits = SpaceWaits(hold_seconds=120, clock=lambda: clock[0],
                       now=lambda: datetime(2024, 5, 1, 14, 2, 30, tzinfo=timezone.utc))
    fits: set[str] = set()
    short = Shortage("state folder", free=10 * MB, need=28 * MB, headroom=8 * MB, capacity=50 * MB)
    assert waits.short("big-1", "ingest", short)  # new: the journal is told
    assert waits.plan(fits.__contains__).holding == "big-1"  # the jobs behind it wait, in order
    clock[0] += 119
    assert waits.plan(fits.__contains__).holding == "big-1"
    clock[0] += 1  # the hold is over: the worker claims past it
    assert waits.plan(fits.__contains__) == QueuePlan(None, frozenset({"big-1"}))
    fits.add("big-1")  # space freed: it is tried again, in its place (not passed over)
    assert waits.plan(fits.__contains__) == QueuePlan(None, frozenset())
    fits.clear()
    assert not waits.short("big-1", "ingest", short)  # still short: no new hold, no new journal line
    assert waits.plan(fits.__contains__) == QueuePlan(None, frozenset({"big-1"}))
    clock[0] += RETRY_SECONDS  # tried again every few minutes even when the disk says no
    assert waits.plan(fits.__contains__) == QueuePlan(None, frozenset())
    assert waits.problems() == ("job big-1 has waited for disk space since 14:02 UTC: needs about 26.0 MB more in "
                                "the state folder",)
    waits.forget("big-1")
    assert waits.plan(fits.__contains__) == QueuePlan(None, frozenset()) and waits.problems() == ()
    # a hold longer than the retry interval: tried again in its place meanwhile, then it holds on
    waits = SpaceWaits(hold_seconds=900, clock=lambda: clock[0])
    waits.short("big-1", "ingest", short)
    clock[0] += RETRY_SECONDS
    assert waits.plan(fits.__contains__) == QueuePlan(None, frozenset())
    waits.short("big-1", "ingest", short)
    assert waits.plan(fits.__contains__).holding == "big-1"


def test_job_options_are_bounded_by_what_a_large_gpu_holds(tmp_path):
    for key, bound in (("max_gaussians", 20_000_000), ("iterations", 200_000), ("train_max_image_size", 8192),
                       ("max_image_size", 8192)):
        assert validate_options({key: bound})[key] == bound
        with pytest.raises(JobOptionsError) as raised:
            validate_options({key: bound + 1})
        assert f"job.toml: '{key}' is {bound + 1:,}, more than the {bound:,} a job may ask for" in str(raised.value)
    (tmp_path / "job.toml").write_text("max_gaussians = 100000000\n")
    with pytest.raises(JobOptionsError) as raised:
        read_job_options(tmp_path, FileRules())
    assert str(raised.value).startswith("job.toml: 'max_gaussians' is 100,000,000, more than the 20,000,000 a job may "
                                        "ask for: each Gaussian takes about 1 KB of GPU memory in training")


@pytest.mark.slow
def test_a_job_larger_than_its_whole_disk_fails_at_once_and_the_queue_goes_on(tmp_path, small_disk):
    layout = on_small_disk(tmp_path, small_disk)
    small_set(layout.inbox / "huge", ready=True, stop_after=None)
    (layout.inbox / "huge" / "job.toml").write_text("max_gaussians = 20000000\n")
    small_set(layout.inbox / "small", ready=True)  # stops after ingest
    with DaemonProcess(layout) as daemon:
        huge = wait_for(state_is(layout, "huge", "failed", "done"), 30, "the huge job to fail")
        small = wait_for(state_is(layout, "small", "failed", "done"), 60, "the job behind it to run")
        assert daemon.stop() == 0
    size = measure_set(layout.inbox / "huge", layout.inbox, FileRules(()))
    need = estimate_writes(["ingest", "sfm", "train", "evaluate", "publish"], size, 20_000_000,
                           Settings().publish_levels).state_bytes
    assert need > 40 * GB
    assert huge["state"] == "failed" and huge["error"]["stage"] == "ingest", huge
    assert huge["error"]["message"] == (f"the job needs about {size_text(need)} in the state folder, more than its "
                                        f"whole file system holds ({size_text(TMPFS_MB * 1024 * 1024)})")
    assert huge["error"]["hint"].startswith("lower max_gaussians in job.toml (it is 20,000,000; each million "
                                            "Gaussians takes about 2.06 GB in the state folder)")
    assert not (layout.state / "jobs" / huge["job_id"] / "ingest").exists()
    assert small["state"] == "done"
    assert "more than its whole file system holds" in daemon.log()


@pytest.mark.slow
def test_a_job_waiting_for_space_holds_the_queue_only_for_space_wait_hold_minutes(tmp_path, small_disk):
    layout = on_small_disk(tmp_path, small_disk, space_wait_hold_minutes=0.2)  # 12 s
    small_set(layout.inbox / "big", views=8, ready=True, stop_after=None)
    (layout.inbox / "big" / "job.toml").write_text('stop_after = "sfm"\niterations = 3\n')
    # big: 8 photos, 16 MB for sfm, + 8 MB of headroom > 20 MB free; small: 3 photos, 6 MB: fits
    ballast = fill_until(small_disk, 20 * MB)
    with DaemonProcess(layout, paced=True) as daemon:
        wait_for(status_says(layout, "big", "waiting before ingest"), 30, "the big job to wait for space")
        small_set(layout.inbox / "small", views=3, ready=True, stop_after=None)
        (layout.inbox / "small" / "job.toml").write_text('stop_after = "sfm"\niterations = 3\n')
        wait_for(state_is(layout, "small", "queued"), 30, "the small job to join the queue")
        time.sleep(2)
        assert layout.status("small")["state"] == "queued"  # held behind big, in order, for a while
        problem = wait_for(lambda: health(layout)["problems"], 30, "health.json to list the wait")
        small = wait_for(state_is(layout, "small", "done", "failed"), 60, "the small job to run once the hold is over")
        big = layout.status("big")
        assert big["state"] == "queued" and "waiting before ingest" in big["message"]  # still in its place
        assert health(layout)["problems"] == problem
        ballast.unlink()
        done = wait_for(state_is(layout, "big", "done", "failed"), 60, "the big job to run once space is freed")
        wait_for(lambda: not health(layout)["problems"], 20, "health.json to clear the problem")
        assert daemon.stop() == 0
    assert small["state"] == "done" and done["state"] == "done", (small, done)
    assert re.fullmatch(r"job big-1 has waited for disk space since \d\d:\d\d UTC: needs about \d+\.\d MB more in the "
                        r"state folder", problem[0]), problem
    assert str(small_disk) not in json.dumps(health(layout))  # public: no paths


# ---- a disk that fills during a stage


@pytest.mark.slow
def test_a_stage_that_fills_the_disk_waits_for_space_and_resumes_at_that_stage(tmp_path, small_disk):
    layout = on_small_disk(tmp_path, small_disk)
    small_set(layout.inbox / "garden", ready=True, stop_after="sfm")
    # the guard lets sfm start (estimate 8 MB + 8 MB headroom), but it writes 24 MB: the disk fills
    ballast = fill_until(small_disk, 18 * MB)
    with DaemonProcess(layout, pipeline="tests.disk_filler_stage:DISK_FULL_PIPELINE") as daemon:
        waiting = wait_for(status_says(layout, "garden", "filled up during sfm"), 60, "the job to wait for space")
        job_dir = layout.state / "jobs" / waiting["job_id"]
        problems = wait_for(lambda: health(layout)["problems"], 20, "health.json to list the problem")
        time.sleep(6)  # the worker looks at the disk every 5 s: no new try while it is short
        assert (job_dir / MODEL_RUNS).read_text().splitlines() == ["run from 0"]
        assert layout.status("garden")["state"] == "queued"
        ballast.unlink()
        done = wait_for(state_is(layout, "garden", "done", "failed"), 60, "the job to resume once space is freed")
        assert daemon.stop() == 0
    assert waiting["state"] == "queued", waiting
    assert re.fullmatch(r"the disk of the state folder filled up during sfm \(No space left on device\); the job "
                        r"resumes at sfm once \d+\.\d MB more are free in the state folder",
                        waiting["message"]), waiting
    assert waiting["stages"]["ingest"]["state"] == "done" and waiting["stages"]["sfm"]["state"] == "interrupted"
    assert re.fullmatch(r"job garden-1 has waited for disk space since \d\d:\d\d UTC: needs about \d+\.\d MB more in "
                        r"the state folder", problems[0]), problems
    assert done["state"] == "done", done
    assert done["metrics"]["sfm"]["model_bytes"] == MODEL_BYTES
    # the partial model was removed at once (not resumable), so the second run started afresh; ingest ran once
    assert (job_dir / MODEL_RUNS).read_text().splitlines() == ["run from 0", "run from 0"]
    assert stage_starts(layout, waiting["job_id"], "ingest") == 1
    assert "the disk of the state folder filled up during sfm" in daemon.log()


@pytest.mark.slow
def test_a_stage_that_aborts_without_a_word_on_a_full_disk_is_recognised(tmp_path, small_disk):
    layout = on_small_disk(tmp_path, small_disk)
    small_set(layout.inbox / "garden", ready=True, stop_after="sfm")
    ballast = fill_until(small_disk, 18 * MB)
    with DaemonProcess(layout, pipeline="tests.disk_filler_stage:ABORTING_PIPELINE") as daemon:
        waiting = wait_for(status_says(layout, "garden", "filled up during sfm"), 60, "the job to wait for space")
        ballast.unlink()
        done = wait_for(state_is(layout, "garden", "done", "failed"), 60, "the job to resume once space is freed")
        assert daemon.stop() == 0
    assert waiting["state"] == "queued" and waiting["message"].startswith(
        "the disk of the state folder filled up during sfm (it was killed by SIGABRT with 0.0 MB free); the job "
        "resumes at sfm once"), waiting
    assert done["state"] == "done" and stage_starts(layout, waiting["job_id"], "ingest") == 1, done


@pytest.mark.slow
def test_a_resumable_stage_keeps_what_it_wrote_when_the_disk_fills_and_continues_it(tmp_path, small_disk):
    layout = on_small_disk(tmp_path, small_disk)
    small_set(layout.inbox / "garden", ready=True, stop_after="sfm")
    ballast = fill_until(small_disk, 18 * MB)
    with DaemonProcess(layout, pipeline="tests.disk_filler_stage:RESUMABLE_PIPELINE") as daemon:
        job_dir = layout.state / "jobs" / "garden-1"
        # its folder is kept, so the disk stays full: the job store may not be writable either
        problems = wait_for(lambda: health(layout)["problems"], 60, "health.json to tell the full disk")
        (partial,) = (job_dir / "claims").glob(f"*/sfm/{MODEL}")  # unfinished: in its claim's folder
        assert partial.stat().st_size > 10 * MB
        ballast.unlink()
        done = wait_for(state_is(layout, "garden", "done", "failed"), 90, "the job to resume once space is freed")
        assert daemon.stop() == 0
    assert any("disk" in problem and "state folder" in problem for problem in problems), problems
    assert done["state"] == "done" and done["metrics"]["sfm"]["model_bytes"] == MODEL_BYTES, done
    first, second = (job_dir / MODEL_RUNS).read_text().splitlines()
    assert first == "run from 0" and int(second.removeprefix("run from ")) > 10 * MB  # it went on from there


def test_a_job_store_write_refused_for_a_full_disk_is_told_as_such(small_disk, caplog):
    store = open_store(f"sqlite:///{small_disk / 'jobs.sqlite3'}")
    job = store.create_job(set_name="garden", source_path=small_disk / "garden", source_kind="folder",
                           fingerprint="f", state=JobState.QUEUED, message="queued")
    outage = StoreOutage(now=lambda: datetime(2024, 5, 1, 14, 2, 30, tzinfo=timezone.utc))
    ballast = fill_until(small_disk, 0)
    with pytest.raises(Exception) as raised:
        store.update_fields(job.id, message="x" * 5_000_000)
    with caplog.at_level(logging.INFO, logger="instarecon"):
        outage.failed(raised.value, "recording a stage's progress")
        assert outage.problem == ("the job store cannot write since 14:02:30 UTC: the disk of the state folder is "
                                  "full; retrying until space is freed")
        assert store.get(job.id).state is JobState.QUEUED  # reads still work: that is no end of it
        outage.answered()
        assert outage.problem is not None
        ballast.unlink()
        store.update_fields(job.id, message="x" * 5_000_000)
        outage.answered(wrote=True)
        assert outage.problem is None
    store.engine.dispose()
    lines = [record.getMessage() for record in caplog.records]
    assert lines[0].startswith("the job store cannot write: the disk of the state folder is full (OperationalError: "
                               "database or disk is full, while recording a stage's progress)"), lines
    assert not any("does not answer" in line for line in lines)
    assert lines[-1].startswith("the job store writes again, after")
