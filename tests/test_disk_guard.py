"""No job starts, and no stage starts, without room for what it will write plus min_free_gb: it
waits in the queue, says why in status.json and the journal, and runs once space is freed. On a
real small file system (a tmpfs the test mounts as root) under the real daemon, and the estimate
and the verdict on their own."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from daemon.disk_guard import MB, DiskGuard, DiskNeed, SetSize, estimate_writes, free_bytes, measure_set
from stages.photo_set import FileRules
from tests.daemon_harness import DaemonProcess, Layout, make_layout, state_is, wait_for
from tests.disk_filler_stage import BALLAST, FILL_BYTES
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


def on_small_disk(tmp_path: Path, small_disk: Path) -> Layout:
    """Inbox and outbox in the test's folder; the state folder (job store, work folders) on the small disk."""
    state = small_disk / "state"
    state.mkdir()
    return dataclasses.replace(make_layout(tmp_path, state=str(state), min_free_gb=MIN_FREE_GB), state=state)


def fill_until(folder: Path, free: int) -> Path:
    """A ballast file that leaves about ``free`` bytes free on ``folder``'s file system."""
    ballast = folder / "ballast.bin"
    size = free_bytes(folder) - free
    with open(ballast, "wb") as handle:
        os.posix_fallocate(handle.fileno(), 0, size)
    return ballast


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
        assert "min_free_gb keeps 8.0 MB free" in waiting["message"]
        assert not (layout.state / "jobs" / waiting["job_id"] / "ingest").exists()  # nothing started
        wait_for(lambda: "starts when space is freed" in daemon.log(), 10, "the journal to say so")
        ballast.unlink()
        done = wait_for(state_is(layout, "garden", "done", "failed"), 60, "the job to run once space is freed")
        assert daemon.stop() == 0
    assert done["state"] == "done", done
    assert daemon.log().count("starts when space is freed") == 1  # told once, not at every look


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
    # the photos, 2 MB a photo, two checkpoints and a .ply, 1/4 MB a photo, the .ply and .splat
    assert whole.state_bytes == 200 * MB + 80 * MB + (2 * 750 + 248) * MB + 10 * MB + (280 * MB + 5 * MB)
    assert whole.outbox_bytes == 280 * MB + 5 * MB
    assert estimate_writes(["publish"], size, 1_000_000) == DiskNeed(285 * MB, 285 * MB)
    assert estimate_writes(["ingest"], size, 1_000_000) == DiskNeed(200 * MB, 0)


def test_the_verdict_names_the_folder_and_adds_the_headroom(tmp_path):
    shared_memory = Path("/dev/shm")
    if not shared_memory.is_dir() or os.stat(shared_memory).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on a file system of its own")
    free = {tmp_path: 100 * MB, shared_memory: 30 * MB}
    guard = DiskGuard(tmp_path, shared_memory, min_free_gb=0.01, free_space=free.__getitem__)
    assert guard.shortage(DiskNeed(state_bytes=89 * MB, outbox_bytes=19 * MB)) is None
    assert guard.shortage(DiskNeed(state_bytes=91 * MB, outbox_bytes=0)) == (
        "not enough free space in the state folder: 100.0 MB free, the job needs about 91.0 MB more and "
        "min_free_gb keeps 10.0 MB free")
    assert "in the outbox folder: 30.0 MB free" in guard.shortage(DiskNeed(0, 21 * MB))
    # one file system for both: their needs add up
    together = DiskGuard(tmp_path / "a", tmp_path / "b", 0.01, free_space=lambda folder: 100 * MB)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    assert "state folder and outbox folder: 100.0 MB free, the job needs about 95.0 MB" in \
        together.shortage(DiskNeed(60 * MB, 35 * MB))
    assert DiskGuard(tmp_path, tmp_path, 0.0).shortage(DiskNeed(0, 0)) is None  # the real statvfs


def test_the_set_is_measured_as_ingest_will_take_it(tmp_path):
    photos = small_set(tmp_path / "inbox" / "garden", views=3)
    (tmp_path / "inbox" / "garden" / ".DS_Store").write_bytes(b"\0" * 5000)  # junk is not a photo
    size = measure_set(tmp_path / "inbox" / "garden", tmp_path / "inbox", FileRules(()))
    assert size == SetSize(3, sum(photo.stat().st_size for photo in photos))
    assert measure_set(tmp_path / "inbox" / "gone", tmp_path / "inbox", FileRules(())) == SetSize(0, 0)
