"""The trained parameters, stored as 3DGS stores them, and their initialisation from SfM points.

Raw (unconstrained) values are optimised: log-scales, opacity logits, unnormalised quaternions;
``render_inputs`` activates them for ``rasterize``. These are also the values the PLY holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from plyfile import PlyData
from sklearn.neighbors import NearestNeighbors
from torch import Tensor, nn

from gaussian_splatting.spherical_harmonics import SH_C0, coefficient_count

# Parameter names, in the order the optimiser's groups and the checkpoints use.
PARAMETER_NAMES = ("means", "log_scales", "quats", "opacity_logits", "sh_dc", "sh_rest")


@dataclass
class Gaussians:
    """N Gaussians; row g of every tensor belongs to Gaussian g. Mutable: densification swaps
    in new tensors (and the optimiser state follows them, see ``optimizer.py``)."""

    means: nn.Parameter  # [N, 3] world positions
    log_scales: nn.Parameter  # [N, 3] log of the per-axis standard deviations
    quats: nn.Parameter  # [N, 4] rotation (w, x, y, z), any norm
    opacity_logits: nn.Parameter  # [N] logit of the opacity
    sh_dc: nn.Parameter  # [N, 1, 3] SH band 0 per colour channel
    sh_rest: nn.Parameter  # [N, (degree + 1)^2 - 1, 3] higher SH bands

    def __len__(self) -> int:
        return self.means.shape[0]

    def parameters(self) -> dict[str, nn.Parameter]:
        """name -> parameter, in PARAMETER_NAMES order."""
        return {name: getattr(self, name) for name in PARAMETER_NAMES}

    def replace(self, tensors: dict[str, Tensor]) -> None:
        """Install new tensors (as fresh leaf parameters) under the given names."""
        for name, tensor in tensors.items():
            setattr(self, name, nn.Parameter(tensor.detach().contiguous(), requires_grad=True))

    def render_inputs(self) -> dict[str, Tensor]:
        """Activated values as ``rasterize`` takes them: means, quats, scales > 0, opacities in
        [0, 1] and sh_coeffs [N, K, 3]."""
        return {
            "means": self.means,
            "quats": self.quats,
            "scales": torch.exp(self.log_scales),
            "opacities": torch.sigmoid(self.opacity_logits),
            "sh_coeffs": torch.cat([self.sh_dc, self.sh_rest], dim=1),
        }

    def state(self) -> dict[str, Tensor]:
        """Detached copies of every parameter, for checkpoints and export."""
        return {name: tensor.detach().clone() for name, tensor in self.parameters().items()}

    @classmethod
    def from_state(cls, state: dict[str, Tensor], device: torch.device | str = "cpu") -> Gaussians:
        return cls(**{name: nn.Parameter(state[name].to(device).contiguous()) for name in PARAMETER_NAMES})


def read_points(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """xyz [P, 3] float64 and rgb [P, 3] in [0, 1] from the SfM stage's points.ply."""
    vertices = PlyData.read(str(path))["vertex"]
    xyz = np.stack([vertices[axis] for axis in ("x", "y", "z")], axis=-1).astype(np.float64)
    names = vertices.data.dtype.names
    if all(channel in names for channel in ("red", "green", "blue")):
        rgb = np.stack([vertices[c] for c in ("red", "green", "blue")], axis=-1) / 255.0
    else:
        rgb = np.full_like(xyz, 0.5)
    return xyz, rgb


def mean_neighbour_distance_sq(points: Tensor, k: int = 3) -> Tensor:
    """[P] mean squared distance of each point to its k nearest other points.

    A k-d tree (scikit-learn): O(P log P), under a second for the 10^5 points SfM gives, where
    all pairwise distances took 12 s for 23,000 points on 2 cores.
    """
    count = points.shape[0]
    k_used = min(k, count - 1)
    if k_used < 1:
        return torch.ones(count, dtype=points.dtype)
    xyz = points.detach().cpu().double().numpy()
    # each point's nearest is itself (distance 0), unless it has duplicates: then one of them,
    # also at distance 0, which is just as right
    distances, _ = NearestNeighbors(n_neighbors=k_used + 1).fit(xyz).kneighbors(xyz)
    return torch.from_numpy((distances[:, 1:] ** 2).mean(axis=1)).to(points.dtype)


def gaussians_from_points(xyz: np.ndarray, rgb: np.ndarray, sh_degree: int, initial_opacity: float) -> Gaussians:
    """One isotropic Gaussian per SfM point, as 3DGS initialises: colour into SH band 0, size the
    mean distance to the 3 nearest neighbours, identity rotation, opacity ``initial_opacity``."""
    if len(xyz) == 0:
        raise ValueError("points.ply has no points: nothing to initialise the Gaussians from")
    means = torch.tensor(xyz, dtype=torch.float32)
    count = means.shape[0]
    distance_sq = mean_neighbour_distance_sq(means.double()).clamp_min(1e-7).float()
    quats = torch.zeros(count, 4)
    quats[:, 0] = 1.0
    return Gaussians(
        means=nn.Parameter(means),
        log_scales=nn.Parameter(torch.log(distance_sq.sqrt())[:, None].repeat(1, 3)),
        quats=nn.Parameter(quats),
        opacity_logits=nn.Parameter(torch.logit(torch.full((count,), initial_opacity))),
        sh_dc=nn.Parameter(((torch.tensor(rgb, dtype=torch.float32) - 0.5) / SH_C0)[:, None, :]),
        sh_rest=nn.Parameter(torch.zeros(count, coefficient_count(sh_degree) - 1, 3)),
    )
