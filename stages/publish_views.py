"""The publish stage's pictures: which training camera to show the scene from, and the poster
and thumbnail rendered from it.

The camera is the training camera that sees the most of the published Gaussians' centres (in
front of it and inside its picture), counted on a fixed sample of at most ``COUNT_SAMPLE``
centres; ties go to the first in cameras.json's order (the trainer's: by image name). So a view
of the whole scene wins over a close-up of one part, whatever the capture's layout: an orbit
around an object, a walk through a room, a facade. Cameras and centres may be in any one frame
(the count does not change when both move together).

The pictures are rendered from the photo's own SfM camera (its exact intrinsics, principal
point included) at the photo's aspect: the poster at most ``POSTER_LONG_SIDE`` pixels on its
long side and never larger than the images the model was trained on (a model fit to 200 px
images shows needles and gaps at 800); the thumbnail is the poster scaled down to
``THUMBNAIL_LONG_SIDE``, or the poster itself when that is smaller: never scaled up. JPEG, no
metadata (``web_images``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from gaussian_splatting.gaussians import Gaussians
from gaussian_splatting.outputs import camera_entries
from gaussian_splatting.ply_import import sh_degree_of
from gaussian_splatting.projection import ProjectionSettings
from gaussian_splatting.rasterize import rasterize, resolve_backend
from gaussian_splatting.scene import IMAGES_DIR, TEST_FILE, TRAIN_FILE, load_views, read_split

from stages.publish_frame import PublishedFrame
from stages.web_images import fitted_size

POSTER_LONG_SIDE = 1280
THUMBNAIL_LONG_SIDE = 320
COUNT_SAMPLE = 20_000  # centres sampled to score the cameras: plenty to rank them
SEED = 0


@dataclass(frozen=True)
class RenderCamera:
    """A pinhole camera at the photo's size: ``viewmat`` [4, 4] world to camera (OpenCV axes),
    ``K`` [3, 3] for ``width`` x ``height`` pixels."""

    name: str
    viewmat: Tensor
    K: Tensor
    width: int
    height: int


def read_camera_entries(model_dir: Path, sfm_dir: Path, training_names: list[str] | None,
                        resolution_scale: int) -> list[dict[str, Any]]:
    """The trainer's cameras.json, or the same made from the SfM training views when it wrote none."""
    path = model_dir / "cameras.json"
    if path.exists():
        return list(json.loads(path.read_text()))
    return camera_entries(load_views(sfm_dir, training_names, resolution_scale))


def with_held_out(training: Sequence[Mapping[str, Any]], sfm_dir: Path, training_names: list[str] | None,
                  resolution_scale: int) -> list[dict[str, Any]]:
    """Every placed photo's camera, in photo-name order: the ``training`` entries and, marked
    ``"held_out": true``, those of the photos evaluation scores (``test.txt``), made as the trainer
    makes its own, at the same ``resolution_scale``; ``id`` is the position in the list. A person
    counts the photos they took, and the viewer can show each held-out photo's view."""
    if training_names is None:
        return [dict(entry) for entry in training]  # trained on every placed photo
    taken = set(training_names)
    held_out_names = [name for name in read_split(sfm_dir, TEST_FILE) if name not in taken]
    if not held_out_names:
        return [dict(entry) for entry in training]
    held_out = [{**entry, "held_out": True}
                for entry in camera_entries(load_views(sfm_dir, held_out_names, resolution_scale))]
    names = {Path(name).stem: name for name in [*training_names, *held_out_names]}  # img_name is the stem
    ordered = sorted([*training, *held_out], key=lambda entry: names.get(entry["img_name"], entry["img_name"]))
    return [{**entry, "id": index} for index, entry in enumerate(ordered)]


def visible_centres(entry: Mapping[str, Any], points: np.ndarray) -> int:
    """How many of ``points`` [N, 3] lie in front of the cameras.json camera and inside its picture."""
    # world to camera: R^T (x - position), R the camera-to-world rotation; rows: (x - p) @ R
    local = (points - np.asarray(entry["position"], dtype=np.float64)) @ np.asarray(entry["rotation"], dtype=np.float64)
    depth = local[:, 2]
    front = depth > ProjectionSettings().near_plane
    u = entry["fx"] * local[front, 0] / depth[front] + entry["width"] / 2
    v = entry["fy"] * local[front, 1] / depth[front] + entry["height"] / 2
    return int(np.count_nonzero((u >= 0) & (u < entry["width"]) & (v >= 0) & (v < entry["height"])))


def choose_camera(entries: Sequence[Mapping[str, Any]], means: np.ndarray) -> int:
    """Index of the camera that sees the most centres (see the module's docstring)."""
    if not entries:
        raise ValueError("no training cameras to render the poster from")
    points = np.asarray(means, dtype=np.float64)
    if points.shape[0] > COUNT_SAMPLE:
        rng = np.random.default_rng(SEED)
        points = points[np.sort(rng.choice(points.shape[0], COUNT_SAMPLE, replace=False))]
    counts = [visible_centres(entry, points) for entry in entries]
    return int(np.argmax(counts))  # the first of equals


def render_camera(entry: Mapping[str, Any], sfm_dir: Path, frame: PublishedFrame) -> RenderCamera:
    """The full-size SfM camera of the photo that ``entry`` (a cameras.json entry in the published
    ``frame``) names, moved into that frame; when no such photo is in the SfM model, the entry
    itself with its principal point at the centre."""
    for name in _photo_names(sfm_dir, str(entry["img_name"])):
        views = load_views(sfm_dir, [name])
        if views:
            view = views[0]
            return RenderCamera(view.name, frame.viewmat(view.viewmat).float(), view.K, view.width, view.height)
    rotation = torch.tensor(entry["rotation"], dtype=torch.float64).T  # world to camera
    viewmat = torch.eye(4, dtype=torch.float64)
    viewmat[:3, :3] = rotation
    viewmat[:3, 3] = -rotation @ torch.tensor(entry["position"], dtype=torch.float64)
    width, height = int(entry["width"]), int(entry["height"])
    K = torch.tensor([[entry["fx"], 0.0, width / 2], [0.0, entry["fy"], height / 2], [0.0, 0.0, 1.0]])
    return RenderCamera(str(entry["img_name"]), viewmat.float(), K.float(), width, height)


def _photo_names(sfm_dir: Path, img_name: str) -> list[str]:
    """Photo file names that cameras.json's ``img_name`` (the stem, as the reference writes it, or
    the whole name) can mean: the training split's first, then any in images/."""
    def matches(name: str) -> bool:
        return name == img_name or Path(name).stem == img_name

    listed = [name for name in read_split(sfm_dir, TRAIN_FILE) if matches(name)]
    images = sfm_dir / IMAGES_DIR
    found = sorted(path.name for path in images.iterdir() if matches(path.name)) if images.is_dir() else []
    return listed + [name for name in found if name not in listed]


def render_stills(state: Mapping[str, Tensor], camera: RenderCamera, backend: str,
                  resolution_scale: int = 1) -> tuple[Image.Image, Image.Image]:
    """The poster and the thumbnail of the Gaussians (raw parameters, as ``read_ply`` gives
    them) seen by ``camera``, on a black background as they were trained; the model was trained
    on the photos at 1/``resolution_scale`` of their size."""
    longest = min(POSTER_LONG_SIDE, max(camera.width, camera.height) // max(1, resolution_scale))
    poster_size = fitted_size(camera.width, camera.height, longest)
    device = torch.device(resolve_backend(backend))
    inputs = Gaussians.from_state(dict(state), device).render_inputs()
    sh_degree = sh_degree_of(dict(state))

    def render(size: tuple[int, int]) -> Image.Image:
        K = camera.K.clone()
        K[0] *= size[0] / camera.width
        K[1] *= size[1] / camera.height
        with torch.no_grad():
            image, _, _ = rasterize(
                **inputs, viewmat=camera.viewmat.to(device), K=K.to(device), width=size[0], height=size[1],
                sh_degree=sh_degree, backend=backend,
            )  # fmt: skip
        pixels = (image.clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
        return Image.fromarray(pixels)

    poster = render(poster_size)
    thumbnail_size = fitted_size(poster.width, poster.height, THUMBNAIL_LONG_SIDE)
    # never larger than the poster: one at training size on the CPU is smaller than a thumbnail
    thumbnail = poster if thumbnail_size == poster.size else poster.resize(thumbnail_size, Image.Resampling.LANCZOS)
    return poster, thumbnail
