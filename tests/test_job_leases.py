"""Leases on running jobs: a daemon holds its job only while it renews the lease; after that
another daemon takes the job over, and the first can no longer change it. On SQLite and on a
throwaway PostgreSQL (tests/postgres_server.py)."""

from __future__ import annotations

import time
from pathlib import Path

from daemon.store import JobState
from daemon.store.job_store import JobStore, make_engine
from daemon.store.migrate import upgrade_to_head


def stores(url: str, *hosts: str, lease_seconds: float) -> list[JobStore]:
    engine = make_engine(url)
    upgrade_to_head(engine)
    return [JobStore(make_engine(url), host=host, lease_seconds=lease_seconds) for host in hosts]


def queued_job(store: JobStore, name: str = "garden"):
    return store.create_job(set_name=name, source_path=Path("/inbox") / name, source_kind="folder",
                            fingerprint="f" * 64, state=JobState.QUEUED, message="queued")


def test_a_job_is_taken_over_only_after_its_lease_runs_out_and_its_old_host_is_fenced_off(database_url):
    alpha, beta = stores(database_url, "alpha", "beta", lease_seconds=0.4)
    job = queued_job(alpha)
    claimed = alpha.claim_next()
    assert (claimed.id, claimed.host, claimed.state) == (job.id, "alpha", JobState.RUNNING)
    assert claimed.lease_expires_at is not None

    for _ in range(3):  # renewed in time: never claimable
        time.sleep(0.2)
        assert alpha.renew_lease(job.id)
        assert beta.claim_next() is None

    time.sleep(0.5)  # alpha stops renewing (died, or lost the database)
    taken = beta.claim_next()
    assert (taken.id, taken.host, taken.state) == (job.id, "beta", JobState.RUNNING)
    assert taken.message == "taken over from alpha, whose lease ran out"
    assert taken.started_at == claimed.started_at  # the same job, resumed: not a new attempt

    # alpha comes back: it can neither renew nor end the job it lost
    assert not alpha.renew_lease(job.id)
    assert not alpha.transition(job.id, JobState.DONE, "done")
    assert not alpha.transition(job.id, JobState.QUEUED, "interrupted")
    assert beta.get(job.id).host == "beta"
    assert beta.transition(job.id, JobState.DONE, "done after publish")
    done = beta.get(job.id)
    assert done.state == JobState.DONE and done.lease_expires_at is None
    assert [e["message"] for e in beta.events(job.id) if e["kind"] == "state"] == [
        "queued", "started", "taken over from alpha, whose lease ran out", "done after publish"]


def test_a_restarted_daemon_requeues_only_its_own_jobs(database_url):
    alpha, beta = stores(database_url, "alpha", "beta", lease_seconds=60)
    mine, theirs = queued_job(alpha, "mine"), queued_job(alpha, "theirs")
    assert alpha.claim_next().id == mine.id
    assert beta.claim_next().id == theirs.id
    assert [job.id for job in alpha.requeue_interrupted()] == [mine.id]
    assert alpha.get(mine.id).state == JobState.QUEUED and alpha.get(mine.id).lease_expires_at is None
    assert alpha.get(theirs.id).state == JobState.RUNNING  # beta is alive and holds it
