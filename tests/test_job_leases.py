"""Leases on running jobs: a daemon holds its job only while it renews the lease; after that
another daemon takes the job over, and the first can no longer change it. On SQLite and on a
throwaway PostgreSQL (tests/postgres_server.py)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from daemon.store import JobState
from daemon.store.job_store import JobStore, make_engine
from daemon.store.migrate import upgrade_to_head
from tests.daemon_harness import REPO


def stores(url: str, *hosts: str, lease_seconds: float) -> list[JobStore]:
    """Stores as daemons on other machines would hold them: each its own process key, which cannot
    be looked up from here (daemon/this_process.py), so only their leases tell who holds a job."""
    engine = make_engine(url)
    upgrade_to_head(engine)
    return [JobStore(make_engine(url), host=host, lease_seconds=lease_seconds, process=f"{host}-elsewhere")
            for host in hosts]


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


def claim_in_a_process(url: str, name: str, *, exits: bool) -> subprocess.Popen:
    """A real process that claims the next job under ``name`` (as a daemon does), then exits or
    stays alive until its stdin closes."""
    code = (f"from daemon.store import open_store; s = open_store({url!r}, host={name!r}); s.claim_next(); "
            "print('claimed', flush=True); import sys; sys.stdin.read()")
    process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout.readline() == "claimed\n"
    if exits:
        process.stdin.close()
        assert process.wait(timeout=30) == 0
    return process


def test_a_starting_daemon_requeues_the_jobs_of_processes_that_are_gone_and_no_other(database_url):
    """Only the lease decides who runs a job: a daemon starting under the same name as one that is
    still alive (the service, and `instarecon run` by hand beside it) leaves that one's job alone;
    the job of a daemon process that has exited goes back to the queue at once, keeping its place;
    a daemon elsewhere, which cannot be looked up from here, keeps its job until its lease runs out."""
    alpha, elsewhere = stores(database_url, "alpha", "beta", lease_seconds=60)
    gone, alive, remote = queued_job(alpha, "gone"), queued_job(alpha, "alive"), queued_job(alpha, "remote")
    claim_in_a_process(database_url, "alpha", exits=True)
    holder = claim_in_a_process(database_url, "alpha", exits=False)
    try:
        assert elsewhere.claim_next().id == remote.id
        starting = JobStore(make_engine(database_url), host="alpha", lease_seconds=60)
        requeued = starting.requeue_orphans(name_was_free=True)
        assert [job.id for job in requeued] == [gone.id]
        again = starting.get(gone.id)
        assert (again.state, again.lease_expires_at, again.lease_owner) == (JobState.QUEUED, None, None)
        assert again.message == "resuming: the daemon that ran it (alpha) has stopped"
        assert starting.get(alive.id).state == JobState.RUNNING  # its process lives: same name, not ours
        assert starting.get(remote.id).state == JobState.RUNNING  # elsewhere: its lease decides
        assert not starting.renew_lease(alive.id)  # a name is not a lease
        assert not starting.transition(alive.id, JobState.DONE, "done")
        assert starting.claim_next().id == gone.id  # first in the queue still
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def test_only_the_claim_that_holds_a_job_may_move_files_into_it_or_write_its_progress(database_url):
    """JobStore.fenced: what a claim moves into the job's folders (daemon/run/claim_folder.py)."""
    alpha, beta = stores(database_url, "alpha", "beta", lease_seconds=0.4)
    job = queued_job(alpha)
    assert alpha.claim_next().lease_epoch == 1
    moved = []
    assert alpha.fenced(job.id, 1, lambda: moved.append("alpha's sfm"))
    time.sleep(0.5)  # alpha is paused past its lease
    assert beta.claim_next().lease_epoch == 2
    assert not alpha.fenced(job.id, 1, lambda: moved.append("alpha's train, late"))
    assert not beta.fenced(job.id, 1, lambda: moved.append("an older claim's"))  # the number counts, not the host
    assert beta.fenced(job.id, 2, lambda: moved.append("beta's train"))
    assert beta.transition(job.id, JobState.DONE, "done after publish")
    assert not beta.fenced(job.id, 2, lambda: moved.append("after the end"))
    assert moved == ["alpha's sfm", "beta's train"]
    # nor can alpha, waking up, write the progress it had when it was paused over the finished job
    alpha.update_fields(job.id, owner_only=True, progress=97.0, message="sfm: step 29/30")
    assert beta.get(job.id).message == "done after publish"


def test_a_takeover_waits_until_the_holders_fenced_moves_are_done(database_url):
    """The lease runs out while the holder moves its stage into place: the other daemon cannot take
    the job until the moves are done (SQLite: it waits for the write lock; PostgreSQL: the row is
    locked, and SKIP LOCKED passes it over for now)."""
    alpha, beta = stores(database_url, "alpha", "beta", lease_seconds=0.3)
    job = queued_job(alpha)
    alpha.claim_next()
    happened: list[str] = []
    attempt = threading.Thread(target=lambda: happened.append(f"claimed {getattr(beta.claim_next(), 'id', None)}"))

    def moves() -> None:
        time.sleep(0.4)  # the lease runs out meanwhile
        attempt.start()
        time.sleep(0.5)
        happened.append("moved")

    assert alpha.fenced(job.id, 1, moves)
    attempt.join(30)
    assert happened in (["moved", f"claimed {job.id}"], ["claimed None", "moved"]), happened
