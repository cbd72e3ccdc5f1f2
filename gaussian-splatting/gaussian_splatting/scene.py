"""The SfM output the trainer reads: a COLMAP model of PINHOLE cameras, their images and the
train/test split. The only module that imports pycolmap.

Layout of ``source`` (written by the SfM stage, as the 3DGS reference trainer expects):
``images/``, ``sparse/0/`` (COLMAP binary model), ``points.ply``, ``train.txt``, ``test.txt``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pycolmap
import torch
from PIL import Image
from torch import Tensor

log = logging.getLogger(__name__)

IMAGES_DIR = "images"
SPARSE_DIR = "sparse/0"
TRAIN_FILE = "train.txt"
TEST_FILE = "test.txt"


@dataclass(frozen=True)
class TrainingView:
    """One photo with its camera, at the resolution training uses."""

    name: str  # file name under images/
    image: Tensor  # [H, W, 3] float32 in [0, 1]
    viewmat: Tensor  # [4, 4] world to camera (OpenCV axes)
    K: Tensor  # [3, 3] intrinsics for this image size

    @property
    def width(self) -> int:
        return self.image.shape[1]

    @property
    def height(self) -> int:
        return self.image.shape[0]

    def to(self, device: torch.device) -> TrainingView:
        return replace(self, image=self.image.to(device), viewmat=self.viewmat.to(device), K=self.K.to(device))

    def downscaled(self, factor: int) -> TrainingView:
        """This view at 1/``factor`` of its size on each side: ``factor`` x ``factor`` pixel
        blocks averaged (the last rows and columns dropped when the size is not a multiple) and
        K divided by ``factor``, which keeps every block's centre where the camera sees it."""
        if factor == 1:
            return self
        height, width = self.height // factor * factor, self.width // factor * factor
        if height == 0 or width == 0:
            raise ValueError(f"{self.name}: {self.width}x{self.height} is too small to shrink {factor} times")
        blocks = self.image[:height, :width].reshape(height // factor, factor, width // factor, factor, -1)
        K = self.K.clone()
        K[:2] /= factor
        return replace(self, image=blocks.mean(dim=(1, 3)).contiguous(), K=K)

    @property
    def centre(self) -> Tensor:
        """[3] the camera centre in world coordinates."""
        rotation, translation = self.viewmat[:3, :3], self.viewmat[:3, 3]
        return -rotation.T @ translation


def read_split(source: Path, file_name: str) -> list[str]:
    """Image names listed one per line in ``source/file_name`` (missing file: none)."""
    path = source / file_name
    if not path.exists():
        return []
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def load_views(source: Path, names: list[str] | None, resolution_scale: int = 1) -> list[TrainingView]:
    """The registered images named in ``names`` (all of them when None), sorted by name.

    Images are read at 1/``resolution_scale`` of their size and K is scaled to match.
    """
    model = pycolmap.Reconstruction(source / SPARSE_DIR)
    wanted = None if names is None else set(names)
    views = []
    for image in sorted(model.images.values(), key=lambda im: im.name):
        if not image.has_pose or (wanted is not None and image.name not in wanted):
            continue
        camera = model.cameras[image.camera_id]
        if camera.model_name not in ("PINHOLE", "SIMPLE_PINHOLE"):
            raise ValueError(f"{image.name}: camera model {camera.model_name}; the trainer needs undistorted pinhole cameras")
        pixels = _read_image(source / IMAGES_DIR / image.name, resolution_scale)
        K = torch.tensor(camera.calibration_matrix(), dtype=torch.float32)
        K[0] *= pixels.shape[1] / camera.width
        K[1] *= pixels.shape[0] / camera.height
        viewmat = torch.eye(4, dtype=torch.float32)
        viewmat[:3] = torch.tensor(image.cam_from_world().matrix(), dtype=torch.float32)
        views.append(TrainingView(name=image.name, image=pixels, viewmat=viewmat, K=K))
    if wanted is not None and len(views) != len(wanted):
        missing = sorted(wanted - {v.name for v in views})
        log.warning("%d listed images are not in the model: %s", len(missing), missing[:5])
    return views


def _read_image(path: Path, resolution_scale: int) -> Tensor:
    """[H, W, 3] float32 in [0, 1], box-filtered down by ``resolution_scale``."""
    with Image.open(path) as opened:
        image = opened.convert("RGB")
        if resolution_scale > 1:
            size = (max(1, image.width // resolution_scale), max(1, image.height // resolution_scale))
            image = image.resize(size, Image.Resampling.BOX)
        return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)


def scene_extent(views: list[TrainingView]) -> float:
    """1.1 x the largest distance of a camera centre from their mean, as 3DGS scales its
    learning rates and size thresholds (1.0 when all cameras sit in one place)."""
    centres = torch.stack([view.centre for view in views])
    radius = (centres - centres.mean(dim=0)).norm(dim=-1).max().item()
    return 1.1 * radius if radius > 1e-6 else 1.0
