"""Test helpers: a brute-force compositor written plainly in PyTorch, and tiny random scenes.

The reference knows nothing about tiles, boxes or kernels: every pixel looks at every visible
Gaussian, nearest first, with the same rules. Its gradients come from autograd.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from gaussian_splatting import CompositingRules


def brute_force_composite(
    means2d: Tensor,
    conics: Tensor,
    colours: Tensor,
    opacities: Tensor,
    depths: Tensor,
    visible: Tensor,
    width: int,
    height: int,
    background: Tensor,
    rules: CompositingRules = CompositingRules(),
) -> tuple[Tensor, Tensor, Tensor]:
    """image [H, W, D], alpha [H, W], and [H, W] bool: which pixels stopped early."""
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=means2d.dtype) + 0.5,
        torch.arange(width, dtype=means2d.dtype) + 0.5,
        indexing="ij",
    )
    transmittance = torch.ones(height, width, dtype=means2d.dtype)
    image = torch.zeros(height, width, colours.shape[1], dtype=means2d.dtype)
    stopped = torch.zeros(height, width, dtype=torch.bool)
    for g in torch.argsort(depths, stable=True).tolist():
        if not visible[g]:
            continue
        dx = means2d[g, 0] - xs
        dy = means2d[g, 1] - ys
        sigma = 0.5 * (conics[g, 0] * dx * dx + conics[g, 2] * dy * dy) + conics[g, 1] * dx * dy
        alpha = torch.clamp(opacities[g] * torch.exp(-sigma), max=rules.max_alpha)
        counts = (sigma >= 0) & (alpha >= rules.min_alpha) & ~stopped
        stops_here = counts & (transmittance * (1 - alpha) <= rules.min_transmittance)
        stopped = stopped | stops_here
        alpha = torch.where(counts & ~stops_here, alpha, torch.zeros_like(alpha))
        image = image + (alpha * transmittance).unsqueeze(-1) * colours[g]
        transmittance = transmittance * (1 - alpha)
    image = image + transmittance.unsqueeze(-1) * background
    return image, 1 - transmittance, stopped


@dataclass(frozen=True)
class Scene2D:
    """Screen-space Gaussians, as the projection hands them to the compositor."""

    means2d: Tensor  # [N, 2]
    conics: Tensor  # [N, 3]
    colours: Tensor  # [N, D]
    opacities: Tensor  # [N]
    depths: Tensor  # [N]
    visible: Tensor  # [N] bool
    background: Tensor  # [D]

    def differentiable(self) -> tuple[Tensor, ...]:
        """Fresh leaf copies of (means2d, conics, colours, opacities, background) needing grad."""
        return tuple(
            t.detach().clone().requires_grad_(True)
            for t in (self.means2d, self.conics, self.colours, self.opacities, self.background)
        )


def random_scene_2d(
    seed: int, n: int, width: int, height: int, dtype: torch.dtype, channels: int = 3, n_opaque: int = 6
) -> Scene2D:
    """Gaussians spread over the image and a little past its edges (so many straddle tiles and
    borders), 1 to 6 pixel sigmas, random orientation. The first ``n_opaque`` are wide and
    near-opaque, around the centre, so that pixels there stop early; the first two of them
    sit on one pixel centre with opacity 1, where (1 - 0.99)^2 ties the 1e-4 stop limit.
    Two other Gaussians are marked culled."""
    generator = torch.Generator().manual_seed(seed)

    def uniform(*shape: int, low: float = 0.0, high: float = 1.0) -> Tensor:
        return low + (high - low) * torch.rand(*shape, generator=generator, dtype=torch.float64)

    means2d = torch.stack([uniform(n, low=-4, high=width + 4), uniform(n, low=-4, high=height + 4)], dim=-1)
    sigmas = uniform(n, 2, low=1.0, high=6.0)
    means2d[:n_opaque] = torch.stack(
        [
            uniform(n_opaque, low=width / 4, high=3 * width / 4),
            uniform(n_opaque, low=height / 4, high=3 * height / 4),
        ],
        dim=-1,
    )
    means2d[:2] = torch.floor(means2d[0]) + 0.5
    sigmas[:n_opaque] = uniform(n_opaque, 2, low=4.0, high=8.0)
    angles = uniform(n, high=math.pi)
    cos, sin = torch.cos(angles), torch.sin(angles)
    rotation = torch.stack([cos, -sin, sin, cos], dim=-1).reshape(n, 2, 2)
    covariance = rotation @ torch.diag_embed(sigmas**2) @ rotation.transpose(-1, -2)
    inverse = torch.linalg.inv(covariance)
    conics = torch.stack([inverse[:, 0, 0], inverse[:, 0, 1], inverse[:, 1, 1]], dim=-1)
    opacities = uniform(n, low=0.05, high=0.95)
    opacities[:n_opaque] = uniform(n_opaque, low=0.97, high=1.0)
    opacities[:2] = 1.0
    visible = torch.ones(n, dtype=torch.bool)
    visible[n_opaque : n_opaque + 2] = False
    return Scene2D(
        means2d=means2d.to(dtype),
        conics=conics.to(dtype),
        colours=uniform(n, channels).to(dtype),
        opacities=opacities.to(dtype),
        depths=uniform(n, low=1.0, high=10.0).to(dtype),
        visible=visible,
        background=uniform(channels).to(dtype),
    )
