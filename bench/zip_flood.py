"""What a hostile .zip set costs: the state folder's peak size and the daemon's peak memory.

Two archives, each holding four small photos, run by the real daemon (`instarecon run`):
- flood: a ~1.4 MB zip holding a 1.4 GB file of zeros that is not a photo (.cache/notes.bin:
  in a hidden folder, which ingest never looks into), max_set_mb = 1;
- toml: a ~3.6 MB zip whose job.toml unpacks to 3.6 GB of blank lines.
Prints, for each, the state folder's peak size (sampled every 0.1 s), the daemon's VmHWM,
the largest RSS of the daemon and its stage processes (wait4), the seconds to the job's end,
and how the job ended.

    .venv/bin/python bench/zip_flood.py [--repo PATH] [--flood-gb 1.4] [--toml-gb 3.6]

--repo runs the daemon from another checkout (the code before a change) on the same archives.
Everything is written under a temporary folder and removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from daemon.demo_set import write_demo_set  # noqa: E402

MIB = 1024 * 1024
TERMINAL = ("done", "failed", "cancelled")


def _write_zip(path: Path, photos: list[Path], job_toml: bytes, big_name: str, big_bytes: int, big_line: bytes) -> None:
    """The photos, a job.toml, and one entry of ``big_bytes`` written 1 MiB at a time."""
    chunk = big_line * (MIB // len(big_line))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for photo in photos:
            archive.write(photo, photo.name)
        if big_name != "job.toml":
            archive.writestr("job.toml", job_toml)
        with archive.open(big_name, "w", force_zip64=True) as member:
            if big_name == "job.toml":
                member.write(job_toml)
            left = big_bytes
            while left > 0:
                piece = chunk[: min(left, len(chunk))]
                member.write(piece)
                left -= len(piece)


def _tree_bytes(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass  # removed while walking
    return total


def _vm_hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _run_case(root: Path, daemon_repo: Path, name: str, archive_bytes: int, settings: str, timeout: float) -> None:
    for folder in ("outbox", "state"):
        (root / folder).mkdir(exist_ok=True)
    config = root / "instarecon.toml"
    config.write_text(
        f'inbox = "{root / "inbox"}"\noutbox = "{root / "outbox"}"\nstate = "{root / "state"}"\n'
        "settle_seconds = 1.0\nrescan_interval_seconds = 3600\npoll_interval_seconds = 0.2\nthreads = 2\n" + settings
    )
    env = {**os.environ, "PYTHONPATH": f"{daemon_repo}:{daemon_repo / 'gaussian-splatting'}"}
    started = time.monotonic()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "daemon.cli", "run", "--config", str(config)],
        cwd=daemon_repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    peak_state = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak_state
        while not stop.is_set():
            peak_state = max(peak_state, _tree_bytes(root / "state"))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    status_path = root / "inbox" / f"{name}.status.json"
    document: dict = {}
    while time.monotonic() - started < timeout:
        try:
            document = json.loads(status_path.read_text())
        except (OSError, ValueError):
            document = {}
        if document.get("state") in TERMINAL:
            break
        time.sleep(0.2)
    seconds = time.monotonic() - started
    time.sleep(0.5)  # the sampler's last looks
    daemon_hwm = _vm_hwm_mib(daemon.pid)
    daemon.send_signal(signal.SIGTERM)
    _pid, _status, usage = os.wait4(daemon.pid, 0)
    daemon.returncode = 0
    stop.set()
    sampler.join()
    print(
        f"{name}: zip {archive_bytes / 1e6:.1f} MB; state folder peak {peak_state / 1e6:.1f} MB; "
        f"daemon VmHWM {daemon_hwm:.0f} MiB; largest RSS of the daemon and its stages "
        f"{usage.ru_maxrss / 1024:.0f} MiB; {seconds:.1f} s; "
        f"ended {document.get('state', 'not ended')}: {document.get('message', '')[:160]}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout whose daemon runs")
    parser.add_argument("--flood-gb", type=float, default=1.4)
    parser.add_argument("--toml-gb", type=float, default=3.6)
    parser.add_argument("--timeout", type=float, default=400)
    parser.add_argument("--only", choices=("flood", "toml"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="zip-flood-") as folder:
        made = Path(folder) / "made"
        cameras = write_demo_set(made, views=4, width=160, height=120, ready_marker=False)
        photos = [made / camera.file for camera in cameras]
        stop_after = b'stop_after = "ingest"\n'
        if args.only in (None, "flood"):
            root = Path(folder) / "flood"
            (root / "inbox").mkdir(parents=True)
            archive = root / "inbox" / "flood.zip"
            _write_zip(archive, photos, stop_after, ".cache/notes.bin", int(args.flood_gb * 1e9), b"\0")
            _run_case(root, args.repo.resolve(), archive.name, archive.stat().st_size, "max_set_mb = 1\n", args.timeout)
        if args.only in (None, "toml"):
            root = Path(folder) / "toml"
            (root / "inbox").mkdir(parents=True)
            archive = root / "inbox" / "toml.zip"
            _write_zip(archive, photos, stop_after, "job.toml", int(args.toml_gb * 1e9), b"\n")
            _run_case(root, args.repo.resolve(), archive.name, archive.stat().st_size, "", args.timeout)


if __name__ == "__main__":
    main()
