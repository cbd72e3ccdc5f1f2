"""The standard 3DGS PLY that SuperSplat, the SIBR viewer and other tools open.

Binary little endian float32 properties, in this order: x y z, nx ny nz (zeros), f_dc_0..2,
f_rest_0..44 (channel-major: all of red's higher SH coefficients, then green's, then blue's,
as the reference writes them), opacity (logit), scale_0..2 (log), rot_0..3 (w, x, y, z).
Lower SH degrees still write 45 f_rest values, zero-padded, so every viewer can read them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gaussian_splatting.atomic_write import write_atomically
from gaussian_splatting.spherical_harmonics import MAX_SH_DEGREE, coefficient_count

REST_PER_CHANNEL = coefficient_count(MAX_SH_DEGREE) - 1  # 15

PROPERTY_NAMES = (
    ["x", "y", "z", "nx", "ny", "nz"]
    + [f"f_dc_{i}" for i in range(3)]
    + [f"f_rest_{i}" for i in range(3 * REST_PER_CHANNEL)]
    + ["opacity"]
    + [f"scale_{i}" for i in range(3)]
    + [f"rot_{i}" for i in range(4)]
)


def ply_rows(state: dict[str, Tensor]) -> np.ndarray:
    """[N, 62] float32 rows in PROPERTY_NAMES order from the trainer's raw parameters."""
    state = {name: tensor.detach().cpu().float() for name, tensor in state.items()}
    count = state["means"].shape[0]
    rest = state["sh_rest"]  # [N, K - 1, 3]
    padded = torch.zeros(count, REST_PER_CHANNEL, 3)
    padded[:, : rest.shape[1]] = rest[:, :REST_PER_CHANNEL]
    columns = [
        state["means"],
        torch.zeros(count, 3),
        state["sh_dc"].reshape(count, 3),
        padded.transpose(1, 2).reshape(count, 3 * REST_PER_CHANNEL),
        state["opacity_logits"].reshape(count, 1),
        state["log_scales"],
        state["quats"],
    ]
    return torch.cat(columns, dim=1).numpy()


def write_ply(path: Path, state: dict[str, Tensor]) -> None:
    """Write the Gaussians to ``path`` (via a temporary file, so readers never see half a file)."""
    rows = ply_rows(state)
    header = "\n".join(
        ["ply", "format binary_little_endian 1.0", f"element vertex {rows.shape[0]}"]
        + [f"property float {name}" for name in PROPERTY_NAMES]
        + ["end_header"]
    )
    body = np.ascontiguousarray(rows, dtype="<f4").tobytes()
    write_atomically(path, lambda handle: handle.write(header.encode("ascii") + b"\n" + body))
