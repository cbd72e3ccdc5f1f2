"""View-dependent colour from real spherical harmonics up to degree 3, as 3DGS stores it.

The constants, the basis order and the +0.5 offset are those of the 3DGS reference renderer
(and of gsplat and the PLY viewers), so a model trained here looks the same in every viewer.
Plain PyTorch: autograd gives the gradients w.r.t. the coefficients and the directions.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

MAX_SH_DEGREE = 3

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (
    1.0925484305920792,
    -1.0925484305920792,
    0.31539156525252005,
    -1.0925484305920792,
    0.5462742152960396,
)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def coefficient_count(degree: int) -> int:
    """Number of SH coefficients per colour channel for ``degree``: (degree + 1)^2."""
    return (degree + 1) ** 2


def sh_basis(degree: int, directions: Tensor) -> Tensor:
    """The real SH basis functions at unit ``directions`` [..., 3] -> [..., (degree + 1)^2]."""
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"SH degree must be 0..{MAX_SH_DEGREE}, got {degree}")
    x, y, z = directions.unbind(-1)
    basis = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        basis += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        basis += [
            SH_C2[0] * x * y,
            SH_C2[1] * y * z,
            SH_C2[2] * (2.0 * zz - xx - yy),
            SH_C2[3] * x * z,
            SH_C2[4] * (xx - yy),
        ]
    if degree >= 3:
        basis += [
            SH_C3[0] * y * (3.0 * xx - yy),
            SH_C3[1] * x * y * z,
            SH_C3[2] * y * (4.0 * zz - xx - yy),
            SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy),
            SH_C3[4] * x * (4.0 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy),
            SH_C3[6] * x * (xx - 3.0 * yy),
        ]
    return torch.stack(basis, dim=-1)


def evaluate_sh(degree: int, coefficients: Tensor, directions: Tensor) -> Tensor:
    """Sum of the first (degree + 1)^2 SH terms, without the 3DGS offset.

    coefficients: [..., K, C] with K >= (degree + 1)^2 (the unused higher bands are ignored,
    which is how training raises the degree step by step); directions: [..., 3], any length
    (normalised here). Returns [..., C].
    """
    used = coefficient_count(degree)
    if coefficients.shape[-2] < used:
        raise ValueError(f"degree {degree} needs {used} SH coefficients, got {coefficients.shape[-2]}")
    basis = sh_basis(degree, F.normalize(directions, dim=-1))
    return (basis.unsqueeze(-1) * coefficients[..., :used, :]).sum(dim=-2)


def sh_to_rgb(degree: int, coefficients: Tensor, directions: Tensor) -> Tensor:
    """Colour seen along ``directions`` (camera to Gaussian): SH + 0.5, clamped at 0 as in 3DGS.

    Shapes as in ``evaluate_sh``; returns [..., C]. There is no upper clamp, as in the reference.
    """
    return torch.clamp_min(evaluate_sh(degree, coefficients, directions) + 0.5, 0.0)
