"""SIFT features for every ingested photo, into a COLMAP database, a batch at a time.

pycolmap extracts a whole list of images in one call; calling it per batch is what lets the
stage report "features i/N". A shared camera is made by the first batch and named
explicitly for the others, since each call would otherwise start a camera of its own.
COLMAP reads the EXIF focal length (or its 35 mm equivalent) itself and uses it as the
starting focal length; without EXIF it guesses from the image size.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import pycolmap

from stages.sfm_inputs import IngestedSet

CAMERA_MODEL = "SIMPLE_RADIAL"  # focal, principal point, one radial term: enough for photos
BATCHES = 20  # at most this many progress reports
BATCH_PER_THREAD = 4  # smaller batches leave threads idle at each batch's end


def extract_features(database: Path, photo_set: IngestedSet, *, shared_camera: bool, threads: int,
                     device: pycolmap.Device, on_progress: Callable[[int, int], None]) -> None:
    """Write keypoints and descriptors of all photos into ``database``; reports (done, total)."""
    names = [photo.name for photo in photo_set.photos]
    batch = max(BATCH_PER_THREAD * threads, math.ceil(len(names) / BATCHES))
    extraction = pycolmap.FeatureExtractionOptions(num_threads=threads)
    mode = pycolmap.CameraMode.SINGLE if shared_camera else pycolmap.CameraMode.PER_IMAGE
    reader = pycolmap.ImageReaderOptions(camera_model=CAMERA_MODEL)
    on_progress(0, len(names))
    for start in range(0, len(names), batch):
        pycolmap.extract_features(database, photo_set.images_dir, image_names=names[start:start + batch],
                                  camera_mode=mode, reader_options=reader,
                                  extraction_options=extraction, device=device)
        if shared_camera:  # the first batch made the camera; the next ones must not make their own
            reader = pycolmap.ImageReaderOptions(camera_model=CAMERA_MODEL,
                                                 existing_camera_id=_only_camera(database))
        on_progress(min(start + batch, len(names)), len(names))


def _only_camera(database: Path) -> int:
    with pycolmap.Database.open(database) as db:
        (camera,) = db.read_all_cameras()
    return camera.camera_id
