"""When is a set complete? Real drops into a real inbox, seen by the native and the polling observer.

The periodic rescan is set to an hour in these tests, so every set here is found by
the observer under test.
"""

from __future__ import annotations

import shutil
import time

import pytest

from tests.daemon_harness import DaemonProcess, make_layout, state_is, wait_for
from tests.photo_sets import small_set

WATCH_MODES = ["native", "polling"]


@pytest.mark.parametrize("watch_mode", WATCH_MODES)
def test_set_copied_file_by_file_starts_only_after_it_settles(tmp_path, watch_mode):
    settle = 2.0
    layout = make_layout(tmp_path / "site", watch_mode=watch_mode, settle_seconds=settle)
    photos = small_set(tmp_path / "camera")
    target = layout.inbox / "garden"
    with DaemonProcess(layout) as daemon:
        time.sleep(0.5)  # the daemon is up and watching
        target.mkdir()
        shutil.copy2(tmp_path / "camera" / "job.toml", target / "job.toml")  # stop after ingest
        for photo in photos:
            shutil.copy2(photo, target / photo.name)
            last_change = time.monotonic()
            time.sleep(settle / 3)
            document = layout.status("garden")
            assert document is None or document["state"] == "waiting", document
        waiting = wait_for(state_is(layout, "garden", "waiting"), 10, "the waiting status")
        assert "READY" in waiting["message"] and "2 s" in waiting["message"]
        wait_for(state_is(layout, "garden", "queued", "running", "done"), 15, "the set to be queued")
        assert time.monotonic() - last_change >= settle - 0.1
        done = wait_for(state_is(layout, "garden", "done"), 30, "the job to finish")
        assert done["images"]["accepted"] == 4, daemon.log()


@pytest.mark.parametrize("watch_mode", WATCH_MODES)
def test_ready_marker_completes_a_set_at_once(tmp_path, watch_mode):
    layout = make_layout(tmp_path / "site", watch_mode=watch_mode, settle_seconds=600)
    with DaemonProcess(layout):
        time.sleep(0.5)
        small_set(layout.inbox / "porch")
        wait_for(state_is(layout, "porch", "waiting"), 10, "the waiting status")
        time.sleep(1.0)
        assert layout.status("porch")["state"] == "waiting"  # no marker, 600 s settle: still waiting
        dropped = time.monotonic()
        (layout.inbox / "porch" / "Ready.txt").touch()  # any case; .txt as Windows Explorer names it
        wait_for(state_is(layout, "porch", "done"), 15, "the job to run after READY")
        assert time.monotonic() - dropped < 10


@pytest.mark.parametrize("watch_mode", WATCH_MODES)
def test_rsync_style_drop_counts_only_after_the_rename(tmp_path, watch_mode):
    settle = 1.5
    layout = make_layout(tmp_path / "site", watch_mode=watch_mode, settle_seconds=settle)
    photos = small_set(tmp_path / "camera")
    target = layout.inbox / "shed"
    with DaemonProcess(layout):
        time.sleep(0.5)
        target.mkdir()
        shutil.copy2(tmp_path / "camera" / "job.toml", target / "job.toml")  # stop after ingest
        for photo in photos:
            temporary = target / f".{photo.name}.Xy12Ab"
            data = photo.read_bytes()
            with open(temporary, "wb") as handle:  # a slow transfer: longer than the settle time
                for start in range(0, len(data), len(data) // 3 + 1):
                    handle.write(data[start:start + len(data) // 3 + 1])
                    handle.flush()
                    time.sleep(settle * 0.6)
                    document = layout.status("shed")
                    assert document is None or document["state"] == "waiting", document
            temporary.rename(target / photo.name)
        done = wait_for(state_is(layout, "shed", "done"), 30, "the job to finish")
    assert done["images"] == {"found": 4, "accepted": 4, "rejected": []}


@pytest.mark.parametrize("watch_mode", WATCH_MODES)
def test_junk_files_are_ignored(tmp_path, watch_mode):
    layout = make_layout(tmp_path / "site", watch_mode=watch_mode, ignore_patterns=["*.xmp"])
    with DaemonProcess(layout):
        time.sleep(0.5)
        folder = layout.inbox / "attic"
        small_set(folder)
        junk_files = (".DS_Store", "Thumbs.db", "desktop.ini", "._view_000.jpg", "view_001.xmp",
                      "upload.jpg.part", "~$notes.docx", "clip.crdownload")
        for junk in junk_files:
            (folder / junk).write_bytes(b"junk")
        for junk_folder in ("@eaDir", ".stversions", "#recycle", ".rsync-partial", ".~tmp~"):
            (folder / junk_folder).mkdir()
            (folder / junk_folder / "thumb.jpg").write_bytes(b"junk")
        (folder / "READY").touch()
        done = wait_for(state_is(layout, "attic", "done"), 30, "the job to finish")
    assert done["images"] == {"found": 4, "accepted": 4, "rejected": []}
    # ignored, not removed: the set's folder is the person's, junk included
    assert [(folder / junk).read_bytes() for junk in junk_files] == [b"junk"] * len(junk_files)


@pytest.mark.parametrize("watch_mode", WATCH_MODES)
def test_ready_dropped_before_the_photos_counts_once_they_have_stopped_coming(tmp_path, watch_mode):
    """Some upload scripts drop READY first: the set starts only once nothing in it has changed for
    ready_quiet_seconds, with every photo."""
    quiet = 1.5
    layout = make_layout(tmp_path / "site", watch_mode=watch_mode, settle_seconds=600, ready_quiet_seconds=quiet)
    photos = small_set(tmp_path / "camera", views=6)
    target = layout.inbox / "garden"
    with DaemonProcess(layout) as daemon:
        time.sleep(0.5)
        target.mkdir()
        (target / "READY").touch()
        shutil.copy2(tmp_path / "camera" / "job.toml", target / "job.toml")
        for photo in photos:  # one every half of the quiet period
            time.sleep(quiet / 2)
            shutil.copy2(photo, target / photo.name)
            document = layout.status("garden")
            assert document is None or document["state"] == "waiting", document
        last_photo = time.monotonic()
        waiting = wait_for(state_is(layout, "garden", "waiting"), 10, "the waiting status", show=[daemon])
        assert "READY found" in waiting["message"], waiting["message"]
        wait_for(state_is(layout, "garden", "queued", "running", "done"), 15, "the set to be queued", show=[daemon])
        assert time.monotonic() - last_photo >= quiet - 0.1
        done = wait_for(state_is(layout, "garden", "done"), 30, "the job to finish", show=[daemon])
    assert done["images"]["accepted"] == 6 and done["attempt"] == 1


def test_a_set_that_changes_while_its_job_runs_stops_that_run_and_runs_again_whole(tmp_path):
    """An SMB copy that stalls for longer than the settle time, then goes on: the partial run is
    stopped (it would publish a scene of a set that no longer is) and the whole set runs."""
    layout = make_layout(tmp_path / "site", settle_seconds=1.0)
    photos = small_set(tmp_path / "camera", views=6, stop_after=None)
    target = layout.inbox / "garden"
    target.mkdir()
    (target / "job.toml").write_text('stop_after = "sfm"\niterations = 600\n')  # a long paced stage
    for photo in photos[:4]:
        shutil.copy2(photo, target / photo.name)
    with DaemonProcess(layout, paced=True) as daemon:
        first = wait_for(lambda: (d := layout.status("garden")) and d["stage"] == "sfm" and d, 30,
                         "the partial set to run", show=[daemon])
        for photo in photos[4:]:  # the copy goes on
            shutil.copy2(photo, target / photo.name)
        second = wait_for(lambda: (d := layout.status("garden")) and d["attempt"] == 2 and d["state"] == "running"
                          and d["stage"] == "sfm" and d, 60, "the whole set to run", show=[daemon])
    stopped = layout.outbox_status(first["job_id"])
    assert stopped["state"] == "cancelled", stopped
    assert "the set changed while the job ran" in stopped["message"]
    assert stopped["stages"]["sfm"]["state"] == "cancelled"
    assert first["images"]["accepted"] == 4 and second["images"]["accepted"] == 6
    assert "the set changed while job garden-1 ran" in daemon.log()
