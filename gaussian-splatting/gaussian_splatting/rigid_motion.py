"""A model moved rigidly, ``x' = R (x - c)``: centres, orientations and view-dependent colour
together, so that every camera moved the same way sees exactly what it saw before.

Centres and quaternions are the easy part. The SH coefficients of degree 1 to 3 describe colour
as a function of the viewing direction, in world axes: turned with the scene, the new function
must give at ``R d`` what the old one gave at ``d``. Each band l mixes only within itself, by a
(2l + 1) x (2l + 1) matrix; rather than Wigner-D formulas tied to one sign and order convention,
the matrix is solved by least squares from the trainer's own basis (``sh_basis``) at a fixed set
of directions, which is exact (up to float64 rounding) because a band is closed under rotation.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from gaussian_splatting.spherical_harmonics import MAX_SH_DEGREE, coefficient_count, sh_basis

# Directions the band matrices are fitted at: far more than the 7 unknowns per row of band 3.
FIT_DIRECTIONS = 64
# Gaussians turned at a time, in float64: about 100 MB of working memory, whatever the model's size.
CHUNK = 262_144


def sh_rotation(rotation: np.ndarray, degree: int = MAX_SH_DEGREE) -> Tensor:
    """[K, K] float64 (K = (degree + 1)^2, block-diagonal by band) taking the coefficients of a
    colour function f to those of f turned by ``rotation``: g(R d) = f(d) for every direction d."""
    directions = torch.from_numpy(_fibonacci_sphere(FIT_DIRECTIONS))
    turned_back = directions @ torch.from_numpy(np.asarray(rotation, dtype=np.float64))  # rows: R^T d
    basis, basis_turned_back = sh_basis(degree, directions), sh_basis(degree, turned_back)
    matrix = torch.zeros(coefficient_count(degree), coefficient_count(degree), dtype=torch.float64)
    for band in range(degree + 1):
        span = slice(band * band, (band + 1) ** 2)
        # g(x) = f(R^T x): Y(R^T x) = Y(x) M for the band's basis row Y, so g's coefficients are M f's
        solution = torch.linalg.lstsq(basis[:, span], basis_turned_back[:, span]).solution
        matrix[span, span] = solution
    return matrix


def quaternion_of(rotation: np.ndarray) -> np.ndarray:
    """The unit quaternion (w, x, y, z), w >= 0, of a 3x3 rotation matrix (Shepperd's method:
    the largest of the four squared components first, so no division by a small number)."""
    m = np.asarray(rotation, dtype=np.float64)
    trace = np.trace(m)
    squares = [1 + trace, 1 + 2 * m[0, 0] - trace, 1 + 2 * m[1, 1] - trace, 1 + 2 * m[2, 2] - trace]
    largest = int(np.argmax(squares))
    root = math.sqrt(squares[largest]) * 2  # 4 |q_largest|
    if largest == 0:
        q = [root / 4, (m[2, 1] - m[1, 2]) / root, (m[0, 2] - m[2, 0]) / root, (m[1, 0] - m[0, 1]) / root]
    elif largest == 1:
        q = [(m[2, 1] - m[1, 2]) / root, root / 4, (m[0, 1] + m[1, 0]) / root, (m[0, 2] + m[2, 0]) / root]
    elif largest == 2:
        q = [(m[0, 2] - m[2, 0]) / root, (m[0, 1] + m[1, 0]) / root, root / 4, (m[1, 2] + m[2, 1]) / root]
    else:
        q = [(m[1, 0] - m[0, 1]) / root, (m[0, 2] + m[2, 0]) / root, (m[1, 2] + m[2, 1]) / root, root / 4]
    quaternion = np.array(q)
    return quaternion if quaternion[0] >= 0 else -quaternion


def quaternion_product(left: Tensor, right: Tensor) -> Tensor:
    """Hamilton product ``left * right`` of (w, x, y, z) quaternions [..., 4]: the rotation
    ``right`` followed by ``left`` (as ``quaternion_to_rotation`` reads them)."""
    w1, x1, y1, z1 = left.unbind(-1)
    w2, x2, y2, z2 = right.unbind(-1)
    return torch.stack([
        w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
        w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
        w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
    ], dim=-1)  # fmt: skip


def moved_state(state: dict[str, Tensor], rotation: np.ndarray, centre: np.ndarray) -> dict[str, Tensor]:
    """The raw parameters (as ``read_ply`` gives them) after ``x' = rotation (x - centre)``;
    scales and opacities stay, the rest turns with the scene. Computed in float64, stored as given."""
    rotation_64 = torch.from_numpy(np.asarray(rotation, dtype=np.float64))
    centre_64 = torch.from_numpy(np.asarray(centre, dtype=np.float64))
    turn = torch.from_numpy(quaternion_of(rotation))
    rest = state["sh_rest"]
    degree = next(d for d in range(MAX_SH_DEGREE + 1) if coefficient_count(d) == rest.shape[1] + 1)
    sh_matrix = sh_rotation(rotation, degree)[1:, 1:]  # band 0 is a constant: it stays
    moved = dict(state)
    for name in ("means", "quats", "sh_rest"):
        moved[name] = torch.empty_like(state[name])
    for start in range(0, len(rest), CHUNK):
        part = slice(start, start + CHUNK)
        moved["means"][part] = (state["means"][part].double() - centre_64) @ rotation_64.T
        quats = state["quats"][part].double()
        moved["quats"][part] = quaternion_product(turn.expand_as(quats), quats)
        moved["sh_rest"][part] = torch.einsum("kj,njc->nkc", sh_matrix, rest[part].double())
    return moved


def _fibonacci_sphere(count: int) -> np.ndarray:
    """[count, 3] unit vectors spread evenly over the sphere (deterministic)."""
    index = np.arange(count) + 0.5
    z = 1 - 2 * index / count
    azimuth = math.pi * (3 - math.sqrt(5)) * index
    radius = np.sqrt(1 - z * z)
    return np.stack([radius * np.cos(azimuth), radius * np.sin(azimuth), z], axis=1)
