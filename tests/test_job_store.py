"""The job store on real SQLite: transitions, atomic claims, the event log, migrations."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from daemon.store import JobState, open_store
from daemon.store.job_ids import job_id_for
from daemon.store.states import ALLOWED_FROM


def _store(tmp_path: Path, name: str = "jobs.sqlite3"):
    return open_store(f"sqlite:///{tmp_path / name}")


def _job(store, set_name="kermit", state=JobState.QUEUED):
    return store.create_job(set_name=set_name, source_path=Path("/inbox") / set_name, source_kind="folder",
                            fingerprint="f" * 64, state=state, message="m")


def test_attempts_count_up_per_set_and_ids_are_readable(tmp_path):
    store = _store(tmp_path)
    assert _job(store).id == "kermit-1"
    assert _job(store).id == "kermit-2"
    assert _job(store, "et").id == "et-1"
    assert job_id_for("My Trip/Day 1", 3).startswith("My-Trip-Day-1-") and job_id_for("My Trip/Day 1", 3).endswith("-3")
    assert job_id_for("My Trip/Day 1", 1) != job_id_for("My_Trip_Day_1", 1)


def test_only_allowed_transitions_happen_and_each_is_logged(tmp_path):
    store = _store(tmp_path)
    job = _job(store, state=JobState.WAITING)
    assert not store.transition(job.id, JobState.DONE, "skip ahead")  # waiting -> done is not allowed
    assert store.transition(job.id, JobState.QUEUED, "complete")
    claimed = store.claim_next()
    assert claimed.id == job.id and claimed.state == JobState.RUNNING and claimed.host == store.host
    assert store.transition(job.id, JobState.DONE, "finished")
    for target in JobState:
        assert not store.transition(job.id, target, "terminal jobs never change")
    states = [event["state"] for event in store.events(job.id) if event["kind"] == "state"]
    assert states == ["waiting", "queued", "running", "done"]
    assert store.get(job.id).finished_at is not None
    assert all(JobState.DONE not in sources for sources in [ALLOWED_FROM[s] for s in JobState])


def test_claims_are_atomic_under_concurrency(tmp_path):
    store = _store(tmp_path)
    created = {_job(store, f"set{i}").id for i in range(30)}
    claimed: list[str] = []
    lock = threading.Lock()

    def claimer(other):
        while (job := other.claim_next()) is not None:
            with lock:
                claimed.append(job.id)

    # each with its own engine, as another process would have
    threads = [threading.Thread(target=claimer, args=(_store(tmp_path),)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(created)  # each exactly once


def test_claim_takes_the_oldest_queued_job_and_interrupted_jobs_keep_their_place(tmp_path):
    store = _store(tmp_path)
    first, second = _job(store, "a"), _job(store, "b")
    running = store.claim_next()
    assert running.id == first.id
    requeued = store.requeue_interrupted()
    assert [job.id for job in requeued] == [first.id]
    assert store.claim_next().id == first.id  # still ahead of b
    assert store.claim_next().id == second.id


def test_cancel_is_immediate_when_not_running_and_requested_when_running(tmp_path):
    store = _store(tmp_path)
    waiting = _job(store, "w", state=JobState.WAITING)
    assert store.request_cancel(waiting.id, "stop").state == JobState.CANCELLED
    queued = _job(store, "r")
    store.claim_next()
    running = store.request_cancel(queued.id, "stop please")
    assert running.state == JobState.RUNNING and running.cancel_requested and running.cancel_reason == "stop please"


def test_reopening_an_existing_database_keeps_its_jobs_at_the_newest_schema(tmp_path):
    store = _store(tmp_path)
    job = _job(store)
    store.engine.dispose()
    again = _store(tmp_path)
    assert again.get(job.id).set_name == "kermit"
    with again.engine.connect() as connection:
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        journal_mode = connection.execute(text("PRAGMA journal_mode")).scalar_one()
    assert version == "0001"
    assert journal_mode == "wal"
    assert {"jobs", "job_events", "alembic_version"} <= set(inspect(again.engine).get_table_names())


def test_a_set_and_attempt_is_one_job(tmp_path):
    store = _store(tmp_path)
    _job(store)
    with pytest.raises(Exception):
        with store.engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO jobs (id, set_name, source_path, source_kind, fingerprint, attempt, state, progress, "
                "message, metrics, outputs, warnings, stages, cancel_requested, created_at, updated_at) VALUES "
                "('dup', 'kermit', '/x', 'folder', 'f', 1, 'queued', 0, '', '{}', '{}', '[]', '{}', 0, "
                "'2026-01-01', '2026-01-01')"
            ))
