"""The stage's lasting output: undistorted PINHOLE photos, their COLMAP model, the points as PLY.

Gaussian-splat trainers (the Inria code, nerfstudio, OpenSplat) take pinhole cameras only,
so the registered photos are resampled without lens distortion and the model written
beside them describes the resampled photos. COLMAP's undistorter also writes scaffolding
for dense stereo (stereo/, run-colmap-*.sh) that nothing here uses; it stays in scratch.
"""

from __future__ import annotations

from pathlib import Path

import pycolmap

from stages.photo_checks import JPEG_QUALITY

IMAGES_DIR = "images"
SPARSE_DIR = "sparse/0"  # the layout COLMAP's GUI, nerfstudio and the Inria trainer look for
POINTS_FILE = "points.ply"


def export_undistorted(model: pycolmap.Reconstruction, images_dir: Path, output_dir: Path,
                       scratch: Path, *, threads: int) -> None:
    """Write images/, sparse/0/ and points.ply into ``output_dir``, working in ``scratch``."""
    distorted = scratch / "distorted"
    distorted.mkdir(parents=True)
    model.write(distorted)
    undistorted = scratch / "undistorted"
    pycolmap.undistort_images(undistorted, distorted, images_dir, output_type="COLMAP",
                              jpeg_quality=JPEG_QUALITY, num_threads=threads)
    (undistorted / "images").rename(output_dir / IMAGES_DIR)
    sparse = output_dir / SPARSE_DIR
    sparse.parent.mkdir(parents=True)
    (undistorted / "sparse").rename(sparse)
    pycolmap.Reconstruction(sparse).export_PLY(output_dir / POINTS_FILE)
