"""How long does a daemon take to claim the next job, on SQLite and on PostgreSQL?

    .venv/bin/python bench/job_claims.py [--jobs 200] [--claimers 3]

For each database (SQLite in a temporary folder; PostgreSQL as a throwaway cluster started as the
tests start theirs, so run it as root with Debian's postgresql installed), queues ``--jobs`` jobs
and lets ``--claimers`` processes, each with its own host name, call ``claim_next`` until the
queue is empty. Prints the median and 95th percentile of one claim, the jobs each claimer got,
and checks that no job was claimed twice. Numbers for the notes, not a pass/fail test.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemon.store import JobState  # noqa: E402
from daemon.store.job_store import JobStore, make_engine, open_store  # noqa: E402


def claimer(url: str, host: str, results) -> None:
    store = JobStore(make_engine(url), host=host)
    timings, claimed = [], []
    while True:
        started = time.perf_counter()
        job = store.claim_next()
        timings.append(time.perf_counter() - started)
        if job is None:
            break
        claimed.append(job.id)
    results.put((host, timings[:-1], claimed))


def measure(label: str, url: str, jobs: int, claimers: int) -> None:
    store = open_store(url)
    for number in range(jobs):
        store.create_job(set_name=f"set{number:04d}", source_path=Path("/inbox"), source_kind="folder",
                         fingerprint="f" * 64, state=JobState.QUEUED, message="queued")
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=claimer, args=(url, f"host{n}", results)) for n in range(claimers)]
    for process in processes:
        process.start()
    gathered = [results.get(timeout=300) for _ in processes]
    for process in processes:
        process.join()
    timings = sorted(t for _, each, _ in gathered for t in each)
    claimed = [job for _, _, ids in gathered for job in ids]
    assert len(claimed) == len(set(claimed)) == jobs, "a job was claimed twice or not at all"
    p95 = timings[int(0.95 * (len(timings) - 1))]
    print(f"{label:11s} {jobs} jobs, {claimers} claimers: claim median {statistics.median(timings) * 1000:.1f} ms, "
          f"p95 {p95 * 1000:.1f} ms; per claimer {sorted(len(ids) for _, _, ids in gathered)}; none twice")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--claimers", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        measure("SQLite", f"sqlite:///{folder}/jobs.sqlite3", args.jobs, args.claimers)
    from tests.postgres_server import start_postgres

    server = start_postgres()
    try:
        measure("PostgreSQL", server.url, args.jobs, args.claimers)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
