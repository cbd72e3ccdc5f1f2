"""Camera poses and sparse points from the matches: COLMAP's incremental or global mapper.

Photos that do not link up produce several separate models; the largest is the scene the
user meant and the others are left out. Every model that could pass the quality gate is
kept until then (COLMAP drops second models under 10 photos by default). A fixed random
seed makes a rerun of the same set on one thread give the same model; with several threads
their scheduling can still move a point or two, and, rarely, on a small set, end in a
degenerate model: photos placed but every 3D point filtered out (seen once in some fifty runs
of an 8-photo test set). Such a model is no scene; the incremental mapper then runs once more
on one thread.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Callable

import pycolmap

from stages.base import ASK_THE_OPERATOR, StageFailed
from stages.sfm_quality import MIN_REGISTERED

log = logging.getLogger("stages.sfm")

GLOBAL = "global"
RANDOM_SEED = 0
# COLMAP adds a photo once 30 of its features agree on a pose with the model's points; a
# hand-held shot that overlaps its neighbours less gets fewer (kermit006, once ingest has
# re-encoded it, registers at 20 but not at 25). A quarter of the photo's matches must still
# agree, which keeps wrong poses out.
MIN_POSE_INLIERS = 20


def check_mapper(mapper: str) -> None:
    """Fail before hours of matching when the configured mapper is not in this pycolmap."""
    if mapper == GLOBAL and not hasattr(pycolmap, "global_mapping"):
        log.error("the setting sfm_mapper = \"global\" needs pycolmap with global mapping; pycolmap %s has none: "
                  "set sfm_mapper = \"incremental\" in the configuration, or install pycolmap 4.2 or newer "
                  "(pip install 'instarecon3d[sfm]')", pycolmap.__version__)
        raise StageFailed("this server is set up to place the cameras with a method its software lacks",
                          hint=ASK_THE_OPERATOR)


def reconstruct(database: Path, images_dir: Path, work_dir: Path, *, mapper: str, threads: int,
                on_registered: Callable[[int], None]) -> pycolmap.Reconstruction | None:
    """The model with the most registered photos (one with 3D points first), or None when no
    model came out.

    ``on_registered`` gets the number of photos in the model being built as it grows
    (incremental mapper only; the global mapper places all photos at once).
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    if mapper == GLOBAL:
        return best_model(_global(database, images_dir, work_dir, threads))
    model = best_model(_incremental(database, images_dir, work_dir, threads, on_registered))
    if model is not None and model.num_points3D() == 0 and threads > 1:
        log.warning("the mapper placed %d photos but kept no 3D point; mapping again on one thread",
                    model.num_reg_images())
        shutil.rmtree(work_dir)
        work_dir.mkdir(parents=True)
        model = best_model(_incremental(database, images_dir, work_dir, 1, on_registered))
    return model


def best_model(models: dict[int, pycolmap.Reconstruction]) -> pycolmap.Reconstruction | None:
    """The model with the most photos placed; one without a single 3D point only if none has any."""
    return max(models.values(), key=lambda model: (model.num_points3D() > 0, model.num_reg_images()), default=None)


def _incremental(database: Path, images_dir: Path, work_dir: Path, threads: int,
                 on_registered: Callable[[int], None]) -> dict[int, pycolmap.Reconstruction]:
    options = pycolmap.IncrementalPipelineOptions(num_threads=threads, random_seed=RANDOM_SEED,
                                                  min_model_size=MIN_REGISTERED)
    options.mapper.abs_pose_min_num_inliers = MIN_POSE_INLIERS
    registered = [0]

    def initial_pair() -> None:  # each new model starts from a pair of photos
        registered[0] = 2
        on_registered(registered[0])

    def next_image() -> None:
        registered[0] += 1
        on_registered(registered[0])

    return pycolmap.incremental_mapping(database, images_dir, work_dir, options=options,
                                        initial_image_pair_callback=initial_pair,
                                        next_image_callback=next_image)


def _global(database: Path, images_dir: Path, work_dir: Path, threads: int) -> dict[int, pycolmap.Reconstruction]:
    options = pycolmap.GlobalPipelineOptions(num_threads=threads, random_seed=RANDOM_SEED,
                                             min_model_size=MIN_REGISTERED)
    # its solvers ask for the GPU by default and log a warning on every run without one
    options.mapper.global_positioning.use_gpu = pycolmap.has_cuda
    options.mapper.bundle_adjustment.ceres.use_gpu = pycolmap.has_cuda
    return pycolmap.global_mapping(database, images_dir, work_dir, options=options)
