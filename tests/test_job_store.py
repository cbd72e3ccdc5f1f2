"""The job store on real databases: transitions, atomic claims, the event log, migrations. Each
test runs on SQLite (the single-host default) and on PostgreSQL (a throwaway cluster,
tests/postgres_server.py) through the ``database_url`` fixture, except those about one database's
specifics."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import insert, inspect, text
from sqlalchemy.exc import IntegrityError

from daemon.jobs.records import JobError
from daemon.store import JobState, open_store
from daemon.store.job_ids import job_id_for
from daemon.store.job_store import make_engine
from daemon.store.migrate import alembic_config
from daemon.store.states import ALLOWED_FROM
from daemon.store.tables import jobs
from tests.postgres_server import require_psycopg
from tests.test_job_leases import claim_in_a_process


def _job(store, set_name="kermit", state=JobState.QUEUED):
    return store.create_job(set_name=set_name, source_path=Path("/inbox") / set_name, source_kind="folder",
                            fingerprint="f" * 64, state=state, message="m")


def test_attempts_count_up_per_set_and_ids_are_readable(opened):
    store = opened()
    assert _job(store).id == "kermit-1"
    assert _job(store).id == "kermit-2"
    assert _job(store, "et").id == "et-1"
    assert job_id_for("My Trip/Day 1", 3).startswith("My-Trip-Day-1-") and job_id_for("My Trip/Day 1", 3).endswith("-3")
    assert job_id_for("My Trip/Day 1", 1) != job_id_for("My_Trip_Day_1", 1)


def test_only_allowed_transitions_happen_and_each_is_logged(opened):
    store = opened()
    job = _job(store, state=JobState.WAITING)
    assert not store.transition(job.id, JobState.DONE, "skip ahead")  # waiting -> done is not allowed
    assert store.transition(job.id, JobState.QUEUED, "complete")
    claimed = store.claim_next()
    assert claimed.id == job.id and claimed.state == JobState.RUNNING and claimed.host == store.host
    assert store.transition(job.id, JobState.DONE, "finished")
    for target in set(JobState) - {JobState.REMOVED}:
        assert not store.transition(job.id, target, "terminal jobs never change, but to removed")
    finished_at = store.get(job.id).finished_at
    assert finished_at is not None
    assert store.mark_removed(job.id, "its set left the inbox")
    for target in JobState:
        assert not store.transition(job.id, target, "a removed job never changes")
    states = [event["state"] for event in store.events(job.id) if event["kind"] == "state"]
    assert states == ["waiting", "queued", "running", "done", "removed"]
    assert store.get(job.id).finished_at == finished_at  # when it ended, not when it was removed
    assert all(JobState.DONE not in ALLOWED_FROM[s] for s in set(JobState) - {JobState.REMOVED})
    assert all(JobState.REMOVED not in sources for sources in ALLOWED_FROM.values())


def test_claims_are_atomic_under_concurrency(opened):
    store = opened()
    created = {_job(store, f"set{i}").id for i in range(30)}
    claimed: list[str] = []
    lock = threading.Lock()

    def claimer(other):
        while (job := other.claim_next()) is not None:
            with lock:
                claimed.append(job.id)

    # each with its own engine, as another process would have (processes: test_job_store_concurrency.py)
    threads = [threading.Thread(target=claimer, args=(opened(),)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(created)  # each exactly once


def test_claim_takes_the_oldest_queued_job_and_interrupted_jobs_keep_their_place(opened, database_url):
    store = opened()
    first, second = _job(store, "a"), _job(store, "b")
    claim_in_a_process(database_url, store.host, exits=True)  # a daemon that claimed it, then died
    assert store.get(first.id).state == JobState.RUNNING
    requeued = store.requeue_orphans(name_was_free=True)
    assert [job.id for job in requeued] == [first.id]
    assert store.claim_next().id == first.id  # still ahead of b
    assert store.claim_next().id == second.id


def test_a_claim_can_pass_over_jobs_that_keep_their_place(opened):
    store = opened()
    waiting, behind = _job(store, "big"), _job(store, "small")  # big waits for this daemon's disk space
    assert store.claim_next(pass_over={waiting.id}).id == behind.id
    assert store.claim_next(pass_over={waiting.id}) is None
    assert store.claim_next().id == waiting.id  # still queued, in its place, for the next claim


def test_cancel_is_immediate_when_not_running_and_requested_when_running(opened):
    store = opened()
    waiting = _job(store, "w", state=JobState.WAITING)
    assert store.request_cancel(waiting.id, "stop").state == JobState.CANCELLED
    queued = _job(store, "r")
    store.claim_next()
    running = store.request_cancel(queued.id, "stop please")
    assert running.state == JobState.RUNNING and running.cancel_requested and running.cancel_reason == "stop please"


def test_reopening_an_existing_database_keeps_its_jobs_at_the_newest_schema(opened):
    store = opened()
    job = _job(store)
    store.engine.dispose()
    again = opened()
    assert again.get(job.id).set_name == "kermit"
    with again.engine.connect() as connection:
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    assert version == ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert {"jobs", "job_events", "alembic_version"} <= set(inspect(again.engine).get_table_names())


def test_a_set_and_attempt_is_one_job(opened):
    store = opened()
    _job(store)
    now = datetime.now(timezone.utc)
    duplicate = "uq_jobs_set_attempt|UNIQUE constraint failed: jobs.set_name, jobs.attempt"  # PostgreSQL | SQLite
    with pytest.raises(IntegrityError, match=duplicate):
        with store.engine.begin() as connection:
            connection.execute(insert(jobs).values(
                id="dup", set_name="kermit", source_path="/x", source_kind="folder", fingerprint="f", attempt=1,
                state="queued", progress=0.0, message="", metrics={}, outputs={}, warnings=[], stages={},
                cancel_requested=False, created_at=now, updated_at=now,
            ))


def test_times_come_back_as_the_same_instants_in_utc_and_json_fields_round_trip(opened, database_url):
    if database_url.startswith("postgresql"):  # a session time zone far from UTC must not shift anything
        engine = make_engine(database_url)
        with engine.begin() as connection:
            connection.execute(text(f'ALTER DATABASE "{engine.url.database}" SET timezone TO \'Asia/Kathmandu\''))
        engine.dispose()
    store = opened()
    job = _job(store)
    assert job.created_at.tzinfo == timezone.utc and job.queued_at == job.created_at
    moment = datetime(2026, 3, 29, 0, 30, 0, 123456, tzinfo=timezone(timedelta(hours=-7)))
    metrics = {"sfm": {"registered": 24, "mean_reprojection_error": 0.4375, "unregistered": ["ü.jpg", "日本.png"]}}
    store.update_fields(job.id, finished_at=moment, metrics=metrics, warnings=["a \"quoted\" warning"],
                        error=JobError("sfm", "x", None), images=None)
    again = store.get(job.id)
    assert again.finished_at == moment and again.finished_at.tzinfo == timezone.utc
    assert again.finished_at.hour == 7 and again.finished_at.microsecond == 123456
    assert again.metrics == metrics and again.warnings == ('a "quoted" warning',)
    assert again.error == JobError("sfm", "x", None) and again.images is None
    assert [job.id for job in store.changed_since(moment - timedelta(microseconds=1))] == [job.id]
    assert store.changed_since(datetime.now(timezone.utc) + timedelta(seconds=5)) == []
    with pytest.raises(Exception, match="naive datetime"):
        store.update_fields(job.id, finished_at=datetime(2026, 1, 1))


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path):
    """SQLite only: the pragmas make_engine sets on every connection."""
    store = open_store(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    with store.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
    store.engine.dispose()


@pytest.mark.parametrize("written, meant", [
    ("postgresql://u:secret@db.example/instarecon", "postgresql+psycopg"),
    ("postgres://u@db.example:5433/instarecon", "postgresql+psycopg"),
    ("postgresql+psycopg://u@db.example/instarecon", "postgresql+psycopg"),
])
def test_a_plain_postgresql_url_means_psycopg_3_and_an_explicit_driver_is_kept(written, meant):
    """No server needed: creating an engine does not connect."""
    require_psycopg()
    engine = make_engine(written)
    assert engine.url.drivername == meant and engine.dialect.driver == "psycopg"
    assert engine.url.database == "instarecon" and engine.url.password in (None, "secret")


def test_an_explicit_driver_is_kept_even_when_it_is_not_installed():
    try:
        import pg8000  # noqa: F401
    except ModuleNotFoundError:
        with pytest.raises(ModuleNotFoundError, match="no database driver for postgresql\\+pg8000"):
            make_engine("postgresql+pg8000://u@db.example/instarecon")
    else:
        assert make_engine("postgresql+pg8000://u@db.example/instarecon").dialect.driver == "pg8000"


def test_a_daemon_never_puts_back_in_the_queue_a_job_its_own_worker_runs(opened):
    """The race the three-daemon test met under load: daemon 1's inbox pass read the set's job as
    waiting; daemon 2 queued it, daemon 1's worker claimed it; then daemon 1's pass, still thinking
    it waiting, queued it (running -> queued is allowed, for a daemon that stops), and daemon 2 ran
    its ingest beside daemon 1's. A transition names the states its caller saw."""
    mine, other = opened(), opened()
    job = _job(mine, "garden", state=JobState.WAITING)
    seen = mine.latest_for_set("garden")
    assert other.transition(job.id, JobState.QUEUED, "queued (READY marker)", from_states=(JobState.WAITING,))
    assert mine.claim_next().id == job.id
    assert not mine.transition(seen.id, JobState.QUEUED, "queued (READY marker)", from_states=(JobState.WAITING,))
    assert not mine.transition(seen.id, JobState.FAILED, "refused", from_states=(JobState.WAITING, JobState.QUEUED))
    mine.update_fields(seen.id, fingerprint="changed", in_states=(JobState.WAITING, JobState.QUEUED))
    now = mine.get(job.id)
    assert (now.state, now.host, now.fingerprint) == (JobState.RUNNING, mine.host, job.fingerprint)
    assert other.claim_next() is None


def test_a_cancel_that_finds_the_job_claimed_meanwhile_asks_its_supervisor_to_stop_it(opened):
    store = opened()
    job = _job(store, "garden")
    seen_queued = store.get(job.id)
    assert store.claim_next().id == job.id  # between the cancel's read and its write
    assert not store.transition(seen_queued.id, JobState.CANCELLED, "stop", cancel_reason="stop",
                                from_states=(JobState.WAITING, JobState.QUEUED))
    cancelled = store.request_cancel(job.id, "stop")
    assert (cancelled.state, cancelled.cancel_requested) == (JobState.RUNNING, True)
