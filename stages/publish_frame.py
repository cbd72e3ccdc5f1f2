"""The frame a scene is published in: centred on its Gaussians, +y up, facing the poster's camera.

COLMAP's frame is whatever the first cameras it registered made it: its y axis points down in
most sets, and Spark, PlayCanvas and SuperSplat, which take +y as up, show such a scene upside
down. The published frame is ``x_published = rotation @ (x_colmap - centre)``, ``centre`` the
mean of the Gaussians' centres (web viewers work in float32, which loses precision far from the
origin), ``rotation`` the product of two turns:

Level: people hold cameras upright (and ingest applies the EXIF orientation), so each camera's
right axis is horizontal, however far it looks up or down; up is the direction perpendicular to
all of them (the least eigenvector of the sum of r r^T), on the side of the cameras' mean up
direction (-y of each camera). The mean up direction alone tilts forward wherever the cameras
look down at an object from one side: on the demo set's 105-degree arc of cameras pitched 20
degrees down it is 17.7 degrees off the true vertical, on herz-jesu-p8 10 degrees off the
benchmark's, where the right axes are within 0.3 and 0.9. When the right axes do not pin down a
plane (the cameras all face one way, and their roll is comparable to their spread of headings:
the plane's tilt is then uncertain by about sqrt(l3 / l2) radians, l the eigenvalues), up is the
cameras' mean up direction less its part along their common right axis.

Yaw: turned about the vertical so that the poster's camera (see ``publish_views``) has its right
axis along +x, so it looks along -z: the way OpenGL-style viewers look by default, so one that
opens a download with its own default camera faces the side of the scene the poster shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

# The right axes pin down up only when their plane's tilt is known to within this much.
RIGHT_AXES_MAX_UNCERTAINTY_DEGREES = 8.0
MAPS = "x_published = rotation (x_colmap - centre); back: x_colmap = rotation^T x_published + centre"


@dataclass(frozen=True)
class PublishedFrame:
    """``x_published = rotation @ (x_colmap - centre)``; camera-to-world rotations turn by ``rotation``."""

    rotation: np.ndarray  # [3, 3] float64, a proper rotation
    centre: np.ndarray  # [3] float64, the COLMAP point that becomes the origin
    up_from: str  # how up was found: "camera right axes" or "camera up directions"

    def points(self, points: np.ndarray) -> np.ndarray:
        """[N, 3] COLMAP points in the published frame (float64)."""
        return (np.asarray(points, dtype=np.float64) - self.centre) @ self.rotation.T

    def camera_entries(self, entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """cameras.json entries (the trainer's, in COLMAP's frame) moved into this frame, each
        with the transform under ``colmap_to_published``, a key the readers of the format skip."""
        transform = {"rotation": self.rotation.tolist(), "centre": self.centre.tolist()}
        return [
            {
                **entry,
                "position": self.points(np.asarray(entry["position"])[None])[0].tolist(),
                "rotation": (self.rotation @ np.asarray(entry["rotation"], dtype=np.float64)).tolist(),
                "colmap_to_published": transform,
            }
            for entry in entries
        ]

    def viewmat(self, viewmat: Tensor) -> Tensor:
        """A world-to-camera matrix [4, 4] of COLMAP's frame, for this frame (float64):
        x_cam = W x_colmap + t = W R^T x_published + (t + W centre)."""
        colmap = viewmat.double()
        moved = colmap.clone()
        moved[:3, :3] = colmap[:3, :3] @ torch.from_numpy(self.rotation).T
        moved[:3, 3] = colmap[:3, 3] + colmap[:3, :3] @ torch.from_numpy(self.centre)
        return moved

    def to_json(self) -> dict[str, Any]:
        return {"rotation": self.rotation.tolist(), "centre": self.centre.tolist(), "maps": MAPS,
                "up_from": self.up_from}


def published_frame(entries: Sequence[Mapping[str, Any]], centre: np.ndarray,
                    poster: Mapping[str, Any]) -> PublishedFrame:
    """The frame for cameras.json ``entries`` in COLMAP's frame (see the module's docstring);
    ``poster`` is the entry of the poster's camera."""
    up, up_from = up_direction(np.array([entry["rotation"] for entry in entries], dtype=np.float64))
    level = rotation_between(up, np.array([0.0, 1.0, 0.0]))
    right = level @ np.asarray(poster["rotation"], dtype=np.float64)[:, 0]
    heading = math.atan2(right[2], right[0])  # of the right axis in the x-z plane, from +x towards +z
    turn = _about_y(heading) if math.hypot(right[0], right[2]) > 1e-6 else np.eye(3)
    return PublishedFrame(turn @ level, np.asarray(centre, dtype=np.float64), up_from)


def up_direction(rotations: np.ndarray) -> tuple[np.ndarray, str]:
    """The world's up (unit) from camera-to-world rotations [N, 3, 3] (OpenCV camera axes), and
    how it was found."""
    ups = -rotations[:, :, 1]
    mean_up = _unit(ups.sum(axis=0), fallback=ups[0])
    rights = rotations[:, :, 0]
    values, vectors = np.linalg.eigh(rights.T @ rights / len(rights))  # ascending
    spread, tilt = values[1], max(values[0], 0.0)
    if spread > 0 and tilt <= spread * math.tan(math.radians(RIGHT_AXES_MAX_UNCERTAINTY_DEGREES)) ** 2:
        normal = vectors[:, 0]
        return (normal if normal @ mean_up >= 0 else -normal), "camera right axes"
    common_right = vectors[:, 2]
    return _unit(mean_up - (mean_up @ common_right) * common_right, fallback=mean_up), "camera up directions"


def rotation_between(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The smallest rotation taking unit ``source`` to unit ``target`` (about their cross product;
    half a turn about an axis perpendicular to both when they are opposite)."""
    axis = np.cross(source, target)
    sine, cosine = np.linalg.norm(axis), float(source @ target)
    if sine < 1e-12:
        if cosine > 0:
            return np.eye(3)
        helper = np.eye(3)[int(np.argmin(np.abs(source)))]
        axis = _unit(np.cross(source, helper), fallback=helper)
        return 2.0 * np.outer(axis, axis) - np.eye(3)
    axis = axis / sine
    cross = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return np.eye(3) + sine * cross + (1 - cosine) * cross @ cross


def _about_y(angle: float) -> np.ndarray:
    """Rotation by ``angle`` about +y, signed so that (cos a, 0, sin a) goes to +x."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _unit(vector: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(vector)
    return vector / norm if norm > 1e-9 else np.asarray(fallback, dtype=np.float64) / np.linalg.norm(fallback)
