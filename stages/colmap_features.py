"""SIFT features for every ingested photo, into a COLMAP database, a batch at a time.

pycolmap extracts a whole list of images in one call; calling it per batch is what lets the
stage report "features i/N". The photos (and the shared camera, or one per photo) are imported
first, in name order, in one pass: extraction on several threads writes each photo when its
features are done, in whatever order the threads finish, and the database numbers photos as it
gets them. The mapper breaks ties by those numbers, so the same set gave different models from
run to run (on a small ring, sometimes one with no 3D point). COLMAP reads the EXIF focal length
(or its 35 mm equivalent) itself and uses it as the starting focal length; without EXIF it
guesses from the image size.
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
    pycolmap.Database.open(database).close()  # import_images needs the file
    pycolmap.import_images(database, photo_set.images_dir, camera_mode=mode, image_names=names, options=reader)
    on_progress(0, len(names))
    for start in range(0, len(names), batch):
        pycolmap.extract_features(database, photo_set.images_dir, image_names=names[start:start + batch],
                                  camera_mode=mode, reader_options=reader,
                                  extraction_options=extraction, device=device)
        on_progress(min(start + batch, len(names)), len(names))
