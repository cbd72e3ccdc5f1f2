"""How long after a GPU host dies does another daemon take its job over?

    .venv/bin/python bench/takeover.py [--lease 10 60] [--runs 1]

For each lease length: a throwaway PostgreSQL cluster (as the tests start theirs: run as root with
Debian's postgresql installed), two real daemons (the test pipeline, whose second stage runs slowly
on purpose) sharing one inbox and job store; a set is queued, and once its stage runs on the first
daemon that daemon gets SIGKILL. Prints the seconds from the kill to the takeover (the job's
event, by the database's clock against this host's; one host here, so the clocks agree) and to
the job being done. Numbers for the notes, not a pass/fail test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemon.store import open_store  # noqa: E402
from tests.daemon_harness import DaemonProcess, make_layout, state_is, wait_for  # noqa: E402
from tests.photo_sets import small_set  # noqa: E402
from tests.postgres_server import start_postgres  # noqa: E402
from tests.test_several_daemons import daemon_layouts  # noqa: E402


def one_takeover(url: str, lease: float, root: Path) -> tuple[float, float]:
    layout = make_layout(root, database_url=url)
    first, second = (DaemonProcess(each, paced=True) for each in daemon_layouts(layout, 2, lease_seconds=lease))
    first.start()
    small_set(layout.inbox / "garden", ready=True, stop_after=None)
    steps = int((lease + 30) / 0.1)  # the stage outlasts the lease
    (layout.inbox / "garden" / "job.toml").write_text(f'stop_after = "sfm"\niterations = {steps}\n')
    running = wait_for(lambda: (d := layout.status("garden")) and d["stage"] == "sfm" and d["progress"] > 1 and d,
                       120, "the stage to run on the first daemon")
    second.start()
    time.sleep(2.0)
    first.kill()
    killed = datetime.now(timezone.utc)
    try:
        wait_for(state_is(layout, "garden", "done"), lease + steps * 0.1 + 120, "the job to be finished")
        finished = datetime.now(timezone.utc)
    finally:
        second.stop()
    store = open_store(url)
    taken = next(event for event in store.events(running["job_id"]) if "taken over" in event["message"])
    store.engine.dispose()
    return (taken["at"] - killed).total_seconds(), (finished - killed).total_seconds()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lease", type=float, nargs="+", default=[10.0, 60.0])
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    server = start_postgres()
    try:
        for lease in args.lease:
            for run in range(args.runs):
                database = server.create_database()
                with tempfile.TemporaryDirectory(prefix="instarecon-takeover-") as root:
                    taken, done = one_takeover(database, lease, Path(root))
                print(f"lease {lease:g} s, run {run + 1}: taken over {taken:.1f} s after the SIGKILL; "
                      f"job done {done:.1f} s after it (the stage ran again from its start)", flush=True)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
