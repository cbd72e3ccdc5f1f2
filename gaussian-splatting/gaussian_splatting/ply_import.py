"""Reading a standard 3DGS PLY back into the trainer's raw parameters, so that evaluation and
export work on any model in that format (ours, or one from a trainer swapped in)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from plyfile import PlyData
from torch import Tensor

from gaussian_splatting.spherical_harmonics import coefficient_count


def read_ply(path: Path) -> dict[str, Tensor]:
    """Raw parameters by name (as ``Gaussians.state()``) from a 3DGS PLY; the SH degree follows
    from how many ``f_rest_*`` properties it has (45: degree 3)."""
    vertices = PlyData.read(str(path))["vertex"]
    names = set(vertices.data.dtype.names)

    def columns(*wanted: str) -> Tensor:
        missing = [name for name in wanted if name not in names]
        if missing:
            raise ValueError(f"{path}: not a 3DGS PLY, it lacks {', '.join(missing)}")
        return torch.from_numpy(np.stack([np.asarray(vertices[name], dtype=np.float32) for name in wanted], axis=-1))

    rest_count = sum(1 for name in names if name.startswith("f_rest_"))
    if rest_count % 3:
        raise ValueError(f"{path}: {rest_count} f_rest properties, not a multiple of 3")
    per_channel = rest_count // 3
    if per_channel + 1 not in {coefficient_count(degree) for degree in range(4)}:
        raise ValueError(f"{path}: {rest_count} f_rest properties match no SH degree up to 3")
    count = len(vertices.data)
    rest = columns(*(f"f_rest_{i}" for i in range(rest_count))) if rest_count else torch.zeros(count, 0)
    return {
        "means": columns("x", "y", "z"),
        "log_scales": columns("scale_0", "scale_1", "scale_2"),
        "quats": columns("rot_0", "rot_1", "rot_2", "rot_3"),
        "opacity_logits": columns("opacity")[:, 0],
        "sh_dc": columns("f_dc_0", "f_dc_1", "f_dc_2")[:, None, :],
        # stored channel-major (all red coefficients, then green, then blue)
        "sh_rest": rest.reshape(count, 3, per_channel).transpose(1, 2).contiguous(),
    }


def sh_degree_of(state: dict[str, Tensor]) -> int:
    """The SH degree the stored coefficients allow."""
    coefficients = state["sh_rest"].shape[1] + 1
    return next(degree for degree in range(4) if coefficient_count(degree) == coefficients)
