"""EWA projection of 3D Gaussians onto a pinhole image, in PyTorch autograd.

The maths is gsplat 1.5.3's "classic" pinhole path (which the CUDA backend runs), so both
backends see the same 2D Gaussians: covariance R S S^T R^T from a quaternion and scales, the
world-to-camera transform, the Jacobian of the projection with x/z and y/z clamped to the
field of view plus 30% (so Gaussians far outside the image do not blow up), a 0.3 pixel^2
low-pass dilation, the conic (inverse 2D covariance), and per-axis radii of 3.33 sigma,
tightened by the opacity when one is given. Gaussians outside the near/far range, with a
degenerate 2D covariance or whose box misses the image get radius 0 and are not rendered.

Conventions: ``viewmat`` maps world to camera (OpenCV axes: x right, y down, z forward);
``K`` is the 3x3 intrinsic matrix; pixel (i, j) has its centre at (j + 0.5, i + 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

# Box half-size in standard deviations: sqrt(2 ln 255) = 3.33 covers every pixel where a fully
# opaque Gaussian's alpha reaches 1/255, the compositor's threshold.
MAX_EXTENT_SIGMAS = 3.33
# How far (as a fraction of the half field of view) x/z and y/z may stray outside the image
# before the Jacobian stops following them.
FOV_CLAMP_MARGIN = 0.3


@dataclass(frozen=True)
class ProjectionSettings:
    """Projection knobs; the defaults are gsplat's ``rasterization`` defaults."""

    eps2d: float = 0.3  # low-pass dilation added to the 2D covariance's diagonal, pixels^2
    near_plane: float = 0.01  # Gaussians with camera depth outside (near, far) are culled
    far_plane: float = 1e10


@dataclass(frozen=True)
class ProjectedGaussians:
    """The 2D Gaussians one camera sees; row g belongs to input Gaussian g.

    Rows whose ``radii`` are 0 are culled: their other values are finite but meaningless, and
    they carry no gradient.
    """

    means2d: Tensor  # [N, 2] pixel coordinates of the centres
    conics: Tensor  # [N, 3] (a, b, c) of the inverse 2D covariance [[a, b], [b, c]]
    depths: Tensor  # [N] camera-space z, the compositing order
    radii: Tensor  # [N, 2] int32 half-sizes in pixels of the screen box (x, y); 0 = culled

    @property
    def visible(self) -> Tensor:
        """[N] bool: the Gaussians the compositor should draw."""
        return (self.radii > 0).all(dim=-1)


def quaternion_to_rotation(quaternions: Tensor) -> Tensor:
    """Rotation matrices [..., 3, 3] from quaternions [..., 4] in (w, x, y, z) order, any norm."""
    w, x, y, z = F.normalize(quaternions, dim=-1).unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]  # fmt: skip
    return torch.stack(rows, dim=-1).reshape(quaternions.shape[:-1] + (3, 3))


def covariance_3d(quaternions: Tensor, scales: Tensor) -> Tensor:
    """World-space covariances [..., 3, 3] = R S S^T R^T from quaternions [..., 4], scales [..., 3]."""
    rotation_scale = quaternion_to_rotation(quaternions) * scales.unsqueeze(-2)
    return rotation_scale @ rotation_scale.transpose(-1, -2)


def project_gaussians(
    means: Tensor,
    quaternions: Tensor,
    scales: Tensor,
    viewmat: Tensor,
    K: Tensor,
    width: int,
    height: int,
    *,
    settings: ProjectionSettings = ProjectionSettings(),
    opacities: Tensor | None = None,
    min_alpha: float = 1.0 / 255.0,
) -> ProjectedGaussians:
    """Project N Gaussians into one pinhole camera.

    means [N, 3] world positions; quaternions [N, 4] (w, x, y, z); scales [N, 3] positive
    standard deviations along the Gaussian's axes (exp of the stored log-scales); viewmat
    [4, 4] world to camera; K [3, 3]. ``opacities`` [N], when given, tightens each box to
    where alpha can still reach ``min_alpha`` (the compositor's threshold) and culls Gaussians
    fainter than that, as gsplat's CUDA projection does; without them the box is 3.33 sigma,
    as in gsplat's PyTorch reference.
    """
    rotation, translation = viewmat[:3, :3], viewmat[:3, 3]
    means_cam = means @ rotation.T + translation
    covariances_cam = rotation @ covariance_3d(quaternions, scales) @ rotation.T

    x, y, z = means_cam.unbind(-1)
    in_depth_range = (z > settings.near_plane) & (z < settings.far_plane)
    # Culled Gaussians may sit at z = 0; dividing by a stand-in keeps every value and every
    # gradient finite (their gradients are zero either way, as they are never drawn).
    z = torch.where(in_depth_range, z, torch.ones_like(z))

    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    tan_half_fov_x = 0.5 * width / fx
    tan_half_fov_y = 0.5 * height / fy
    x_over_z = torch.clamp(
        x / z,
        min=-(cx / fx + FOV_CLAMP_MARGIN * tan_half_fov_x),
        max=(width - cx) / fx + FOV_CLAMP_MARGIN * tan_half_fov_x,
    )
    y_over_z = torch.clamp(
        y / z,
        min=-(cy / fy + FOV_CLAMP_MARGIN * tan_half_fov_y),
        max=(height - cy) / fy + FOV_CLAMP_MARGIN * tan_half_fov_y,
    )
    zeros = torch.zeros_like(z)
    jacobian = torch.stack(
        [fx / z, zeros, -fx * x_over_z / z, zeros, fy / z, -fy * y_over_z / z], dim=-1
    ).reshape(-1, 2, 3)
    covariances_2d = jacobian @ covariances_cam @ jacobian.transpose(-1, -2)
    means2d = torch.stack([fx * x / z + cx, fy * y / z + cy], dim=-1)

    var_x = covariances_2d[:, 0, 0] + settings.eps2d
    var_y = covariances_2d[:, 1, 1] + settings.eps2d
    cov_xy = 0.5 * (covariances_2d[:, 0, 1] + covariances_2d[:, 1, 0])
    determinant = var_x * var_y - cov_xy * cov_xy
    invertible = determinant > 0
    determinant = torch.where(invertible, determinant, torch.ones_like(determinant))
    conics = torch.stack([var_y, -cov_xy, var_x], dim=-1) / determinant.unsqueeze(-1)

    with torch.no_grad():
        visible = in_depth_range & invertible
        extent = torch.full_like(var_x, MAX_EXTENT_SIGMAS)
        if opacities is not None:
            bright_enough = opacities >= min_alpha
            visible &= bright_enough
            log_ratio = torch.log(
                torch.where(bright_enough, opacities / min_alpha, torch.ones_like(opacities))
            )
            extent = torch.clamp(torch.sqrt(2.0 * log_ratio), max=MAX_EXTENT_SIGMAS)
        # clamp: a culled Gaussian's variance may be negative; its radius is zeroed below anyway
        radius_x = torch.ceil(extent * torch.sqrt(var_x.clamp_min(0.0)))
        radius_y = torch.ceil(extent * torch.sqrt(var_y.clamp_min(0.0)))
        on_image = (
            (means2d[:, 0] + radius_x > 0)
            & (means2d[:, 0] - radius_x < width)
            & (means2d[:, 1] + radius_y > 0)
            & (means2d[:, 1] - radius_y < height)
        )
        visible &= on_image & (radius_x > 0) & (radius_y > 0)
        radii = torch.stack([radius_x, radius_y], dim=-1).to(torch.int32) * visible.unsqueeze(-1)

    return ProjectedGaussians(means2d=means2d, conics=conics, depths=means_cam[:, 2], radii=radii)


def camera_position(viewmat: Tensor) -> Tensor:
    """World position [3] of the camera whose world-to-camera matrix is ``viewmat`` [4, 4]."""
    rotation, translation = viewmat[:3, :3], viewmat[:3, 3]
    return -rotation.T @ translation
