"""Removal: a set deleted from the inbox makes its jobs removed (a running one stopped first), never
on a brief disappearance nor on an inbox that is gone or empty; unpublish_removed takes the page
away; `instarecon remove JOB` deletes one job's page and results. Real folders, real job stores
(SQLite, and PostgreSQL for the store-level tests), the real daemon and command as processes."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sqlite3
import time
import zipfile
from pathlib import Path

import pytest

from daemon.config import Settings
from daemon.intake.set_intake import REMOVED_WHILE_RUNNING, SET_LEFT_INBOX, SetIntake
from daemon.intake.settle_clock import SettleClock
from daemon.report.site_publisher import SitePublisher, listed_views, unpublish
from daemon.store import JobState, open_store
from site_builder import write_gallery
from stages.atomic_files import atomic_write_json
from tests.daemon_harness import DaemonProcess, make_layout, run_cli, state_is, wait_for
from tests.file_states import file_states
from tests.photo_sets import small_set
from tests.site_documents import status_document

SETTLE = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def inbox_of(database_url, tmp_path):
    """An intake over a real inbox and a real job store, on a clock the test moves."""
    stores = []

    def make():
        settings = Settings(inbox=tmp_path / "inbox", outbox=tmp_path / "outbox", state=tmp_path / "state",
                            database_url=database_url, settle_seconds=SETTLE, ready_quiet_seconds=0)
        for folder in (settings.inbox, settings.outbox, settings.state):
            folder.mkdir(exist_ok=True)
        stores.append(open_store(database_url))
        clock = Clock()
        return settings, stores[-1], SetIntake(settings, stores[-1], SettleClock(SETTLE, clock)), clock

    yield make
    for store in stores:
        store.engine.dispose()


def _drop(inbox: Path, name: str, photos: str = "ab") -> Path:
    folder = inbox / name
    folder.mkdir()
    for letter in photos:
        (folder / f"{letter}.jpg").write_bytes(letter.encode() * 100)
    (folder / "READY").touch()
    return folder


def _states(store, name: str) -> dict[str, str]:
    return {job.id: str(job.state) for job in store.jobs_of_set(name)}


def test_every_attempt_of_a_set_gone_for_the_settle_time_is_removed_and_it_comes_back_as_a_new_one(inbox_of):
    settings, store, intake, clock = inbox_of()
    kermit = _drop(settings.inbox, "kermit")
    assert intake.reconcile("kermit") is None and _states(store, "kermit") == {"kermit-1": "queued"}
    _drop(settings.inbox, "other")
    intake.reconcile("other")
    first = store.claim_next()
    assert store.transition(first.id, JobState.DONE, "done")
    finished_at = store.get("kermit-1").finished_at
    (kermit / "c.jpg").write_bytes(b"c" * 100)  # changed after its run: attempt 2, once the change settles
    assert intake.reconcile("kermit") == SETTLE and _states(store, "kermit") == {"kermit-1": "done"}
    clock.now = 10.0
    intake.reconcile("kermit")
    assert _states(store, "kermit") == {"kermit-1": "done", "kermit-2": "queued"}

    aside = settings.inbox / ".kermit.renaming"
    kermit.rename(aside)  # an upload tool renames it away and back
    assert intake.reconcile("kermit") == SETTLE
    clock.now = 16.0
    aside.rename(kermit)
    intake.reconcile("kermit")
    clock.now = 17.0
    shutil.rmtree(kermit)
    assert intake.reconcile("kermit") == SETTLE  # the wait starts again: 1 s missing so far, not 7
    clock.now = 26.0
    assert intake.reconcile("kermit") == pytest.approx(1.0)
    assert _states(store, "kermit") == {"kermit-1": "done", "kermit-2": "queued"}
    clock.now = 27.0
    assert intake.reconcile("kermit") is None
    assert _states(store, "kermit") == {"kermit-1": "removed", "kermit-2": "removed"}
    removed = store.get("kermit-1")
    assert removed.message == SET_LEFT_INBOX and removed.finished_at == finished_at
    assert store.get("kermit-2").finished_at is not None
    states = [e["state"] for e in store.events("kermit-1") if e["kind"] == "state"]
    assert states == ["waiting", "queued", "running", "done", "removed"]
    assert intake.missing_sets(["other"]) == set()
    assert _states(store, "other") == {"other-1": "queued"}

    _drop(settings.inbox, "kermit", photos="abc")  # the same photos as attempt 2: still a new set
    intake.reconcile("kermit")
    assert _states(store, "kermit") == {"kermit-1": "removed", "kermit-2": "removed", "kermit-3": "queued"}


def test_a_running_job_is_stopped_first_and_removed_once_it_has_stopped(inbox_of):
    settings, store, intake, clock = inbox_of()
    _drop(settings.inbox, "other")
    shed = _drop(settings.inbox, "shed")
    intake.reconcile("shed")
    running = store.claim_next()
    shutil.rmtree(shed)
    assert intake.missing_sets(["other"]) == {"shed"}  # what a rescan looks at besides the listing
    intake.reconcile("shed")
    clock.now = SETTLE
    assert intake.reconcile("shed") == 1.0  # looking again soon, while it stops
    job = store.get(running.id)
    assert job.state == JobState.RUNNING and job.cancel_requested and job.cancel_reason == REMOVED_WHILE_RUNNING
    assert store.transition(job.id, JobState.CANCELLED, job.cancel_reason)  # what the job runner does then
    assert intake.reconcile("shed") is None
    assert _states(store, "shed") == {"shed-1": "removed"}
    events = [e["state"] for e in store.events("shed-1") if e["kind"] == "state"]
    assert events == ["waiting", "queued", "running", "cancelled", "removed"]


def test_an_inbox_gone_or_empty_removes_nothing_until_it_is_back(inbox_of, caplog):
    caplog.set_level(logging.INFO, logger="instarecon")
    settings, store, intake, clock = inbox_of()
    for name in ("one", "two"):
        _drop(settings.inbox, name)
        intake.reconcile(name)
    for name in ("one", "two"):
        shutil.rmtree(settings.inbox / name)  # the inbox is empty now, as a share's mount point when it drops
        assert intake.reconcile(name) == SETTLE
    clock.now = 20.0
    assert intake.reconcile("one") == SETTLE and intake.reconcile("two") == SETTLE
    assert "is empty" in caplog.text
    settings.inbox.rmdir()  # and now gone
    clock.now = 30.0
    assert intake.reconcile("one") == SETTLE  # missing again from here (the wait started over)
    clock.now = 40.0
    assert intake.reconcile("one") == SETTLE
    assert "cannot be read" in caplog.text
    assert intake.missing_sets([]) == set()  # a rescan of a missing inbox adds nothing to look at
    assert _states(store, "one") == {"one-1": "queued"} and _states(store, "two") == {"two-1": "queued"}

    settings.inbox.mkdir()
    (settings.inbox / "notes.txt").write_text("not a set, but the inbox is no longer empty")
    clock.now = 45.0
    assert intake.reconcile("one") == SETTLE  # the wait starts over once the inbox can be trusted
    assert _states(store, "one") == {"one-1": "queued"}
    clock.now = 55.0
    assert intake.reconcile("one") is None
    assert _states(store, "one") == {"one-1": "removed"} and _states(store, "two") == {"two-1": "queued"}
    assert intake.missing_sets([]) == {"two"}
    assert "can be trusted again" in caplog.text


# ---- the site


def test_unpublish_deletes_the_job_folder_only_and_the_gallery_lists_a_removed_job_while_its_folder_stays(tmp_path):
    outbox = tmp_path / "outbox"
    kept = status_document("kept-1", "kept", "removed", published=True)
    gone = status_document("gone-1", "gone", "removed")
    done = status_document("done-1", "done", "done")
    for document in (kept, done, gone):
        (outbox / document["job_id"]).mkdir(parents=True)
        atomic_write_json(outbox / document["job_id"] / "status.json", document)
    (outbox / "kept-1" / "scene.splat").write_bytes(b"x" * 32)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("not ours")
    (outbox / "gone-1" / "link").symlink_to(elsewhere)

    assert unpublish(outbox, "gone-1") == 2  # status.json and the link, not what it points to
    assert not (outbox / "gone-1").exists() and (elsewhere / "precious.txt").is_file()
    for bad in ("..", "../elsewhere", "", ".hidden", "a/b"):
        with pytest.raises(ValueError):
            unpublish(outbox, bad)
    (outbox / "linked-1").symlink_to(elsewhere)
    assert unpublish(outbox, "linked-1") == 0 and not os.path.lexists(outbox / "linked-1")
    assert (elsewhere / "precious.txt").is_file()

    views = listed_views(outbox, [kept, gone, done])
    assert [view.job_id for view in views] == ["kept-1", "done-1"]
    assert views[0].has_scene  # a done job removed from the inbox: its scene stays viewable
    write_gallery(outbox, views, "test")
    assert '<span class="badge state-removed" data-field="state">removed</span>' in (outbox / "index.html").read_text()
    assert {e["job_id"]: e["state"] for e in json.loads((outbox / "jobs.json").read_text())} == {
        "kept-1": "removed", "done-1": "done"}


def test_the_site_publisher_forgets_a_removed_job_whose_folder_was_deleted(tmp_path):
    outbox = tmp_path
    done = status_document("pond-1", "pond", "done")
    other = status_document("shed-1", "shed", "done", created="2026-11-28T10:00:00Z")
    for document in (done, other):
        (outbox / document["job_id"]).mkdir()
    publisher = SitePublisher(outbox, "test", "test", lambda: _no_lock())
    publisher.update([done, other])
    assert (outbox / "pond-1" / "index.html").is_file()
    publisher.update([{**done, "state": "removed"}])  # removed, page kept
    assert _cards(outbox) == {"pond-1": "removed", "shed-1": "done"}
    assert 'data-job-state="removed"' in (outbox / "pond-1" / "index.html").read_text()
    shutil.rmtree(outbox / "pond-1")  # as `instarecon remove` in another process: no new document
    publisher.update([{**other, "message": "changed", "warnings": ["something new"]}])
    assert _cards(outbox) == {"shed-1": "done"} and not (outbox / "pond-1").exists()


class _no_lock:
    def __enter__(self):
        return self

    def __exit__(self, *_):
        return False


def _cards(outbox: Path) -> dict[str, str]:
    text = (outbox / "index.html").read_text()
    return dict(re.findall(r'<li class="card" data-job-id="([^"]+)" data-job-state="([^"]+)">', text))


def _listed(outbox: Path) -> dict[str, str]:
    return {entry["job_id"]: entry["state"] for entry in json.loads((outbox / "jobs.json").read_text())}


def _events(layout, job_id: str) -> list[str]:
    with sqlite3.connect(layout.state / "jobs.sqlite3") as db:
        return [row[0] for row in db.execute(
            "SELECT state FROM job_events WHERE job_id = ? AND kind = 'state' ORDER BY id", (job_id,))]


def _outbox_state(layout, job_id: str) -> str | None:
    try:
        return layout.outbox_status(job_id)["state"]
    except FileNotFoundError:
        return None


# ---- the real daemon


@pytest.mark.slow
def test_a_set_deleted_from_the_inbox_is_removed_and_its_page_stays_but_a_brief_disappearance_is_nothing(tmp_path):
    layout = make_layout(tmp_path, settle_seconds=1.5)
    for name in ("keep", "gone"):
        small_set(layout.inbox / name, ready=True)
    with zipfile.ZipFile(layout.inbox / "pack.zip", "w") as archive:
        for photo in (layout.inbox / "keep").iterdir():
            archive.write(photo, photo.name)
    with DaemonProcess(layout) as daemon:
        for name in ("keep", "gone", "pack.zip"):
            wait_for(state_is(layout, name, "done"), 60, f"{name} to be done")
        pack = layout.status("pack.zip")["job_id"]
        aside = layout.inbox / ".gone.uploading"
        (layout.inbox / "gone").rename(aside)  # away and back, as an upload tool may do
        time.sleep(0.5)
        aside.rename(layout.inbox / "gone")
        time.sleep(3.0)  # twice the settle time
        assert layout.status("gone")["state"] == "done" and layout.status("gone")["job_id"] == "gone-1"

        deleted = time.monotonic()
        shutil.rmtree(layout.inbox / "gone")
        wait_for(lambda: _outbox_state(layout, "gone-1") == "removed", 20, "gone-1 to be removed")
        assert time.monotonic() - deleted >= 1.5 - 0.1  # not before it has been missing for the settle time
        assert not (layout.inbox / "gone").exists()  # not made again for its status.json
        wait_for(lambda: _cards(layout.outbox).get("gone-1") == "removed", 20, "the gallery to show it removed")
        (layout.inbox / "pack.zip").unlink()
        wait_for(lambda: _outbox_state(layout, pack) == "removed", 20, "the zip's job to be removed")
        assert not (layout.inbox / "pack.zip.status.json").exists()  # ours, beside a zip that is gone
        wait_for(lambda: _listed(layout.outbox).get(pack) == "removed", 20, "jobs.json to show it removed")
        assert _listed(layout.outbox) == {"keep-1": "done", "gone-1": "removed", pack: "removed"}
        page = (layout.outbox / "gone-1" / "index.html").read_text()
        assert 'data-job-state="removed"' in page and "job-status.js" not in page
        assert layout.status("keep")["state"] == "done"

        small_set(layout.inbox / "gone", ready=True)  # the same photos, back: a new set
        back = wait_for(state_is(layout, "gone", "done"), 60, "the set back in the inbox to run")
        assert back["job_id"] == "gone-2", daemon.log()
        assert daemon.stop() == 0
    assert _events(layout, "gone-1") == ["waiting", "queued", "running", "done", "removed"]


@pytest.mark.slow
def test_unpublish_removed_deletes_the_page_and_the_gallery_forgets_the_job(tmp_path):
    layout = make_layout(tmp_path, unpublish_removed=True)
    for name in ("keep", "gone"):
        small_set(layout.inbox / name, ready=True)
    with DaemonProcess(layout) as daemon:
        for name in ("keep", "gone"):
            wait_for(state_is(layout, name, "done"), 60, f"{name} to be done")
        wait_for(lambda: set(_cards(layout.outbox)) == {"keep-1", "gone-1"}, 20, "the gallery to list both")
        shutil.rmtree(layout.inbox / "gone")
        wait_for(lambda: not (layout.outbox / "gone-1").exists(), 20, "the page of gone-1 to be deleted")
        wait_for(lambda: _cards(layout.outbox) == {"keep-1": "done"}, 20, "the gallery to forget gone-1")
        assert _listed(layout.outbox) == {"keep-1": "done"}
        time.sleep(2.0)  # more passes: nothing brings it back
        assert not (layout.outbox / "gone-1").exists(), daemon.log()
        assert daemon.stop() == 0
    shown = run_cli(layout, "status", "gone-1", "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["state"] == "removed"


@pytest.mark.slow
def test_an_emptied_or_vanished_inbox_removes_nothing(tmp_path):
    layout = make_layout(tmp_path, rescan_interval_seconds=1.0)
    for name in ("one", "two"):
        small_set(layout.inbox / name, ready=True)
    with DaemonProcess(layout) as daemon:
        for name in ("one", "two"):
            wait_for(state_is(layout, name, "done"), 60, f"{name} to be done")
        for name in ("one", "two"):
            shutil.rmtree(layout.inbox / name)  # an empty inbox: what a dropped share's mount point shows
        wait_for(lambda: "is empty" in daemon.log(), 20, "the daemon to warn of an empty inbox")
        time.sleep(3.0)
        layout.inbox.rmdir()  # and now no inbox at all
        wait_for(lambda: "cannot be read" in daemon.log(), 20, "the daemon to warn of a missing inbox")
        time.sleep(3.0)
        assert {_outbox_state(layout, job) for job in ("one-1", "two-1")} == {"done"}, daemon.log()

        layout.inbox.mkdir()  # the share is back, with a new set in it: now the two are gone for real
        small_set(layout.inbox / "three", ready=True)
        wait_for(lambda: _outbox_state(layout, "three-1") == "done", 60, "the new set to run")
        for job in ("one-1", "two-1"):
            wait_for(lambda: _outbox_state(layout, job) == "removed", 20, f"{job} to be removed")
        assert daemon.stop() == 0


@pytest.mark.slow
def test_a_running_job_whose_set_is_deleted_is_stopped_then_removed(tmp_path):
    layout = make_layout(tmp_path)
    (layout.inbox / "notes.txt").write_text("keeps the inbox from looking unmounted")
    small_set(layout.inbox / "slow", ready=True)
    (layout.inbox / "slow" / "job.toml").write_text("iterations = 600\n")
    with DaemonProcess(layout, paced=True) as daemon:
        wait_for(lambda: (layout.status("slow") or {}).get("stage") == "sfm", 60, "the sfm stage to start")
        started = time.monotonic()
        # Deleted as a file manager does, to its trash: one rename. (An rmtree here races the status.json
        # the daemon keeps rewriting inside a running set: a new temporary name between rmtree's listing
        # and its rmdir fails it with "Directory not empty", as it would fail a person's rm -rf.)
        trash = tmp_path / "trash"
        trash.mkdir()
        (layout.inbox / "slow").rename(trash / "slow")
        wait_for(lambda: _outbox_state(layout, "slow-1") == "removed", 30, "slow-1 to be stopped and removed")
        assert time.monotonic() - started < 30  # 600 steps of the paced stage would take 60 s
        document = layout.outbox_status("slow-1")
        assert document["stages"]["sfm"]["state"] == "cancelled", daemon.log()
        assert daemon.stop() == 0
    assert _events(layout, "slow-1")[-2:] == ["cancelled", "removed"]


# ---- instarecon remove


@pytest.mark.slow
def test_instarecon_remove_deletes_the_page_only_with_yes_and_the_gallery_forgets_it_without_a_daemon(tmp_path):
    layout = make_layout(tmp_path)
    for name in ("keep", "old"):
        small_set(layout.inbox / name, ready=True)
    with DaemonProcess(layout, until_idle=True) as daemon:
        assert daemon.wait(120) == 0, daemon.log()
    assert _listed(layout.outbox) == {"keep-1": "done", "old-1": "done"}
    page = layout.outbox / "old-1"
    outbox_before = file_states(layout.outbox, folders=True)
    inbox_before = file_states(layout.inbox, folders=True)

    asked = run_cli(layout, "remove", "old-1")
    assert asked.returncode != 0
    assert str(page) in asked.stdout and "index.html" in asked.stdout and "--yes" in asked.stdout
    assert file_states(layout.outbox, folders=True) == outbox_before  # nothing deleted, nothing written
    assert json.loads(run_cli(layout, "status", "old-1", "--json").stdout)["state"] == "done"

    done = run_cli(layout, "remove", "old-1", "--yes")
    assert done.returncode == 0, done.stderr
    assert not page.exists()
    assert _listed(layout.outbox) == {"keep-1": "done"} and _cards(layout.outbox) == {"keep-1": "done"}
    assert (layout.outbox / "keep-1" / "index.html").is_file() and (layout.outbox / "keep-1" / "status.json").is_file()
    assert json.loads(run_cli(layout, "status", "old-1", "--json").stdout)["state"] == "removed"
    assert file_states(layout.inbox, folders=True) == inbox_before  # the inbox is never touched
    again = run_cli(layout, "remove", "old-1", "--yes")
    assert again.returncode == 0 and "already removed" in again.stdout
    missing = run_cli(layout, "remove", "nothing-1", "--yes")
    assert missing.returncode == 1 and "no job" in missing.stderr

    with DaemonProcess(layout, until_idle=True) as daemon:  # the daemon's first pass over every job
        assert daemon.wait(60) == 0, daemon.log()
    assert not page.exists()  # not made again
    assert _listed(layout.outbox) == {"keep-1": "done"}
    assert layout.status("old")["state"] == "removed"  # beside the set, which stays: no new attempt
    assert layout.status("old")["job_id"] == "old-1"


@pytest.mark.slow
def test_instarecon_remove_refuses_a_running_job_and_takes_it_once_cancelled(tmp_path):
    layout = make_layout(tmp_path)
    small_set(layout.inbox / "slow", ready=True)
    (layout.inbox / "slow" / "job.toml").write_text("iterations = 600\n")
    with DaemonProcess(layout, paced=True) as daemon:
        wait_for(lambda: (layout.status("slow") or {}).get("stage") == "sfm", 60, "the sfm stage to start")
        refused = run_cli(layout, "remove", "slow-1", "--yes")
        assert refused.returncode == 1 and "cancel it first" in refused.stderr
        assert (layout.outbox / "slow-1" / "status.json").is_file()
        assert layout.status("slow")["state"] == "running"

        assert run_cli(layout, "cancel", "slow-1").returncode == 0
        wait_for(state_is(layout, "slow", "cancelled"), 30, "the job to be cancelled")
        removed = run_cli(layout, "remove", "slow-1", "--yes")
        assert removed.returncode == 0, removed.stderr
        assert not (layout.outbox / "slow-1").exists()
        wait_for(state_is(layout, "slow", "removed"), 20, "status.json beside the set to say removed")
        time.sleep(1.5)  # the daemon's passes after the removal bring nothing back
        assert not (layout.outbox / "slow-1").exists(), daemon.log()
        assert "slow-1" not in _listed(layout.outbox)
        assert daemon.stop() == 0
