"""When is a set complete? Real drops into a real inbox.

When it counts as complete (the settle time, READY and its quiet time, files still being written) is
the intake's decision, shown here on the real intake over a real inbox and a real SQLite job store,
with a clock the test moves: the same drops as a person's copy, an rsync and an upload script make,
to the hundredth of a second, without waiting for them. The real daemon, with the native and the
polling observer, shows that each observer's events bring a set in and that the daemon looks again
when a wait ends; its periodic rescan is set to an hour, so every set there is found by the observer
under test.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from daemon.config import Settings
from daemon.intake.set_intake import SetIntake
from daemon.intake.settle_clock import SettleClock
from daemon.store import JobRecord, JobState, JobStore, open_store
from tests.daemon_harness import DaemonProcess, make_layout, state_is, wait_for
from tests.photo_sets import small_set

WATCH_MODES = ["native", "polling"]


@pytest.mark.slow
def test_set_copied_file_by_file_starts_only_after_it_settles(tmp_path):
    """The settle time as the daemon keeps it: read from the configuration, and looked at again when
    the wait ends (the intake's side, to the hundredth of a second, is in the test below)."""
    settle = 2.0
    layout = make_layout(tmp_path / "site", watch_mode="native", settle_seconds=settle)
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
        waiting = wait_for(state_is(layout, "garden", "waiting"), 10, "the waiting status", show=[daemon])
        assert "READY" in waiting["message"] and "2 s" in waiting["message"]
        wait_for(state_is(layout, "garden", "queued", "running", "done"), 15, "the set to be queued", show=[daemon])
        assert time.monotonic() - last_change >= settle - 0.1
        done = wait_for(state_is(layout, "garden", "done"), 30, "the job to finish", show=[daemon])
        assert done["images"]["accepted"] == 4, daemon.log()


@pytest.mark.slow
@pytest.mark.parametrize("watch_mode", WATCH_MODES)
def test_ready_marker_completes_a_set_at_once(tmp_path, watch_mode):
    layout = make_layout(tmp_path / "site", watch_mode=watch_mode, settle_seconds=600)
    with DaemonProcess(layout) as daemon:
        time.sleep(0.5)
        small_set(layout.inbox / "porch")
        wait_for(state_is(layout, "porch", "waiting"), 10, "the waiting status", show=[daemon])
        time.sleep(1.0)
        assert layout.status("porch")["state"] == "waiting"  # no marker, 600 s settle: still waiting
        dropped = time.monotonic()
        (layout.inbox / "porch" / "Ready.txt").touch()  # any case; .txt as Windows Explorer names it
        wait_for(state_is(layout, "porch", "done"), 15, "the job to run after READY", show=[daemon])
        assert time.monotonic() - dropped < 10


@pytest.mark.slow
@pytest.mark.parametrize("watch_mode", WATCH_MODES)
def test_junk_files_are_ignored(tmp_path, watch_mode):
    layout = make_layout(tmp_path / "site", watch_mode=watch_mode, ignore_patterns=["*.xmp"])
    with DaemonProcess(layout) as daemon:
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
        done = wait_for(state_is(layout, "attic", "done"), 30, "the job to finish", show=[daemon])
    assert done["images"] == {"found": 4, "accepted": 4, "rejected": []}
    # ignored, not removed: the set's folder is the person's, junk included
    assert [(folder / junk).read_bytes() for junk in junk_files] == [b"junk"] * len(junk_files)


@pytest.mark.slow
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


# ---- the intake's decisions, on a clock the test moves


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Intake:
    """The daemon's intake over ``inbox``: ``look`` is what the daemon does at each event or when a
    wait ends, and returns how long until it should look again (None: nothing to wait for)."""

    inbox: Path
    store: JobStore
    intake: SetIntake
    clock: Clock

    def look(self, name: str) -> float | None:
        return self.intake.reconcile(name)

    def job(self, name: str) -> JobRecord:
        return self.store.latest_for_set(name)


@pytest.fixture
def intake_of(tmp_path: Path) -> Iterator:
    stores: list[JobStore] = []

    def make(settle_seconds: float, ready_quiet_seconds: float) -> Intake:
        settings = Settings(inbox=tmp_path / "inbox", outbox=tmp_path / "outbox", state=tmp_path / "state",
                            settle_seconds=settle_seconds, ready_quiet_seconds=ready_quiet_seconds)
        for folder in (settings.inbox, settings.outbox, settings.state):
            folder.mkdir()
        store = open_store(settings.resolved_database_url)
        stores.append(store)
        clock = Clock()
        return Intake(settings.inbox, store, SetIntake(settings, store, SettleClock(settle_seconds, clock)), clock)

    yield make
    for store in stores:
        store.engine.dispose()


def test_a_set_copied_file_by_file_is_complete_once_nothing_in_it_has_changed_for_the_settle_time(tmp_path,
                                                                                                 intake_of):
    settle = 2.0
    inbox = intake_of(settle_seconds=settle, ready_quiet_seconds=0.3)
    photos = small_set(tmp_path / "camera")
    target = inbox.inbox / "garden"
    target.mkdir()
    shutil.copy2(tmp_path / "camera" / "job.toml", target / "job.toml")
    assert inbox.look("garden") == settle
    for count, photo in enumerate(photos, start=1):  # one every quarter of the settle time
        inbox.clock.now += settle / 4
        assert inbox.look("garden") == settle * 3 / 4
        shutil.copy2(photo, target / photo.name)
        assert inbox.look("garden") == settle  # a change starts the wait over
        waiting = inbox.job("garden")
        assert waiting.state is JobState.WAITING and waiting.attempt == 1
        assert waiting.message == (f"waiting for the set to be complete ({count} files so far): drop a file named "
                                   "READY into it, or leave it unchanged for 2 s")
    inbox.clock.now += settle - 0.25  # (steps that binary fractions hold exactly)
    assert inbox.look("garden") == 0.25
    assert inbox.job("garden").state is JobState.WAITING
    inbox.clock.now += 0.25
    assert inbox.look("garden") is None
    queued = inbox.job("garden")
    assert (queued.state, queued.message, queued.attempt) == (JobState.QUEUED, "queued (no change for 2 s)", 1)


def test_an_rsync_style_drop_counts_only_after_the_rename(tmp_path, intake_of):
    """rsync writes each photo under a hidden temporary name and renames it when done. A slow
    transfer takes longer than the settle time: the set is complete only once the last rename has
    settled, never while a temporary still grows."""
    settle = 1.5
    inbox = intake_of(settle_seconds=settle, ready_quiet_seconds=0.3)
    photos = small_set(tmp_path / "camera")
    target = inbox.inbox / "shed"
    target.mkdir()
    shutil.copy2(tmp_path / "camera" / "job.toml", target / "job.toml")
    for count, photo in enumerate(photos):
        temporary = target / f".{photo.name}.Xy12Ab"
        data = photo.read_bytes()
        with open(temporary, "wb") as handle:  # a slow transfer: each photo takes longer than the settle time
            for start in range(0, len(data), len(data) // 3 + 1):
                handle.write(data[start:start + len(data) // 3 + 1])
                handle.flush()
                assert inbox.look("shed") == settle  # what is still being written starts the wait over
                waiting = inbox.job("shed")
                assert waiting.state is JobState.WAITING, waiting
                assert waiting.message.endswith(f"({count} files so far): drop a file named READY into it, or leave "
                                                "it unchanged for 1.5 s; 1 file(s) still being written")
                inbox.clock.now += settle * 0.75
                assert inbox.look("shed") == settle * 0.25
        temporary.rename(target / photo.name)
        assert inbox.look("shed") == settle
    inbox.clock.now += settle - 0.25  # (steps that binary fractions hold exactly)
    assert inbox.look("shed") == 0.25
    assert inbox.job("shed").message.endswith("(4 files so far): drop a file named READY into it, or leave it "
                                              "unchanged for 1.5 s")
    inbox.clock.now += 0.25
    assert inbox.look("shed") is None
    queued = inbox.job("shed")
    assert (queued.state, queued.message, queued.attempt) == (JobState.QUEUED, "queued (no change for 1.5 s)", 1)


def test_ready_dropped_before_the_photos_counts_once_they_have_stopped_coming(tmp_path, intake_of):
    """Some upload scripts drop READY first: the set starts only once nothing in it has changed for
    ready_quiet_seconds, with every photo, as one attempt."""
    quiet = 1.5
    inbox = intake_of(settle_seconds=600, ready_quiet_seconds=quiet)
    photos = small_set(tmp_path / "camera", views=6)
    target = inbox.inbox / "garden"
    target.mkdir()
    (target / "READY").touch()
    shutil.copy2(tmp_path / "camera" / "job.toml", target / "job.toml")
    assert inbox.look("garden") == quiet
    for count, photo in enumerate(photos, start=1):  # one every half of the quiet period
        inbox.clock.now += quiet / 2
        assert inbox.look("garden") == quiet / 2
        shutil.copy2(photo, target / photo.name)
        assert inbox.look("garden") == quiet
        waiting = inbox.job("garden")
        assert waiting.state is JobState.WAITING, waiting
        assert waiting.message == (f"READY found ({count} files): starting once nothing in the set has changed for "
                                   "1.5 s")
    inbox.clock.now += quiet - 0.25
    assert inbox.look("garden") == 0.25
    inbox.clock.now += 0.25
    assert inbox.look("garden") is None
    queued = inbox.job("garden")
    assert (queued.state, queued.message) == (JobState.QUEUED, "queued (READY marker)")
    assert [job.attempt for job in inbox.store.jobs_of_set("garden")] == [1]
