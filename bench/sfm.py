"""How close are the SfM stage's cameras to the truth? Real photos with surveyed cameras.

Runs the ingest and sfm stages on the Strecha sets in ../shared/datasets, each stage in a
child process through ``stages.child`` as the daemon runs it, with the default settings and
job options. Then aligns the recovered camera centres to ``gt_cameras.json`` with a
similarity (Umeyama: SfM knows the scene only up to scale, rotation and translation) and
prints per set: photos registered, camera-centre error (median and max, in metres and as a
fraction of the scene's extent), rotation error (median and max, degrees) and seconds.

    .venv/bin/python bench/sfm.py [--datasets ../shared/datasets] [--keep FOLDER]
        [--device cpu[,gpu]] [SET ...]

Targets (issue 3): every photo registered, median centre error under 1 % of the extent,
median rotation error under 1 degree. Exits 1 when a set misses them.

``--device cpu,gpu`` runs the sfm stage once per device on the same ingested photos: "cpu"
with train_backend = "cpu", "gpu" with train_backend = "cuda" (the stage puts SIFT extraction
and matching on CUDA only where pycolmap is its CUDA build, pycolmap-cuda12, and the host
trains on the GPU; its metrics say which device ran). Printed side by side per set: seconds,
the device the stage reports, and the stage's quality-gate numbers (photos registered, 3D
points, mean reprojection error) with the accuracy against the surveyed cameras. Without a
CUDA pycolmap the "gpu" run is skipped with the reason.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pycolmap

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from synthetic_sfm_check import umeyama  # noqa: E402  (bench/ is on sys.path as the script's folder)

from daemon.config import Settings  # noqa: E402
from daemon.jobs.options import default_options  # noqa: E402
from stages.base import RESULT_FILE, StageContext  # noqa: E402
from stages.registry import PIPELINE  # noqa: E402

SETS = ("fountain-p11", "herz-jesu-p8")
MAX_MEDIAN_CENTRE_ERROR = 0.01  # fraction of the extent
MAX_MEDIAN_ROTATION_ERROR = 1.0  # degrees


DEVICES = {"cpu": "cpu", "gpu": "cuda"}  # --device -> the train_backend the stage is given


@dataclass(frozen=True)
class Accuracy:
    registered: int
    total: int
    extent_m: float  # largest distance of a true camera centre from their centroid
    centre_errors_m: tuple[float, ...]
    rotation_errors_deg: tuple[float, ...]
    ingest_s: float
    sfm_s: float
    device: str = "cpu"  # where the stage ran SIFT and matching (its metrics' "device")
    points: int = 0  # the stage's quality-gate numbers (its metrics)
    mean_reprojection_error: float = 0.0

    def meets_targets(self) -> bool:
        return (self.registered == self.total
                and float(np.median(self.centre_errors_m)) < MAX_MEDIAN_CENTRE_ERROR * self.extent_m
                and float(np.median(self.rotation_errors_deg)) < MAX_MEDIAN_ROTATION_ERROR)


def run_stage(name: str, source: Path, job_dir: Path, **settings: object) -> float:
    """One stage in a child process, as the daemon starts it, with the default settings but
    ``settings``; returns its wall time."""
    spec = next(spec for spec in PIPELINE if spec.name == name)
    context = StageContext(
        job_id=f"{source.parent.name}-1", set_name=source.parent.name, source=source, inbox=source.parent,
        job_dir=job_dir, output_dir=job_dir / name, options=default_options(),
        settings={**Settings().stage_settings(), **settings},
    )
    context_path = job_dir / f"{name}.context.json"
    context_path.write_text(json.dumps(context.to_json()))
    started = time.monotonic()
    child = subprocess.run([sys.executable, "-m", "stages.child", str(context_path), spec.entry],
                           cwd=REPO, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if child.returncode != 0 or not (context.output_dir / RESULT_FILE).exists():
        raise RuntimeError(f"{name} on {source} ended with code {child.returncode}:\n{child.stderr[-3000:]}")
    return seconds


def rotation_angle_deg(rotation: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(rotation) - 1) / 2, -1.0, 1.0))))


def measure(dataset: Path, job_dir: Path, device: str = "cpu", ingest_s: float | None = None) -> Accuracy:
    """The sfm stage (after ingest, unless ``ingest_s`` says it ran) with SIFT and matching on
    ``device`` where pycolmap can."""
    truth = json.loads((dataset / "gt_cameras.json").read_text())["cameras"]
    if ingest_s is None:
        ingest_s = run_stage("ingest", dataset / "images", job_dir)
    shutil.rmtree(job_dir / "sfm", ignore_errors=True)  # a stage starts from an empty folder
    sfm_s = run_stage("sfm", dataset / "images", job_dir, train_backend=DEVICES[device])
    metrics = json.loads((job_dir / "sfm" / RESULT_FILE).read_text())["metrics"]
    model = pycolmap.Reconstruction(job_dir / "sfm" / "sparse" / "0")
    images = [model.image(image_id) for image_id in model.reg_image_ids()]
    recovered = np.array([image.projection_center() for image in images])
    expected = np.array([truth[image.name]["center"] for image in images])
    scale, rotation, translation = umeyama(recovered, expected)
    aligned = scale * recovered @ rotation.T + translation
    # a camera's rotation in the true world frame: world -> recovered world -> camera
    rotation_errors = [
        rotation_angle_deg(np.array(truth[image.name]["R_world_to_camera"]).T
                           @ image.cam_from_world().rotation.matrix() @ rotation.T)
        for image in images
    ]
    centres = np.array([camera["center"] for camera in truth.values()])
    extent = float(np.linalg.norm(centres - centres.mean(axis=0), axis=1).max())  # 7.7 m for fountain-p11, as ../shared/datasets/README.md quotes
    return Accuracy(
        registered=len(images), total=len(truth), extent_m=extent,
        centre_errors_m=tuple(np.linalg.norm(aligned - expected, axis=1).tolist()),
        rotation_errors_deg=tuple(rotation_errors), ingest_s=ingest_s, sfm_s=sfm_s,
        device=metrics.get("device", "?"), points=metrics["points"],
        mean_reprojection_error=metrics["mean_reprojection_error"],
    )


def describe(name: str, result: Accuracy) -> str:
    centre = np.array(result.centre_errors_m)
    rotation = np.array(result.rotation_errors_deg)
    median, worst = float(np.median(centre)), float(centre.max())
    return (
        f"{name}: registered {result.registered}/{result.total}; centre error median {median:.4f} m "
        f"({median / result.extent_m:.3%} of the {result.extent_m:.2f} m extent), max {worst:.4f} m "
        f"({worst / result.extent_m:.3%}); rotation error median {np.median(rotation):.3f} deg, "
        f"max {rotation.max():.3f} deg; {result.points} points, reprojection error "
        f"{result.mean_reprojection_error:.3f} px; sfm {result.sfm_s:.1f} s on {result.device} "
        f"(ingest {result.ingest_s:.1f} s)  "
        f"{'meets targets' if result.meets_targets() else 'MISSES TARGETS'}"
    )


def side_by_side(name: str, results: dict[str, Accuracy]) -> str:
    """One column per device: time, where it ran, and the numbers the quality gates judge."""
    def row(label: str, value) -> list[str]:
        return [label, *(value(result) for result in results.values())]

    rows = [
        ["", *(f"{name} --device {device}" for device in results)],
        row("sfm stage seconds", lambda r: f"{r.sfm_s:.1f}"),
        row("SIFT and matching on", lambda r: r.device),
        row("photos registered", lambda r: f"{r.registered}/{r.total}"),
        row("3D points", lambda r: f"{r.points:,}"),
        row("mean reprojection error", lambda r: f"{r.mean_reprojection_error:.3f} px"),
        row("centre error, median", lambda r: f"{float(np.median(r.centre_errors_m)) / r.extent_m:.3%} of extent"),
        row("rotation error, median", lambda r: f"{float(np.median(r.rotation_errors_deg)):.3f} deg"),
        row("targets", lambda r: "met" if r.meets_targets() else "MISSED"),
    ]
    widths = [max(len(cells[i]) for cells in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip() for cells in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="*", default=list(SETS))
    parser.add_argument("--datasets", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--keep", type=Path, help="keep each set's job folder under this folder")
    parser.add_argument("--device", default="cpu", help="cpu, gpu or both (cpu,gpu): a sfm run per device")
    args = parser.parse_args(argv)
    devices = [device.strip() for device in args.device.split(",") if device.strip()]
    if not devices or any(device not in DEVICES for device in devices):
        parser.error(f"--device: one or more of {', '.join(DEVICES)}, comma-separated")
    build = "CUDA build" if pycolmap.has_cuda else "CPU build"
    print(f"pycolmap {pycolmap.__version__} ({build}), {Settings().stage_settings()['threads']} threads")
    if "gpu" in devices and not pycolmap.has_cuda:
        print("--device gpu skipped: this pycolmap is the CPU build (pycolmap-cuda12, pyproject's sfm-cuda extra, "
              "runs SIFT and matching on CUDA)")
        devices.remove("gpu")
    missed = False
    for name in args.sets:
        with tempfile.TemporaryDirectory(prefix=f"bench-sfm-{name}-") as scratch:
            job_dir = args.keep / name if args.keep else Path(scratch)
            shutil.rmtree(job_dir, ignore_errors=True)  # stages start from empty folders
            job_dir.mkdir(parents=True)
            results: dict[str, Accuracy] = {}
            for device in devices:
                ingested = next(iter(results.values())).ingest_s if results else None
                results[device] = measure(args.datasets / name, job_dir, device, ingest_s=ingested)
                print(f"--device {device}: " + describe(name, results[device]), flush=True)
                if device == "gpu" and results[device].device != "cuda":
                    print(f"  the stage ran SIFT and matching on {results[device].device}, not CUDA: is the NVIDIA "
                          "driver loaded and PyTorch's CUDA build installed (train_backend = \"cuda\" needs both)?")
                missed |= not results[device].meets_targets()
        if len(results) > 1:
            print(side_by_side(name, results), flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
