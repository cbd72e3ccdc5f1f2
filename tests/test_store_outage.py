"""A job store that stops answering does not stop the daemon. Against a real PostgreSQL cluster of
the test's own, shut down and started again while a stage runs: an outage shorter than the lease
is ridden out (the stage keeps going, the journal and health.json say so, the job finishes once,
here); one longer than most of a lease stops the stage before another daemon could take the job
over, and the job resumes from its last finished stage when the store is back."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Iterator

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from daemon.store import open_store
from daemon.store.outage import StoreOutage, StoreUnavailable, describe, is_outage
from tests.daemon_harness import DaemonProcess, Layout, make_layout, state_is, wait_for
from tests.photo_sets import small_set
from tests.postgres_server import PostgresServer, throwaway_cluster


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A cluster for this test alone: it is shut down and started again mid-test."""
    yield from throwaway_cluster()


def health(layout: Layout) -> dict:
    return json.loads((layout.outbox / "health.json").read_text())


def start_paced_job(layout: Layout, steps: int) -> dict:
    small_set(layout.inbox / "garden", ready=True, stop_after=None)
    (layout.inbox / "garden" / "job.toml").write_text(f'stop_after = "sfm"\niterations = {steps}\n')
    return wait_for(lambda: (d := layout.status("garden")) and d["stage"] == "sfm" and d["progress"] > 5 and d,
                    90, "the paced stage to run")


def state_events(url: str, job_id: str) -> list[str]:
    store = open_store(url)
    try:
        return [event["message"] for event in store.events(job_id) if event["kind"] == "state"]
    finally:
        store.engine.dispose()


@pytest.mark.slow
def test_an_outage_shorter_than_the_lease_is_ridden_out(tmp_path, own_postgres):
    layout = make_layout(tmp_path, database_url=own_postgres.url, host_name="d1", lease_seconds=30,
                         heartbeat_seconds=0.5)
    with DaemonProcess(layout, paced=True) as daemon:
        running = start_paced_job(layout, steps=40)  # 4 s of stage: it ends while the database is away
        own_postgres.pause()
        down = time.monotonic()
        try:
            during = wait_for(lambda: (h := health(layout))["problems"] and h, 20, "health.json to tell the outage")
            progress_file = (layout.state / "jobs" / running["job_id"] / "paced-runs.txt")
            time.sleep(max(0.0, 7.0 - (time.monotonic() - down)))  # seven seconds without a database
            assert daemon.process.poll() is None, daemon.log()
        finally:
            own_postgres.resume()
        print(f"outage {time.monotonic() - down:.1f} s")
        done = wait_for(state_is(layout, "garden", "done"), 90, "the job to finish after the outage")
        after = wait_for(lambda: not (h := health(layout))["problems"] and h, 20, "health.json to clear the problem")
        assert daemon.stop() == 0
    assert during["state"] == "running" and during["current_job"]["job_id"] == running["job_id"]
    assert "the job store has not answered since" in during["problems"][0]
    assert "127.0.0.1" not in json.dumps(during)  # the database's address stays in the journal
    assert after["state"] in ("idle", "running")
    assert done["job_id"] == running["job_id"] and done["host"] == "d1"
    assert progress_file.read_text().splitlines() == ["run"]  # the stage ran once, through the outage
    messages = state_events(own_postgres.url, running["job_id"])
    assert messages.count("started") == 1 and not any("lease" in message for message in messages), messages
    log = daemon.log()
    assert "the job store does not answer (OperationalError" in log
    # the stage ended in the outage: its result waited for the database, and was recorded after
    assert log.index("the job store answers again, after") < log.index("garden: sfm done in")
    assert "Traceback" not in log, log


@pytest.mark.slow
def test_an_outage_longer_than_the_lease_stops_the_stage_and_the_job_resumes(tmp_path, own_postgres):
    lease = 4.0
    layout = make_layout(tmp_path, database_url=own_postgres.url, host_name="d1", lease_seconds=lease,
                         heartbeat_seconds=0.5)
    with DaemonProcess(layout, paced=True) as daemon:
        running = start_paced_job(layout, steps=100)
        runs = layout.state / "jobs" / running["job_id"] / "paced-runs.txt"
        own_postgres.pause()
        try:
            wait_for(lambda: "the lease could not be renewed" in daemon.log(), 3 * lease, "the stage to be stopped")
            time.sleep(lease)  # the lease has run out in the database's eyes too
            assert daemon.process.poll() is None, daemon.log()
        finally:
            own_postgres.resume()
        done = wait_for(state_is(layout, "garden", "done"), 90, "the job to resume and finish")
        assert daemon.stop() == 0
    assert done["job_id"] == running["job_id"] and done["attempt"] == 1
    assert runs.read_text().splitlines() == ["run", "run"]  # stopped in the outage, run again after
    messages = state_events(own_postgres.url, running["job_id"])
    assert messages[-3:] == ["started", "resumed after its lease ran out here (the job store was away)",
                             "done after sfm"], messages
    assert "Traceback" not in daemon.log(), daemon.log()


@pytest.mark.slow
def test_a_daemon_started_while_the_store_is_down_waits_for_it(tmp_path, own_postgres):
    layout = make_layout(tmp_path, database_url=own_postgres.url, host_name="d1")
    own_postgres.pause()
    with DaemonProcess(layout) as daemon:
        try:
            wait_for(lambda: "the job store does not answer" in daemon.log(), 30, "the daemon to wait")
            time.sleep(2.0)
            assert daemon.process.poll() is None, daemon.log()
            small_set(layout.inbox / "garden", ready=True)
        finally:
            own_postgres.resume()
        wait_for(state_is(layout, "garden", "done"), 60, "the job to run once the store answers")
        assert daemon.stop() == 0
    assert "the job store answers again" in daemon.log()
    assert "Traceback" not in daemon.log(), daemon.log()


@pytest.mark.slow
def test_a_daemon_asked_to_stop_while_waiting_for_the_store_stops(tmp_path, own_postgres):
    layout = make_layout(tmp_path, database_url=own_postgres.url)
    own_postgres.pause()
    try:
        with DaemonProcess(layout) as daemon:
            wait_for(lambda: "the job store does not answer" in daemon.log(), 30, "the daemon to wait")
            assert daemon.stop(timeout=10) == 0
    finally:
        own_postgres.resume()
    assert "stopped before the job store answered" in daemon.log()


def test_outages_are_told_once_and_bugs_are_not_outages(caplog):
    refused = OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused\nDETAIL: more"))
    assert is_outage(refused) and describe(refused) == "ConnectionRefusedError: connection refused"
    assert not is_outage(IntegrityError("INSERT", {}, ValueError("duplicate key")))
    ticks = iter(range(0, 10_000, 60))
    outage = StoreOutage(clock=lambda: float(next(ticks)))
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise refused
        return "answer"

    with caplog.at_level(logging.INFO, logger="instarecon"):
        assert outage.wait_out(flaky, "testing", threading.Event(), on_wait=lambda seconds: None) == "answer"
    lines = [record.getMessage() for record in caplog.records]
    assert len(calls) == 3 and not outage.ongoing
    assert lines[0].startswith("the job store does not answer (ConnectionRefusedError: connection refused, while testing)")
    assert lines[-1].startswith("the job store answers again")
    assert len(lines) == 2  # said once (reminders come every 300 s), and once when it is back
    stop = threading.Event()
    stop.set()
    with pytest.raises(StoreUnavailable):
        outage.wait_out(lambda: (_ for _ in ()).throw(refused), "stopping", stop)
    with pytest.raises(IntegrityError):  # a bug of ours goes through at once, never waited on
        outage.wait_out(lambda: (_ for _ in ()).throw(IntegrityError("INSERT", {}, ValueError("x"))), "x", stop)
