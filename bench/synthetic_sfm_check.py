"""Check that real structure-from-motion registers the synthetic demo set.

The demo set is only useful if COLMAP can reconstruct it, so this renders it, runs
pycolmap's SIFT extraction (one shared camera), exhaustive matching and incremental
mapping, and compares the recovered cameras with the ground truth that
``daemon.demo_set.write_demo_set`` returns (after a similarity alignment, since SfM
recovers the scene only up to scale, rotation and translation).

Needs pycolmap (4.x, from PyPI; no COLMAP binary), numpy and pillow:

    python -m venv /tmp/sfm-venv && /tmp/sfm-venv/bin/pip install pycolmap numpy pillow
    PYTHONPATH=. /tmp/sfm-venv/bin/python bench/synthetic_sfm_check.py --size 640x480 --views 16 --seed 0 1

Exits non-zero when fewer than --min-registered of the views end up in one model.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pycolmap

from daemon.demo_set import SyntheticView, write_demo_set


@dataclass(frozen=True)
class SfmResult:
    views: int
    models: int
    registered: int
    points3d: int
    mean_reprojection_error_px: float
    focal_px: float
    true_focal_px: float
    prior_focal_from_exif: bool
    median_centre_error: float  # fraction of the scene extent
    max_centre_error: float
    render_s: float
    sfm_s: float


def umeyama(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (scale, rotation, translation) minimising |scale * R @ source + t - target|^2."""
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    src, dst = source - source_mean, target - target_mean
    u, singular, vt = np.linalg.svd(dst.T @ src / len(source))
    signs = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        signs[2] = -1
    rotation = u @ np.diag(signs) @ vt
    scale = float(singular @ signs) / float((src ** 2).sum(axis=1).mean())
    return scale, rotation, target_mean - scale * rotation @ source_mean


def run_sfm(images: Path, work: Path) -> tuple[dict[int, pycolmap.Reconstruction], float]:
    """The exact pycolmap 4.x calls the SfM stage is expected to make."""
    database = work / "database.db"
    sparse = work / "sparse"
    sparse.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    pycolmap.extract_features(
        database, images,
        camera_mode=pycolmap.CameraMode.SINGLE,
        reader_options=pycolmap.ImageReaderOptions(camera_model="SIMPLE_RADIAL"),
        extraction_options=pycolmap.FeatureExtractionOptions(),
        device=pycolmap.Device.cpu,
    )
    pycolmap.match_exhaustive(database, device=pycolmap.Device.cpu)
    models = pycolmap.incremental_mapping(database, images, sparse,
                                          options=pycolmap.IncrementalPipelineOptions())
    return models, time.monotonic() - started


def evaluate(cameras: list[SyntheticView], models: dict[int, pycolmap.Reconstruction],
             render_s: float, sfm_s: float) -> SfmResult:
    truth = {view.file: np.array(view.center) for view in cameras}
    true_centres = np.array(list(truth.values()))
    extent = max(np.linalg.norm(a - b) for a in true_centres for b in true_centres)
    if not models:
        return SfmResult(len(cameras), 0, 0, 0, float("nan"), float("nan"), cameras[0].K[0][0],
                         False, float("nan"), float("nan"), render_s, sfm_s)
    model = max(models.values(), key=lambda m: m.num_reg_images())
    images = [model.image(image_id) for image_id in model.reg_image_ids()]
    recovered = np.array([image.projection_center() for image in images])
    expected = np.array([truth[image.name] for image in images])
    scale, rotation, translation = umeyama(recovered, expected)
    aligned = scale * recovered @ rotation.T + translation
    errors = np.linalg.norm(aligned - expected, axis=1) / extent
    camera = next(iter(model.cameras.values()))
    return SfmResult(
        views=len(cameras), models=len(models), registered=model.num_reg_images(),
        points3d=model.num_points3D(),
        mean_reprojection_error_px=model.compute_mean_reprojection_error(),
        focal_px=float(camera.mean_focal_length()), true_focal_px=cameras[0].K[0][0],
        prior_focal_from_exif=bool(camera.has_prior_focal_length),
        median_centre_error=float(np.median(errors)), max_centre_error=float(errors.max()),
        render_s=render_s, sfm_s=sfm_s)


def check(work: Path, views: int, width: int, height: int, seed: int,
          spacing_degrees: float | None) -> SfmResult:
    images = work / "images"
    started = time.monotonic()
    cameras = write_demo_set(images, views=views, width=width, height=height, seed=seed,
                             ready_marker=False, spacing_degrees=spacing_degrees)
    render_s = time.monotonic() - started
    models, sfm_s = run_sfm(images, work)
    return evaluate(cameras, models, render_s, sfm_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=24)
    parser.add_argument("--size", default="800x600", help="WIDTHxHEIGHT")
    parser.add_argument("--seed", type=int, nargs="+", default=[0])
    parser.add_argument("--spacing", type=float, metavar="DEGREES",
                        help="degrees between adjacent views (default: all around)")
    parser.add_argument("--min-registered", type=float, default=0.9,
                        help="fraction of views that must register into one model")
    parser.add_argument("--keep", type=Path, help="keep the photos and models under this folder")
    args = parser.parse_args(argv)
    width, height = (int(part) for part in args.size.lower().split("x"))
    pycolmap.logging.minloglevel = 2  # warnings and errors only

    print(f"pycolmap {pycolmap.__version__}")
    failed = False
    for seed in args.seed:
        with tempfile.TemporaryDirectory(prefix="synthetic-sfm-") as scratch:
            name = f"{width}x{height}-{args.views}-{args.spacing or 'ring'}-seed{seed}"
            work = args.keep / name if args.keep else Path(scratch)
            result = check(work, args.views, width, height, seed, args.spacing)
        ok = result.registered >= args.min_registered * result.views
        failed |= not ok
        spacing = f" {args.spacing:g} deg apart" if args.spacing else ""
        print(f"{width}x{height} x{result.views}{spacing} seed {seed}: "
              f"registered {result.registered}/{result.views} in the largest of {result.models} model(s), "
              f"{result.points3d} points, mean reprojection error {result.mean_reprojection_error_px:.3f} px, "
              f"focal {result.focal_px:.1f} px (true {result.true_focal_px:.1f}, EXIF prior "
              f"{'used' if result.prior_focal_from_exif else 'not used'}), centre error median "
              f"{result.median_centre_error:.2e} max {result.max_centre_error:.2e} of scene extent; "
              f"render {result.render_s:.1f} s, SfM {result.sfm_s:.1f} s  {'OK' if ok else 'FAIL'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
