"""The structure-from-motion stage: camera poses and sparse points for the ingested photos.

Runs pycolmap (COLMAP's Python bindings: SIFT features, matching, mapping, undistortion) on
``ingest/images`` and leaves in its folder a layout that our trainer and other tools read
as it is: ``images/`` (undistorted, PINHOLE), ``sparse/0/`` (COLMAP binary model of those
images), ``points.ply``, ``train.txt`` and ``test.txt``. The COLMAP database and the
distorted model stay in a scratch folder that is removed at the end, so that no later stage
comes to depend on COLMAP's internals.

SIFT extraction and matching run on the GPU where pycolmap is its CUDA build (pycolmap-cuda12,
which deploy/install.sh installs where nvidia-smi lists a GPU) and the host trains on the GPU
(train_backend: "cpu" keeps this host's work off the GPU); else on the CPU. The metrics say
which (``device``).
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import pycolmap

from stages.base import ProgressReporter, Stage, StageContext, StageFailed, StageResult
from stages.compute_backend import training_backend
from stages.colmap_export import IMAGES_DIR, POINTS_FILE, SPARSE_DIR, export_undistorted
from stages.colmap_features import extract_features
from stages.colmap_mapping import GLOBAL, check_mapper, reconstruct
from stages.colmap_matching import match_features, plan_matching
from stages.sfm_inputs import IngestedSet, read_ingested
from stages.sfm_progress import FEATURES, MAPPING, MATCHING, UNDISTORTING
from stages.sfm_quality import check_points, check_registration, unplaced_reasons
from stages.sfm_split import MIN_PHOTOS_TO_HOLD_ONE_OUT, TEST_FILE, TRAIN_FILE, split_held_out

SCRATCH_DIR = "scratch"  # COLMAP database, distorted models, undistorter leftovers

log = logging.getLogger("stages.sfm")


def sfm_device(train_backend: str, has_cuda: bool = pycolmap.has_cuda) -> pycolmap.Device:
    """Where SIFT extraction and matching run: CUDA where this pycolmap build has it and the
    host trains on the GPU (``train_backend`` as the setting says it), else the CPU."""
    if has_cuda and training_backend(train_backend) == "cuda":
        return pycolmap.Device.cuda
    return pycolmap.Device.cpu


class SfmStage(Stage):
    name = "sfm"

    def run(self, context: StageContext, report: ProgressReporter) -> StageResult:
        started = time.monotonic()
        check_mapper(context.settings["sfm_mapper"])
        # COLMAP's per-image lines would drown job.log; its warnings and errors still reach it
        pycolmap.logging.minloglevel = pycolmap.logging.Level.WARNING.value
        photo_set = read_ingested(context.stage_dir("ingest"))
        scratch = context.output_dir / SCRATCH_DIR
        scratch.mkdir()
        try:
            return _reconstruct(context, photo_set, scratch, report, started)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def _reconstruct(context: StageContext, photo_set: IngestedSet, scratch: Path,
                 report: ProgressReporter, started: float) -> StageResult:
    settings = context.settings
    threads = int(settings["threads"])
    mapper = settings["sfm_mapper"]
    total = len(photo_set.photos)
    shared_camera = photo_set.shares_one_camera()
    plan = plan_matching(total, int(settings["sfm_exhaustive_max_images"]), settings["sfm_vocab_tree_path"])
    database = scratch / "database.db"
    device = sfm_device(settings.get("train_backend", "auto"))

    log.info("features: %d photos, %s, on %s", total, "one shared camera" if shared_camera else "a camera per photo",
             device.name)
    extract_features(database, photo_set, shared_camera=shared_camera, threads=threads, device=device,
                     on_progress=lambda done, of: report(FEATURES.at(done, of), f"features {done}/{of}"))

    log.info("matching: %s%s", plan.method, ", loop detection" if plan.vocab_tree else "")
    if plan.detail:
        log.warning("%s", plan.detail)  # status.json has the person's half (plan.warning)
    report(MATCHING.start, "matching")
    match_features(database, plan, threads=threads, device=device)

    log.info("mapping: %s", mapper)
    report(MAPPING.start, f"registering {total} photos (global mapper)" if mapper == GLOBAL else f"registered 0/{total}")
    model = reconstruct(database, photo_set.images_dir, scratch / "models", mapper=mapper, threads=threads,
                        on_registered=lambda count: report(MAPPING.at(count, total), f"registered {count}/{total}"))

    registered = sorted(model.images[image_id].name for image_id in model.reg_image_ids()) if model else []
    placed = set(registered)
    unplaced = [photo.name for photo in photo_set.photos if photo.name not in placed]
    unregistered = photo_set.sources(unplaced)
    reasons = unplaced_reasons(database, unplaced, placed)
    left_out = {
        "unregistered": unregistered,
        # the same photos, each with why, in the person's words
        "unplaced": [{"file": file, "reason": reasons[name]} for name, file in zip(unplaced, unregistered)],
    }
    warnings = [plan.warning] if plan.warning else []
    try:
        warnings += check_registration(len(registered), unregistered, float(settings["sfm_min_registered_fraction"]))
        check_points(model.num_points3D(), len(registered))
    except StageFailed as failure:  # the failed job's page lists the photos and why each was left out
        raise StageFailed(failure.message, hint=failure.hint, metrics=left_out) from failure
    # past the gate, a model with at least 3 photos exists
    log.info("registered %d of %d photos, %d points", len(registered), total, model.num_points3D())

    report(UNDISTORTING.start, "undistorting")
    export_undistorted(model, photo_set.images_dir, context.output_dir, scratch, threads=threads)
    hold_out = bool(context.options.get("eval", True))
    split = split_held_out(registered, hold_out)
    split.write(context.output_dir)
    if split.scores_training_views:
        warnings.append(f"only {len(registered)} photos were placed, too few to keep one out of training to measure "
                        f"the model: its scores are on the photos it trained on, which flatter it; "
                        f"{MIN_PHOTOS_TO_HOLD_ONE_OUT} or more placed photos get a held-out score")

    metrics: dict[str, Any] = {
        "registered": len(registered),
        "total": total,
        "points": model.num_points3D(),
        "mean_reprojection_error": round(model.compute_mean_reprojection_error(), 3),  # pixels
        "mean_track_length": round(model.compute_mean_track_length(), 2),  # photos per point
        "cameras": "shared" if shared_camera else "per photo",
        "matching": plan.method,
        "loop_detection": plan.vocab_tree is not None,
        "mapper": mapper,
        "device": device.name,  # SIFT extraction and matching: "cuda" or "cpu"
        "train": len(split.train),
        "test": len(split.test),
        "held_out_rule": split.rule,
        "held_out_photos": photo_set.sources(list(split.test)),
        **left_out,
        "seconds": round(time.monotonic() - started, 3),
    }
    return StageResult(metrics=metrics, outputs=_outputs(context), warnings=tuple(warnings))


def _outputs(context: StageContext) -> dict[str, str]:
    folder = context.output_dir.relative_to(context.job_dir).as_posix()
    return {
        "images": f"{folder}/{IMAGES_DIR}",
        "sparse": f"{folder}/{SPARSE_DIR}",
        "points": f"{folder}/{POINTS_FILE}",
        "train": f"{folder}/{TRAIN_FILE}",
        "test": f"{folder}/{TEST_FILE}",
    }
