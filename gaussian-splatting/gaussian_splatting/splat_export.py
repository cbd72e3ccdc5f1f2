"""The ``.splat`` file of antimatter15's WebGL viewer, which most web viewers also open: a
fraction of the PLY's size (no higher SH coefficients), streamable, biggest splats first.

32 bytes per splat, little endian, no header: position 3 x float32, scale 3 x float32 (linear,
exp of the log scale), colour RGBA 4 x uint8 (0.5 + SH_C0 * sh_dc, and the sigmoid of the
opacity logit, times 255), rotation 4 x uint8 (the normalised quaternion w, x, y, z as
q * 128 + 128). Rows run from the largest exp(sum of log scales) * opacity to the smallest, as
antimatter15's convert script orders them, so a viewer that streams the file draws the bulk of
the scene first. Unlike that script we round to the nearest byte instead of truncating, which
halves the worst quantisation error; a viewer decodes both the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import Tensor

from gaussian_splatting.atomic_write import write_atomically
from gaussian_splatting.spherical_harmonics import SH_C0

SPLAT_DTYPE = np.dtype(
    [("position", "<f4", (3,)), ("scale", "<f4", (3,)), ("rgba", "u1", (4,)), ("rotation", "u1", (4,))]
)
assert SPLAT_DTYPE.itemsize == 32


def splat_rows(state: dict[str, Tensor]) -> np.ndarray:
    """[N] rows of SPLAT_DTYPE, largest size x opacity first, from the trainer's raw parameters."""
    means = as_numpy(state["means"])
    count = means.shape[0]
    log_scales = as_numpy(state["log_scales"])
    opacity_logits = as_numpy(state["opacity_logits"]).reshape(count)
    colours = 0.5 + SH_C0 * as_numpy(state["sh_dc"]).reshape(count, 3)
    alphas = 1.0 / (1.0 + np.exp(-opacity_logits))

    # log(exp(sum of log scales) * sigmoid(opacity)): the same order without overflow to inf,
    # and a stable sort, so equal keys keep the trainer's order.
    size_times_opacity = log_scales.sum(axis=1) - np.logaddexp(0.0, -opacity_logits)
    order = np.argsort(-size_times_opacity, kind="stable")

    rows = np.empty(count, dtype=SPLAT_DTYPE)
    rows["position"] = means[order]
    rows["scale"] = np.exp(log_scales[order])
    rows["rgba"][:, :3] = to_byte(colours[order] * 255.0)
    rows["rgba"][:, 3] = to_byte(alphas[order] * 255.0)
    rows["rotation"] = to_byte(_unit_quaternions(as_numpy(state["quats"])[order]) * 128.0 + 128.0)
    return rows


def splat_bytes(state: dict[str, Tensor]) -> bytes:
    return splat_rows(state).tobytes()


def write_splat(path: Path, state: dict[str, Tensor]) -> None:
    """Write the Gaussians to ``path`` (via a temporary file, so readers never see half a file)."""
    body = splat_bytes(state)
    write_atomically(path, lambda handle: handle.write(body))


def read_splat(path: Path) -> dict[str, np.ndarray]:
    """positions [N, 3] and scales [N, 3] float32, rgba [N, 4] and rotations [N, 4] uint8."""
    data = Path(path).read_bytes()
    if len(data) % SPLAT_DTYPE.itemsize:
        raise ValueError(f"{path}: {len(data)} bytes, not a whole number of 32-byte splats")
    rows = np.frombuffer(data, dtype=SPLAT_DTYPE)
    return {
        "positions": rows["position"].copy(),
        "scales": rows["scale"].copy(),
        "rgba": rows["rgba"].copy(),
        "rotations": rows["rotation"].copy(),
    }


def _unit_quaternions(quats: np.ndarray) -> np.ndarray:
    """Normalised; a zero quaternion (no rotation is defined) becomes the identity."""
    norms = np.linalg.norm(quats, axis=1, keepdims=True)
    identity = np.array([1.0, 0.0, 0.0, 0.0])
    return np.where(norms > 0, quats / np.where(norms > 0, norms, 1.0), identity)


def to_byte(values: np.ndarray) -> np.ndarray:
    """Values in [0, 255] rounded to the nearest byte (the web formats' colours and opacities)."""
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def as_numpy(values: Tensor | np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """A parameter tensor (any device) or array as a NumPy array of ``dtype``, for the exporters."""
    if isinstance(values, Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype)
