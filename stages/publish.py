"""The publish stage: the trained model cleaned up and exported for viewers, with its pictures.

From the train stage's PLY: floaters removed (``gaussian_splatting.outliers``; settings
``publish_outlier_k``, ``publish_outlier_std_ratio``, ``publish_min_cluster_fraction``), then
the scene moved into the published frame: centred on the mean of the Gaussians' centres, +y up,
facing the poster's camera (``publish_frame``); centres, orientations and view-dependent colour
turn together (``gaussian_splatting.rigid_motion``). Written here, each file atomically:
``scene.ply`` (the standard 3DGS PLY), ``scene.splat`` (antimatter15's format), ``scene.sog``
(PlayCanvas's compressed format, all SH bands: ``gaussian_splatting.sog_export``) and, for each
splat budget in ``publish_levels`` that the scene exceeds, ``scene.lod1.sog``, ``scene.lod2.sog``, ...:
the whole scene in at most that many Gaussians (``gaussian_splatting.level_of_detail``), which a
viewer with that budget loads instead of cutting the scene short; ``cameras.json``
(every placed photo's camera in the published frame, in photo-name order and the trainer's
format, so a viewer can start at one of them; the photos held out for evaluation are marked
``"held_out": true``; each entry also holds the transform from COLMAP's frame), ``poster.jpg`` and
``thumb.jpg`` (see ``publish_views`` for the camera they are rendered from). The daemon copies
them into ``<outbox>/<job_id>/``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from gaussian_splatting.atomic_write import write_atomically, write_text_atomically
from gaussian_splatting.level_of_detail import coarser
from gaussian_splatting.outliers import OutlierSettings, filter_gaussians, find_outliers
from gaussian_splatting.ply_export import write_ply
from gaussian_splatting.ply_import import read_ply
from gaussian_splatting.rigid_motion import moved_state
from gaussian_splatting.scene import TRAIN_FILE, read_split
from gaussian_splatting.sog_export import write_sog
from gaussian_splatting.splat_export import write_splat
from stages.base import ProgressReporter, Stage, StageContext, StageFailed, StageResult, read_result
from stages.compute_backend import training_backend
from stages.publish_frame import published_frame
from stages.publish_views import choose_camera, read_camera_entries, render_camera, render_stills, with_held_out
from stages.web_images import jpeg_bytes

log = logging.getLogger("stages.publish")

SCENE_PLY = "scene.ply"
SCENE_SPLAT = "scene.splat"
SCENE_SOG = "scene.sog"
LEVEL_SOG = "scene.lod{}.sog"  # scene.lod1.sog, the biggest coarser level, and so on down
CAMERAS = "cameras.json"
THUMBNAIL = "thumb.jpg"
POSTER = "poster.jpg"

# A filter that would keep less than this share of the Gaussians has misjudged the scene (one
# dense cluster in a sparse capture, say): the model is published unfiltered, with a warning.
MIN_KEPT_FRACTION = 0.01


class PublishStage(Stage):
    name = "publish"

    def run(self, context: StageContext, report: ProgressReporter) -> StageResult:
        started = time.monotonic()
        settings, output, sfm_dir = context.settings, context.output_dir, context.stage_dir("sfm")
        trained = read_result(context, "train")
        report(0.0, "reading the trained model")
        state = read_ply(context.job_dir / trained.outputs["ply"])
        before = int(state["means"].shape[0])
        if before == 0:
            raise StageFailed("the trained model holds no Gaussians: there is nothing to publish",
                              hint="check that the photos overlap and show one scene, then drop the set again")

        report(10.0, f"removing outliers from {before:,} Gaussians")
        state, removed, warnings = _without_outliers(state, settings)
        kept = int(state["means"].shape[0])

        report(30.0, "turning the scene upright")
        centre = state["means"].double().mean(dim=0).numpy()
        training_names = (read_split(sfm_dir, TRAIN_FILE) or None) if context.options.get("eval", True) else None
        scale = int(trained.metrics.get("resolution_scale", 1))
        training = read_camera_entries(context.job_dir / trained.outputs["model"], sfm_dir, training_names, scale)
        # which camera sees most does not depend on the scene's orientation: chosen before it is set;
        # among the training cameras only: the poster shows the scene from a view the model learnt
        recentred = [{**entry, "position": (np.asarray(entry["position"]) - centre).tolist()} for entry in training]
        chosen = choose_camera(recentred, (state["means"].double() - torch.from_numpy(centre)).numpy())
        frame = published_frame(training, centre, training[chosen])
        state = moved_state(state, frame.rotation, frame.centre)
        cameras = frame.camera_entries(with_held_out(training, sfm_dir, training_names, scale))
        log.info("published frame: up from the %s, %.1f degrees from COLMAP's -y", frame.up_from,
                 math.degrees(math.acos(np.clip(-frame.rotation[1, 1], -1.0, 1.0))))

        report(40.0, f"writing {SCENE_PLY}")
        write_ply(output / SCENE_PLY, state)
        report(45.0, f"writing {SCENE_SPLAT}")
        write_splat(output / SCENE_SPLAT, state)
        # the slow one: 6 to 18 s per million Gaussians on two cores, most of it the SH palette
        report(50.0, f"writing {SCENE_SOG}")
        levels = [_write_level(output / SCENE_SOG, state)]
        budgets = [int(budget) for budget in settings.get("publish_levels", ()) if int(budget) < kept]
        for number, budget in enumerate(sorted(budgets, reverse=True), start=1):
            name = LEVEL_SOG.format(number)
            report(50.0 + 10.0 * number / len(budgets), f"writing {name}: the scene in at most {budget:,} Gaussians")
            levels.append(_write_level(output / name, coarser(state, budget)))
        write_text_atomically(output / CAMERAS, json.dumps(cameras))

        report(65.0, "rendering the poster and the thumbnail")
        camera = render_camera(frame.camera_entries([training[chosen]])[0], sfm_dir, frame)
        poster, thumbnail = render_stills(state, camera, training_backend(str(settings.get("train_backend", "auto"))), scale)
        _write_jpeg(output / POSTER, poster)
        _write_jpeg(output / THUMBNAIL, thumbnail)
        log.info("poster %dx%d and thumbnail rendered from %s", poster.width, poster.height, camera.name)
        report(100.0, f"published {kept:,} Gaussians")

        metrics: dict[str, Any] = {
            "gaussians": kept,
            "gaussians_before": before,
            **removed,
            "frame": frame.to_json(),  # from COLMAP's frame (the SfM model, the trained PLY) to the published one
            "splat_bytes": (output / SCENE_SPLAT).stat().st_size,
            "sog_bytes": levels[0]["bytes"],
            "levels": levels,  # the .sog files, the whole scene first: what a viewer with a splat budget may load
            "ply_bytes": (output / SCENE_PLY).stat().st_size,
            "view": camera.name,  # the photo whose camera the poster and thumbnail show
            "seconds": round(time.monotonic() - started, 3),
        }
        folder = output.relative_to(context.job_dir).as_posix()
        outputs = {
            "scene_ply": f"{folder}/{SCENE_PLY}",
            "scene_splat": f"{folder}/{SCENE_SPLAT}",
            "scene_sog": f"{folder}/{SCENE_SOG}",
            **{f"scene_sog_lod{number}": f"{folder}/{level['file']}" for number, level in enumerate(levels[1:], start=1)},
            "cameras": f"{folder}/{CAMERAS}",
            "thumbnail": f"{folder}/{THUMBNAIL}",
            "poster": f"{folder}/{POSTER}",
        }
        return StageResult(metrics=metrics, outputs=outputs, warnings=tuple(warnings), to_outbox=tuple(outputs))


def _write_level(path: Path, state: dict[str, Tensor]) -> dict[str, Any]:
    """Write ``state`` as a .sog; its entry in metrics.publish.levels."""
    started = time.monotonic()
    write_sog(path, state)
    gaussians, size = int(state["means"].shape[0]), path.stat().st_size
    log.info("%s: %s Gaussians, %.1f MB, %.1f bytes a Gaussian, written in %.1f s", path.name, f"{gaussians:,}",
             size / 1e6, size / max(gaussians, 1), time.monotonic() - started)
    return {"file": path.name, "gaussians": gaussians, "bytes": size}


def _without_outliers(state: dict[str, Tensor], settings: Mapping[str, Any]
                      ) -> tuple[dict[str, Tensor], dict[str, int], list[str]]:
    """The Gaussians the outlier filter keeps, the counts it removed, and a warning when it
    would keep (nearly) nothing: then every Gaussian with a finite centre stays."""
    before = int(state["means"].shape[0])
    defaults = OutlierSettings()  # for a context written before these settings existed
    found = find_outliers(state["means"], OutlierSettings(
        k=int(settings.get("publish_outlier_k", defaults.k)),
        std_ratio=float(settings.get("publish_outlier_std_ratio", defaults.std_ratio)),
        min_cluster_fraction=float(settings.get("publish_min_cluster_fraction", defaults.min_cluster_fraction)),
    ))
    keep, warnings = found.keep, []
    removed = {"removed_statistical": found.removed_statistical, "removed_clusters": found.removed_clusters}
    if found.kept < max(1, MIN_KEPT_FRACTION * before):
        keep = np.all(np.isfinite(state["means"].numpy()), axis=1)
        if not keep.any():
            raise RuntimeError("the trained model holds no Gaussian with a finite position")
        removed = {"removed_statistical": before - int(keep.sum()), "removed_clusters": 0}
        warnings.append(f"the outlier filter would have kept only {found.kept:,} of {before:,} Gaussians; "
                        "published the model unfiltered")
        log.warning("%s", warnings[-1])
    log.info("kept %d of %d Gaussians (removed: %d statistical outliers, %d in small clusters)",
             int(keep.sum()), before, removed["removed_statistical"], removed["removed_clusters"])
    return filter_gaussians(state, keep), removed, warnings


def _write_jpeg(path: Path, picture: Image.Image) -> None:
    data = jpeg_bytes(picture)
    write_atomically(path, lambda handle: handle.write(data))
