"""How light is the daemon? Prints idle CPU and memory of `instarecon run` on an empty inbox,
and the seconds from a READY marker to the job starting, for both watch modes.

    .venv/bin/python bench/daemon_overhead.py [--idle-seconds 60] [--trials 5]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from daemon.demo_set import write_demo_set  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _start(root: Path, watch_mode: str, settle: float) -> subprocess.Popen:
    for name in ("inbox", "outbox"):
        (root / name).mkdir(exist_ok=True)
    config = root / "instarecon.toml"
    config.write_text(
        f'inbox = "inbox"\noutbox = "outbox"\nstate = "state"\n'
        f'watch_mode = "{watch_mode}"\nsettle_seconds = {settle}\n'
    )
    return subprocess.Popen(
        [sys.executable, "-m", "daemon.cli", "run", "--config", str(config)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def measure_idle(watch_mode: str, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as folder:
        daemon = _start(Path(folder), watch_mode, 60)
        time.sleep(5)  # start-up (imports, migrations) is not idle time
        cpu_before, wall_before = _cpu_seconds(daemon.pid), time.monotonic()
        peak = 0.0
        while time.monotonic() - wall_before < seconds:
            time.sleep(1)
            peak = max(peak, _rss_mib(daemon.pid))
        cpu = _cpu_seconds(daemon.pid) - cpu_before
        wall = time.monotonic() - wall_before
        rss = _rss_mib(daemon.pid)
        daemon.terminate()
        daemon.wait(30)
    print(f"idle {watch_mode:8s}: {100 * cpu / wall:.2f} % of one core over {wall:.0f} s "
          f"({cpu:.2f} CPU s), RSS {rss:.1f} MiB (peak {peak:.1f} MiB)")


def measure_ready_latency(watch_mode: str, trials: int) -> None:
    latencies = []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        daemon = _start(root, watch_mode, 3600)
        time.sleep(4)
        for trial in range(trials):
            set_folder = root / "inbox" / f"set{trial}"
            write_demo_set(set_folder, views=4, width=320, height=240, ready_marker=False)
            time.sleep(1.5)  # the set is seen and waiting
            dropped = datetime.now(timezone.utc)
            (set_folder / "READY").touch()
            started = _wait_for_start(root / "state" / "jobs.sqlite3", f"set{trial}-1")
            latencies.append((started - dropped).total_seconds())
            time.sleep(1)
        daemon.terminate()
        daemon.wait(30)
    print(f"READY -> job started, {watch_mode:8s}: median {statistics.median(latencies):.2f} s, "
          f"max {max(latencies):.2f} s over {trials} sets")


def _wait_for_start(database: Path, job_id: str) -> datetime:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with sqlite3.connect(database) as db:
            row = db.execute(
                "SELECT at FROM job_events WHERE job_id = ? AND state = 'running' ORDER BY id LIMIT 1", (job_id,)
            ).fetchone()
        if row:
            return datetime.fromisoformat(row[0]).replace(tzinfo=timezone.utc)
        time.sleep(0.02)
    raise RuntimeError(f"{job_id} did not start within 60 s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    for mode in ("native", "polling"):
        measure_idle(mode, args.idle_seconds)
        measure_ready_latency(mode, args.trials)


if __name__ == "__main__":
    main()
