"""Test helper: a tiny SfM output written from a known random Gaussian scene.

Cameras on a ring look at the scene; their images are rendered by ``rasterize`` itself, so the
cameras are exact and the trainer has a target it can really fit. The COLMAP model is written
with pycolmap as the SfM stage writes it (PINHOLE cameras, images/, sparse/0/, points.ply,
train.txt, test.txt); the points are the true centres, jittered, with their colours.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pycolmap
import torch
from PIL import Image

from gaussian_splatting import rasterize
from gaussian_splatting.spherical_harmonics import SH_C0

WIDTH, HEIGHT, FOCAL = 64, 48, 56.0


def look_at(position: np.ndarray) -> np.ndarray:
    """[3, 4] world-to-camera (OpenCV axes) for a camera at ``position`` facing the origin."""
    forward = -position / np.linalg.norm(position)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])
    return np.hstack([rotation, (-rotation @ position)[:, None]])


def scene_gaussians(seed: int = 0, n_gaussians: int = 120) -> dict[str, torch.Tensor]:
    """The scene the photos show, as raw parameters (the trainer's and the PLY's form):
    means, log_scales, quats, opacity_logits, sh_dc [N, 1, 3] and sh_rest (zeros, degree 3)."""
    generator = torch.Generator().manual_seed(seed)
    means = (torch.rand(n_gaussians, 3, generator=generator) * 2 - 1) * torch.tensor([1.0, 1.0, 0.6])
    scales = 0.08 + 0.12 * torch.rand(n_gaussians, 3, generator=generator)
    quats = torch.randn(n_gaussians, 4, generator=generator)
    opacities = 0.6 + 0.35 * torch.rand(n_gaussians, generator=generator)
    colours = torch.rand(n_gaussians, 3, generator=generator)
    return {
        "means": means,
        "log_scales": scales.log(),
        "quats": quats,
        "opacity_logits": torch.logit(opacities),
        "sh_dc": ((colours - 0.5) / SH_C0)[:, None, :],
        "sh_rest": torch.zeros(n_gaussians, 15, 3),
    }


def write_synthetic_source(source: Path, seed: int = 0, n_gaussians: int = 120, n_views: int = 16) -> None:
    """Write the SfM layout into ``source``; every 4th view goes to test.txt."""
    scene = scene_gaussians(seed, n_gaussians)
    means, quats, sh = scene["means"], scene["quats"], scene["sh_dc"]
    scales, opacities = scene["log_scales"].exp(), torch.sigmoid(scene["opacity_logits"])
    colours = sh[:, 0] * SH_C0 + 0.5

    (source / "images").mkdir(parents=True)
    model = pycolmap.Reconstruction()
    camera = pycolmap.Camera.create_from_model_name(1, "PINHOLE", FOCAL, WIDTH, HEIGHT)
    model.add_camera_with_trivial_rig(camera)
    K = torch.tensor(camera.calibration_matrix(), dtype=torch.float32)
    names = []
    for index in range(n_views):
        angle = 2 * math.pi * index / n_views
        position = np.array([4.0 * math.cos(angle), 4.0 * math.sin(angle), 0.8 * (-1) ** index])
        pose = look_at(position)
        viewmat = torch.eye(4)
        viewmat[:3] = torch.tensor(pose, dtype=torch.float32)
        with torch.no_grad():
            image, _, _ = rasterize(means, quats, scales, opacities, sh, viewmat, K, WIDTH, HEIGHT, 0, backend="cpu")
        name = f"view{index:02d}.png"
        pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        Image.fromarray(pixels).save(source / "images" / name)
        model.add_image_with_trivial_frame(
            pycolmap.Image(name=name, camera_id=1, image_id=index + 1), pycolmap.Rigid3d(pose)
        )
        names.append(name)
    jitter = 0.03 * torch.randn(n_gaussians, 3, generator=torch.Generator().manual_seed(seed + 1))
    for point, colour in zip((means + jitter).double().numpy(), (colours * 255).round().numpy()):
        model.add_point3D(point, pycolmap.Track(), colour.astype(np.uint8))
    (source / "sparse" / "0").mkdir(parents=True)
    model.write(source / "sparse" / "0")
    model.export_PLY(source / "points.ply")
    (source / "test.txt").write_text("".join(n + "\n" for n in names[::4]))
    (source / "train.txt").write_text("".join(n + "\n" for i, n in enumerate(names) if i % 4))
