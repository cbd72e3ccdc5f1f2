"""Does the three-daemon test pass run after run on a loaded machine?

    .venv/bin/python bench/several_daemons_under_load.py [--runs 20] [--load 4] [--disk-load 2] [--database sqlite]

Starts ``stress-ng --cpu LOAD --hdd DISK_LOAD`` (LOAD busy processes on top of the test's own three
daemons and their stages, and DISK_LOAD processes writing files, which makes every fsync slow;
Debian's stress-ng), then runs
``tests/test_several_daemons.py::test_three_daemons_run_every_set_exactly_once`` RUNS times in a
row as pytest runs, and prints each run's outcome and wall time, then a summary. Three daemons
sharing one state folder write the same status.json files at the same moment, which is where a
daemon once died (a sweep of leftovers removed another daemon's write under way). Numbers for the
notes, not a pass/fail test; a failed run's output is printed in full.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEST = "tests/test_several_daemons.py::test_three_daemons_run_every_set_exactly_once"


def start_load(workers: int, disk_workers: int, folder: str) -> subprocess.Popen | None:
    if workers <= 0 and disk_workers <= 0:
        return None
    if shutil.which("stress-ng") is None:
        sys.exit("stress-ng is not installed (apt-get install stress-ng)")
    return subprocess.Popen(["stress-ng", "--cpu", str(workers), "--hdd", str(disk_workers), "--temp-path", folder,
                             "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--load", type=int, default=2 * (os.cpu_count() or 1), help="busy processes (default: 2 per core)")
    parser.add_argument("--disk-load", type=int, default=2, help="processes writing files (default 2)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="instarecon-load-")  # on the disk the tests' folders are on
    load = start_load(args.load, args.disk_load, scratch)
    print(f"{args.runs} runs of {TEST}[{args.database}] with {args.load} busy and {args.disk_load} writing processes "
          f"on {os.cpu_count()} cores")
    seconds, failures = [], 0
    try:
        for run in range(1, args.runs + 1):
            started = time.monotonic()
            result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-s",
                                     f"{TEST}[{args.database}]"], cwd=REPO, capture_output=True, text=True)
            took = time.monotonic() - started
            seconds.append(took)
            per_daemon = next((line for line in result.stdout.splitlines() if line.startswith("jobs per daemon")), "")
            if result.returncode == 0:
                print(f"run {run:2d}: passed in {took:5.1f} s  {per_daemon}", flush=True)
            else:
                failures += 1
                print(f"run {run:2d}: FAILED in {took:5.1f} s\n{result.stdout}\n{result.stderr}", flush=True)
    finally:
        if load is not None:
            os.killpg(load.pid, 15)
            load.wait()
        shutil.rmtree(scratch, ignore_errors=True)
    seconds.sort()
    print(f"{args.runs - failures} of {args.runs} passed; wall time per run: median {seconds[len(seconds) // 2]:.1f} s, "
          f"longest {seconds[-1]:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
