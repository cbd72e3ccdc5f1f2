"""Several daemons on one job store at once, as separate processes (spawned, each with its own
engine and host name) or threads: every queued job is claimed exactly once and records who
claimed it; writers racing to create a set's next attempt end with one job per attempt number;
daemons starting together on a fresh PostgreSQL database all bring it up. On SQLite (one host,
several processes) and on PostgreSQL (tests/postgres_server.py), but for that last one."""

from __future__ import annotations

import multiprocessing
import queue
import threading
import traceback
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import event, func, select

from daemon.store import JobState, open_store
from daemon.store.tables import job_events, jobs

WORKERS = 4
JOBS = 30


def _job(store, set_name: str):
    return store.create_job(set_name=set_name, source_path=Path("/inbox") / set_name, source_kind="folder",
                            fingerprint="f" * 64, state=JobState.QUEUED, message="queued")


class Failed(str):
    """A worker's traceback, sent back instead of its result."""


# ---- what each spawned process runs (module level, so that spawn can import it)

def _claim_until_empty(url: str, host: str, start: Any, results: Any) -> None:
    try:
        store = open_store(url, host=host)
        start.wait(timeout=60)
        claimed = []
        while (job := store.claim_next()) is not None:
            claimed.append((job.id, job.host))
        store.engine.dispose()
        results.put((host, claimed))
    except BaseException:
        results.put((host, Failed(traceback.format_exc())))


def _open_at_once(url: str, host: str, start: Any, results: Any) -> None:
    try:
        start.wait(timeout=60)
        store = open_store(url, host=host)
        job = _job(store, f"set-of-{host}")
        store.engine.dispose()
        results.put((host, job.id))
    except BaseException:
        results.put((host, Failed(traceback.format_exc())))


def _in_processes(target: Callable[..., None], url: str, hosts: list[str]) -> dict[str, Any]:
    """Run ``target(url, host, start, results)`` in one spawned process per host, released together;
    each puts (host, result) or (host, Failed(its traceback))."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(len(hosts)), context.Queue()
    processes = [context.Process(target=target, args=(url, host, start, results), daemon=True) for host in hosts]
    for process in processes:
        process.start()
    answers: dict[str, Any] = {}
    try:
        for _ in hosts:
            host, answer = results.get(timeout=120)
            answers[host] = answer
    except queue.Empty:
        codes = {process.name: process.exitcode for process in processes}
        raise AssertionError(f"workers gave no answer within 120 s: exit codes {codes}, answers {answers}") from None
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    failures = {host: answer for host, answer in answers.items() if isinstance(answer, Failed)}
    assert not failures, "\n".join(f"{host}:\n{answer}" for host, answer in failures.items())
    return answers


# ---- the tests

def test_processes_claim_every_queued_job_exactly_once_and_each_claim_names_its_host(database_url):
    store = open_store(database_url)  # the schema, before the workers open it too
    created = {_job(store, f"set{i:02d}").id for i in range(JOBS)}
    hosts = [f"gpu-{n}" for n in range(WORKERS)]
    answers = _in_processes(_claim_until_empty, database_url, hosts)

    claims = [(job_id, host, claimer) for claimer, claimed in answers.items() for job_id, host in claimed]
    print({claimer: len(claimed) for claimer, claimed in answers.items()})
    assert Counter(job_id for job_id, _, _ in claims) == Counter(created)  # each exactly once
    assert all(host == claimer for _, host, claimer in claims)
    for job_id, _, claimer in claims:
        job = store.get(job_id)
        assert (job.state, job.host) == (JobState.RUNNING, claimer)
        assert [e["state"] for e in store.events(job_id) if e["kind"] == "state"] == ["queued", "running"]
    assert store.count_by_state()[JobState.QUEUED] == 0
    store.engine.dispose()


def test_writers_racing_for_a_sets_next_attempt_end_with_one_job_per_attempt(database_url):
    """create_job counts the attempts, then inserts; the unique (set_name, attempt) constraint makes
    the writers that counted alike agree: one gets the number, the others count again. Here all three
    are held until each has counted, so every one inserts kermit-1 at the same moment."""
    writers = 3
    first = open_store(database_url)
    stores = [first] + [open_store(database_url, host=f"writer-{n}") for n in range(1, writers)]
    counted = threading.Barrier(writers, timeout=30)

    def hold_the_first_insert(store):
        held = []

        @event.listens_for(store.engine, "before_cursor_execute")
        def _wait(_connection, _cursor, statement, *_):
            if statement.lstrip().upper().startswith("INSERT INTO JOBS") and not held:
                held.append(True)
                counted.wait()

    conflicts: list[str] = []
    for store in stores:
        hold_the_first_insert(store)
        event.listen(store.engine, "handle_error", lambda context: conflicts.append(str(context.original_exception)))
    made: list[Any] = []
    errors: list[str] = []

    def create(store):
        try:
            made.append(_job(store, "kermit"))
        except BaseException:
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=create, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, "\n".join(errors)
    assert len(conflicts) >= writers - 1 and all("unique" in c.lower() for c in conflicts), conflicts  # they did race
    assert sorted(job.attempt for job in made) == list(range(1, writers + 1))
    assert sorted(job.id for job in made) == [f"kermit-{n}" for n in range(1, writers + 1)]
    with first.engine.connect() as connection:
        rows = connection.execute(select(jobs.c.attempt, func.count()).group_by(jobs.c.attempt)).all()
        logged = connection.execute(select(job_events.c.job_id, func.count()).group_by(job_events.c.job_id)).all()
    assert sorted(rows) == [(n, 1) for n in range(1, writers + 1)]
    assert sorted(logged) == [(f"kermit-{n}", 1) for n in range(1, writers + 1)]  # a failed try logs nothing
    for store in stores:
        store.engine.dispose()


def test_daemons_starting_together_on_a_fresh_postgresql_database_all_bring_it_up(postgres_database_url):
    """PostgreSQL only: several hosts sharing one database may start at once, and all but one would
    fail creating the tables without open_store's advisory lock. (One SQLite file belongs to one
    daemon; two processes migrating a new one at once would clash the same way.)"""
    hosts = [f"gpu-{n}" for n in range(WORKERS)]
    answers = _in_processes(_open_at_once, postgres_database_url, hosts)
    assert answers == {host: f"set-of-{host}-1" for host in hosts}
    store = open_store(postgres_database_url)
    assert {job.id for job in store.list_jobs()} == set(answers.values())
    store.engine.dispose()
