"""Retention of work folders (daemon/jobs/retention.py) on real folders and real job stores, with a
clock the test sets: what goes, what stays (outbox, inbox, unfinished jobs, whatever a link points
at), and how it is recorded so that status.json names no file that is gone. Store-level tests run
on SQLite and PostgreSQL (the ``database_url`` fixture); one test runs the real daemon."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select, text

from daemon.config import Settings
from daemon.jobs.retention import WorkFolderRetention
from daemon.report.status_document import build_status, outbox_copy
from daemon.run.disk_guard import disk_usage
from daemon.store import JobState, open_store
from daemon.store.tables import work_removals
from stages.registry import PIPELINE
from tests.daemon_harness import DaemonProcess, make_layout, validate_status, wait_for, work_folders
from tests.file_states import file_states
from tests.photo_sets import small_set

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)
OUTPUTS = {"ingest.images": "ingest/images", "ingest.manifest": "ingest/manifest.json"}


def _job(store, name: str, state: JobState, finished_ago: timedelta | None = None, outputs=OUTPUTS):
    """A job in ``state``, ended ``finished_ago`` before NOW. Jobs not finished get an ancient
    finished_at too (no real one has any), so that only their state keeps them."""
    start = JobState.WAITING if state == JobState.WAITING else JobState.QUEUED
    job = store.create_job(set_name=name, source_path=Path("/inbox") / name, source_kind="folder",
                           fingerprint="f" * 64, state=start, message="m")
    if state in (JobState.RUNNING, JobState.DONE):
        assert store.transition(job.id, JobState.RUNNING, "started", host=store.host, lease_owner=store.process)
    if state not in (JobState.WAITING, JobState.QUEUED, JobState.RUNNING):
        assert store.transition(job.id, state, f"ended {state}")
    store.update_fields(job.id, finished_at=NOW - (finished_ago or 400 * DAY), outputs=dict(outputs or {}))
    job = store.get(job.id)
    assert job.state == state
    return job


def _work_folder(jobs_dir: Path, job_id: str, files: int = 3) -> Path:
    folder = jobs_dir / job_id
    (folder / "ingest" / "images").mkdir(parents=True)
    for index in range(files):
        (folder / "ingest" / "images" / f"{index:03d}.jpg").write_bytes(os.urandom(5000))
    (folder / "ingest" / "manifest.json").write_text("{}")
    (folder / "job.log").write_text("a log line\n")
    return folder


def _retention(store, state: Path, at: datetime = NOW, **settings) -> WorkFolderRetention:
    return WorkFolderRetention.for_settings(Settings(state=state, **settings), store, now=lambda: at)


def _removal_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "instarecon" and "removed work folder" in r.getMessage()]


def test_finished_jobs_go_after_their_keep_time_and_unfinished_jobs_never(opened, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="instarecon")
    store, state = opened(), tmp_path / "state"
    jobs_dir = state / "jobs"
    jobs = {
        "done-old": _job(store, "done-old", JobState.DONE, 7 * DAY + timedelta(minutes=1)),
        "done-young": _job(store, "done-young", JobState.DONE, 6.9 * DAY),
        "cancelled-old": _job(store, "cancelled-old", JobState.CANCELLED, 7.1 * DAY),
        "removed-old": _job(store, "removed-old", JobState.REMOVED, 7.1 * DAY),  # its set left the inbox
        "failed-old": _job(store, "failed-old", JobState.FAILED, 30 * DAY + timedelta(minutes=1)),
        "failed-8d": _job(store, "failed-8d", JobState.FAILED, 8 * DAY),
        "running": _job(store, "running", JobState.RUNNING),
        "queued": _job(store, "queued", JobState.QUEUED),
        "waiting": _job(store, "waiting", JobState.WAITING),
    }
    folders = {name: _work_folder(jobs_dir, job.id) for name, job in jobs.items()}
    sizes = {name: disk_usage(folder) for name, folder in folders.items()}

    outcome = _retention(store, state).run()

    gone = {"done-old", "cancelled-old", "removed-old", "failed-old"}
    assert {name for name, folder in folders.items() if not folder.exists()} == gone
    assert outcome.removed == {jobs[name].id: sizes[name] for name in gone}
    assert sizes["done-old"] > 15000  # three 5 kB photos at least
    assert not (outcome.failed or outcome.refused or outcome.already_gone or outcome.skipped)
    for name, job in jobs.items():
        document = validate_status(build_status(store.get(job.id), PIPELINE, work_folders(store.get(job.id), jobs_dir)))
        if name in gone:
            assert document["outputs"] == {}
            (note,) = document["warnings"]
            assert note.startswith("work folder removed on 2026-06-01, ") and "after the job ended" in note
            assert "keep_" not in note  # the person cannot change it; the journal names it (below)
        else:
            assert document["outputs"] == {key: str(folders[name] / path) for key, path in OUTPUTS.items()}
            assert document["warnings"] == []
            assert store.get(job.id).updated_at == job.updated_at  # not written at all
    lines = _removal_lines(caplog)
    assert len(lines) == 4
    for name in gone:
        assert [line for line in lines if str(folders[name]) in line and f"{sizes[name]:,} bytes" in line]

    # Again at once: nothing more. 1.2 days later: the young done job's turn, not yet the 8-day failure's.
    assert _retention(store, state).run().removed == {}
    later = _retention(store, state, NOW + 1.2 * DAY).run()
    assert later.removed == {jobs["done-young"].id: sizes["done-young"]}
    assert folders["failed-8d"].exists() and all(folders[n].exists() for n in ("running", "queued", "waiting"))
    with store.engine.connect() as connection:
        rows = connection.execute(select(work_removals)).all()
    assert sorted(row.job_id for row in rows) == sorted(jobs[n].id for n in (*gone, "done-young"))
    assert all(row.outputs == OUTPUTS and row.host == store.host and row.bytes_freed > 0 for row in rows)


def test_keep_times_come_from_the_settings(opened, tmp_path):
    store, state = opened(), tmp_path / "state"
    done = _job(store, "d", JobState.DONE, 2 * DAY)
    failed = _job(store, "f", JobState.FAILED, 2 * DAY)
    for job in (done, failed):
        _work_folder(state / "jobs", job.id)
    assert _retention(store, state, keep_work_days=2.5, keep_failed_days=1.5).run().removed.keys() == {failed.id}
    assert _retention(store, state, keep_work_days=1.5).run().removed.keys() == {done.id}


def test_outbox_and_inbox_stay_byte_for_byte_even_when_the_work_folder_links_to_them(tmp_path):
    inbox, outbox, state = tmp_path / "inbox", tmp_path / "outbox", tmp_path / "state"
    small_set(inbox / "kermit", ready=True)
    state.mkdir()
    store = open_store(f"sqlite:///{state / 'jobs.sqlite3'}")
    try:
        job = _job(store, "kermit", JobState.DONE, 10 * DAY)
        folder = _work_folder(state / "jobs", job.id)
        (outbox / job.id).mkdir(parents=True)
        for name in ("scene.ply", "scene.splat", "cameras.json", "poster.jpg"):
            (outbox / job.id / name).write_bytes(os.urandom(3000))
        public = outbox_copy(build_status(job, PIPELINE, work_folders(job, state / "jobs")), outbox / job.id)  # as the daemon writes it
        (outbox / job.id / "status.json").write_text(json.dumps(public))
        (folder / "photos").symlink_to(inbox / "kermit")  # links out of the work folder: removed, not followed
        (folder / "published").symlink_to(outbox / job.id)
        (folder / "scene.ply").hardlink_to(outbox / job.id / "scene.ply")
        before_inbox, before_outbox = file_states(inbox), file_states(outbox)

        assert _retention(store, state).run().removed.keys() == {job.id}
    finally:
        store.engine.dispose()
    assert not folder.exists() and folder.parent.is_dir()
    assert file_states(inbox) == before_inbox and len(before_inbox) >= 5
    assert file_states(outbox) == before_outbox


def test_a_link_in_the_jobs_folder_is_never_followed_and_unknown_folders_stay(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="instarecon")
    state, elsewhere = tmp_path / "state", tmp_path / "precious"
    state.mkdir()
    store = open_store(f"sqlite:///{state / 'jobs.sqlite3'}")
    try:
        linked = _job(store, "linked", JobState.DONE, 10 * DAY)
        normal = _job(store, "normal", JobState.DONE, 10 * DAY)
        _work_folder(tmp_path, "precious")
        jobs_dir = state / "jobs"
        jobs_dir.mkdir()
        (jobs_dir / linked.id).symlink_to(elsewhere, target_is_directory=True)
        (jobs_dir / "stranger-1").symlink_to(elsewhere, target_is_directory=True)
        orphan = _work_folder(jobs_dir, "forgotten-3")
        _work_folder(jobs_dir, normal.id)
        before = file_states(elsewhere)
        retention = _retention(store, state)

        first, second = retention.run(), retention.run()
    finally:
        store.engine.dispose()
    assert first.removed.keys() == {normal.id} and first.refused == second.refused == [linked.id]
    assert file_states(elsewhere) == before and (jobs_dir / linked.id).is_symlink() and (jobs_dir / "stranger-1").is_symlink()
    assert orphan.is_dir() and file_states(orphan)
    assert build_status(store.get(linked.id), PIPELINE, work_folders(store.get(linked.id), jobs_dir))["outputs"]  # nothing recorded for it
    refusals = [r for r in caplog.records if "symbolic link" in r.getMessage()]
    assert len(refusals) == 1 and refusals[0].levelno == logging.WARNING  # once a run, not every pass
    unknown = [r.getMessage() for r in caplog.records if "belongs to no job" in r.getMessage()]
    assert sorted(unknown) == sorted(f"{jobs_dir / n} belongs to no job in the store; retention leaves it alone "
                                     "(remove it by hand if nothing needs it)" for n in ("forgotten-3", "stranger-1"))


def test_a_jobs_folder_that_is_itself_a_link_to_another_disk_works(tmp_path):
    """An operator may put state/jobs on a bigger disk with a link: its folders are still ours."""
    state, big_disk = tmp_path / "state", tmp_path / "big-disk"
    state.mkdir()
    big_disk.mkdir()
    (state / "jobs").symlink_to(big_disk, target_is_directory=True)
    store = open_store(f"sqlite:///{state / 'jobs.sqlite3'}")
    try:
        job = _job(store, "far", JobState.DONE, 9 * DAY)
        folder = _work_folder(big_disk, job.id)
        assert _retention(store, state).run().removed.keys() == {job.id}
    finally:
        store.engine.dispose()
    assert not folder.exists() and big_disk.is_dir() and (state / "jobs").is_symlink()


def test_a_folder_already_gone_is_recorded_quietly(opened, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="instarecon")
    store, state = opened(), tmp_path / "state"
    removed_by_hand = _job(store, "by-hand", JobState.DONE, 8 * DAY)
    never_ran = _job(store, "never-ran", JobState.CANCELLED, 8 * DAY, outputs={})
    present = _job(store, "present", JobState.FAILED, 31 * DAY)
    folder = _work_folder(state / "jobs", present.id)

    outcome = _retention(store, state).run()

    assert outcome.removed.keys() == {present.id} and not folder.exists()
    assert sorted(outcome.already_gone) == sorted([removed_by_hand.id, never_ran.id]) and not outcome.failed
    by_hand = store.get(removed_by_hand.id)
    assert by_hand.outputs == {} and by_hand.warnings == ("work folder found gone on 2026-06-01; what was published "
                                                          "to the outbox stays",)
    assert store.get(never_ran.id).warnings == () and store.get(never_ran.id).updated_at == never_ran.updated_at
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert _retention(store, state).run().already_gone == []  # recorded: not looked at again


@contextlib.contextmanager
def _as_unprivileged(owned: list[Path]):
    """Run the block where mode bits hold: as root, with the effective user nobody (``owned``
    handed to nobody first; the rest stays root's); as anyone else, as is."""
    if os.geteuid() != 0:
        yield
        return
    nobody = pwd.getpwnam("nobody")
    for path in owned:
        os.lchown(path, nobody.pw_uid, nobody.pw_gid)
    os.setegid(nobody.pw_gid)
    os.seteuid(nobody.pw_uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def test_a_folder_that_cannot_be_removed_is_named_and_the_others_go_on(caplog):
    caplog.set_level(logging.INFO, logger="instarecon")
    base = Path(tempfile.mkdtemp(prefix="retention-permissions-"))  # not under pytest's root-only folder
    try:
        os.chmod(base, 0o755)
        state = base / "state"
        state.mkdir()
        store = open_store(f"sqlite:///{state / 'jobs.sqlite3'}")
        stuck = _job(store, "stuck", JobState.DONE, 9 * DAY)
        fine = [_job(store, name, JobState.DONE, 9 * DAY) for name in ("alpha", "omega")]
        stuck_folder = _work_folder(state / "jobs", stuck.id)
        fine_folders = [_work_folder(state / "jobs", job.id) for job in fine]
        store.engine.dispose()  # connections are made again by the unprivileged user
        owned = [state, *state.glob("jobs.sqlite3*"), state / "jobs",
                 *[path for folder in fine_folders for path in (folder, *folder.rglob("*"))]]
        os.chmod(stuck_folder / "ingest" / "images", 0o555)  # its photos cannot be unlinked: a real EACCES
        try:
            with _as_unprivileged(owned):
                outcome = _retention(store, state).run()
        finally:
            os.chmod(stuck_folder / "ingest" / "images", 0o755)
        assert outcome.failed == [stuck.id] and outcome.removed.keys() == {job.id for job in fine}
        assert not any(folder.exists() for folder in fine_folders)
        assert (stuck_folder / "ingest" / "images" / "000.jpg").exists()
        problems = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(problems) == 1 and "could not be removed" in problems[0] and "Permission denied" in problems[0]
        assert store.get(stuck.id).outputs == OUTPUTS  # not recorded: the next pass tries again
        assert _retention(store, state).run().removed.keys() == {stuck.id} and not stuck_folder.exists()
        store.engine.dispose()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_two_daemons_at_once_remove_each_folder_once_and_record_it_once(opened, tmp_path, database_url):
    state = tmp_path / "state"
    first, second = opened(host="gpu-1"), opened(host="gpu-2")
    jobs = [_job(first, f"set{i}", JobState.DONE, 9 * DAY) for i in range(12)]
    folders = [_work_folder(state / "jobs", job.id, files=150) for job in jobs]
    runners = [_retention(first, state), _retention(second, state)]

    # The pass lock: while one daemon holds it, the other skips its pass and changes nothing.
    with runners[0]._pass_lock() as held:
        assert held
        skipped = runners[1].run()
    assert skipped.skipped and all(folder.exists() for folder in folders)

    if database_url.startswith("sqlite"):  # a lock that does not hold (an NFS without locking): passes overlap
        runners[1] = WorkFolderRetention(second, state / "jobs", 7 * DAY, 30 * DAY, now=lambda: NOW,
                                         lock_file=tmp_path / "another.lock")
    outcomes = [None, None]

    def run(index):
        outcomes[index] = runners[index].run()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not any(folder.exists() for folder in folders)
    assert all(not o.failed and not o.refused for o in outcomes)
    assert set(outcomes[0].removed) | set(outcomes[1].removed) | set(outcomes[0].already_gone) | set(
        outcomes[1].already_gone) == {job.id for job in jobs}
    with first.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM work_removals")).scalar_one() == len(jobs)
    for job in jobs:
        assert len(first.get(job.id).warnings) == 1


def test_the_store_records_a_removal_once_and_only_for_finished_jobs(opened):
    first, second = opened(host="gpu-1"), opened(host="gpu-2")
    done = _job(first, "done", JobState.DONE, 9 * DAY)
    running = _job(first, "running", JobState.RUNNING)
    assert first.record_work_removed(done.id, NOW, 1234, "note")
    assert not second.record_work_removed(done.id, NOW, 99, "another note")
    assert second.get(done.id).warnings == ("note",) and second.get(done.id).outputs == {}
    assert not first.record_work_removed(running.id, NOW, 1, "no") and first.get(running.id).outputs == OUTPUTS
    assert not first.record_work_removed("no-such-job-1", NOW, 1, "no")
    assert [job.id for job in first.finished_before([JobState.DONE], NOW)] == []  # recorded: not offered again
    with pytest.raises(ValueError, match="running"):
        first.finished_before([JobState.RUNNING], NOW)


def test_a_failing_pass_is_logged_and_never_raises(tmp_path, caplog):
    state = tmp_path / "state"
    state.mkdir()
    store = open_store(f"sqlite:///{state / 'jobs.sqlite3'}")
    try:
        job = _job(store, "kept", JobState.DONE, 9 * DAY)
        folder = _work_folder(state / "jobs", job.id)
        with store.engine.begin() as connection:
            connection.execute(text("DROP TABLE work_removals"))
        retention = _retention(store, state)
        assert retention() is None
    finally:
        store.engine.dispose()
    failures = [r for r in caplog.records if r.getMessage().startswith("work folder retention failed")]
    assert len(failures) == 1 and failures[0].levelno == logging.ERROR and failures[0].exc_info
    assert folder.exists()


@pytest.mark.skipif(shutil.which("du") is None, reason="needs du (coreutils)")
def test_bytes_freed_are_what_du_counts(tmp_path):
    folder = _work_folder(tmp_path, "sized-1", files=7)
    (folder / "big.bin").write_bytes(os.urandom(300_000))
    (folder / "again.bin").hardlink_to(folder / "big.bin")
    (folder / "out").symlink_to(tmp_path.parent, target_is_directory=True)  # never entered
    du = subprocess.run(["du", "-s", "-B1", str(folder)], capture_output=True, text=True, check=True)
    assert disk_usage(folder) == int(du.stdout.split()[0]) > 300_000


@pytest.mark.slow
def test_the_daemon_removes_old_work_folders_shortly_after_it_starts(tmp_path):
    """The real daemon: a set runs (ingest only), then a daemon started with keep_work_days of
    under a second removes its work folder in its first pass, and status.json says so."""
    layout = make_layout(tmp_path, keep_work_days=1e-5)
    photos = small_set(layout.inbox / "kermit", ready=True)
    with DaemonProcess(layout, until_idle=True) as first:
        assert first.wait(120) == 0, first.log()
    done = layout.status("kermit")
    assert done["state"] == "done" and done["outputs"] and done["warnings"] == []
    folder = layout.state / "jobs" / done["job_id"]
    assert all(Path(path).exists() for path in done["outputs"].values())
    published = layout.outbox / done["job_id"] / "scene.ply"
    published.write_bytes(os.urandom(4000))  # as publish would have left it
    kept = {path: path.read_bytes() for path in [*photos, published]}

    started = time.monotonic()
    with DaemonProcess(layout) as second:
        document = wait_for(lambda: (d := layout.status("kermit")) and not d["outputs"] and d, 60,
                            "status.json without outputs")
        took = time.monotonic() - started
        assert second.stop() == 0, second.log()
    log = second.log()
    assert not folder.exists() and (layout.state / "jobs").is_dir()
    assert [w for w in document["warnings"] if w.startswith("work folder removed on ") and "after the job ended" in w]
    assert layout.outbox_status(done["job_id"])["outputs"] == {}
    assert f"removed work folder {folder}" in log and "freed" in log
    assert {path: path.read_bytes() for path in kept} == kept
    assert took < 45, f"the first pass came {took:.0f} s after the start"
