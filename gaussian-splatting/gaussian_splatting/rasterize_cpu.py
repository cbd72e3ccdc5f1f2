"""Differentiable tile-based compositing of 2D Gaussians on the CPU.

The hot loops (every pixel of every tile, forward and backward) run in compiled numba kernels
(``_cpu_kernels``), parallel over tiles; this module plans the tiles, calls the kernels and
plugs them into autograd. The rules are gsplat's classic rasteriser's, so a model renders the
same here and on a GPU: see ``CompositingRules``.

Memory stays bounded by the image, the tile lists (one int32 per Gaussian-tile overlap) and one
gradient row per Gaussian and thread; nothing grows with pixels x Gaussians.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import torch
from torch import Tensor

from gaussian_splatting import _cpu_kernels as kernels

# Columns of the kernels' gradient rows before the colour channels.
_MEAN_X, _MEAN_Y, _CONIC_A, _CONIC_C, _OPACITY, _ABS_MEAN_X, _ABS_MEAN_Y = 0, 1, 2, 4, 5, 6, 7
_FIRST_COLOUR = 8


@dataclass(frozen=True)
class CompositingRules:
    """When a Gaussian counts at a pixel and when a pixel is finished.

    The defaults are the 3DGS paper's; gsplat 1.5.3's CUDA kernels hard-code the same except
    a cap of 0.999 on alpha (set ``max_alpha=0.999`` to compare renders with them exactly).
    """

    tile_size: int = 16  # pixels per tile side
    min_alpha: float = 1.0 / 255.0  # a Gaussian fainter than this at a pixel is skipped there
    max_alpha: float = 0.99  # alpha = min(max_alpha, opacity * exp(-sigma))
    min_transmittance: float = 1e-4  # a pixel stops before its transmittance would reach this


@dataclass(frozen=True)
class _TilePlan:
    """Which Gaussians touch which pixels and tiles, and how tiles are shared among threads."""

    boxes: np.ndarray  # [N, 4] int32 inclusive pixel bounds (x0, x1, y0, y1)
    tile_offsets: np.ndarray  # [T + 1] int64
    tile_gaussians: np.ndarray  # [n_intersections] int32, nearest first within each tile
    chunk_offsets: np.ndarray  # [n_chunks + 1] int64
    chunk_tiles: np.ndarray  # [T] int64
    tiles_x: int


def _as_arrays(tensors) -> list[np.ndarray]:
    """NumPy views (copies only where a tensor is not contiguous) for the kernels."""
    return [t.detach().contiguous().numpy() for t in tensors]


def _thresholds(rules: CompositingRules, dtype: np.dtype) -> tuple[float, float, float]:
    """(min_alpha, max_alpha, min_transmittance) rounded to the input precision.

    The kernels compute in float64, but ties must fall as they do in float32: two capped
    Gaussians leave (1 - 0.99)^2, exactly the 1e-4 limit in real numbers, and only the
    rounded constants make that pixel stop where gsplat and PyTorch stop it.
    """
    return tuple(float(dtype.type(v)) for v in (rules.min_alpha, rules.max_alpha, rules.min_transmittance))


def _plan_tiles(
    means2d: np.ndarray,
    conics: np.ndarray,
    opacities: np.ndarray,
    depths: np.ndarray,
    visible: np.ndarray,
    width: int,
    height: int,
    rules: CompositingRules,
) -> _TilePlan:
    """Screen boxes, per-tile lists sorted by depth, and one group of tiles per numba thread."""
    tiles_x = -(-width // rules.tile_size)
    tiles_y = -(-height // rules.tile_size)
    min_alpha = _thresholds(rules, means2d.dtype)[0]
    boxes = kernels.screen_boxes(means2d, conics, opacities, visible, width, height, min_alpha)
    depth_order = np.argsort(depths, kind="stable")
    tile_offsets, tile_gaussians, work = kernels.bin_to_tiles(
        boxes, depth_order, rules.tile_size, tiles_x, tiles_y
    )
    chunk_offsets, chunk_tiles = kernels.balance_tiles(work, rules.tile_size**2, numba.get_num_threads())
    return _TilePlan(boxes, tile_offsets, tile_gaussians, chunk_offsets, chunk_tiles, tiles_x)


class _Composite(torch.autograd.Function):
    """autograd wrapper: forward and backward both run the compiled kernels."""

    @staticmethod
    def forward(ctx, means2d, conics, colours, opacities, background, plan, width, height, rules):
        inputs = (means2d, conics, colours, opacities, background)
        ctx.save_for_backward(*inputs)
        arrays = _as_arrays(inputs)
        image = np.empty((height, width, colours.shape[1]), arrays[0].dtype)
        alpha = np.empty((height, width), arrays[0].dtype)
        final_transmittance = np.empty((height, width), np.float64)
        contributor_count = np.empty((height, width), np.int32)
        kernels.composite_forward(
            *arrays, plan.boxes,
            plan.tile_offsets, plan.tile_gaussians, plan.chunk_offsets, plan.chunk_tiles,
            width, height, rules.tile_size, plan.tiles_x, *_thresholds(rules, arrays[0].dtype),
            image, alpha, final_transmittance, contributor_count,
        )  # fmt: skip
        ctx.plan, ctx.rules = plan, rules
        ctx.final_transmittance, ctx.contributor_count = final_transmittance, contributor_count
        return torch.from_numpy(image), torch.from_numpy(alpha)

    @staticmethod
    def backward(ctx, grad_image, grad_alpha):
        means2d, conics, colours, opacities, background = _as_arrays(ctx.saved_tensors)
        plan, rules = ctx.plan, ctx.rules
        height, width = ctx.final_transmittance.shape
        n_chunks = plan.chunk_offsets.shape[0] - 1
        channels = colours.shape[1]
        gradients = np.zeros((n_chunks, means2d.shape[0], _FIRST_COLOUR + channels), np.float64)
        grad_image_array = grad_image.detach().contiguous().numpy()
        kernels.composite_backward(
            means2d, conics, colours, opacities, background, plan.boxes,
            plan.tile_offsets, plan.tile_gaussians, plan.chunk_offsets, plan.chunk_tiles,
            width, height, rules.tile_size, plan.tiles_x, *_thresholds(rules, means2d.dtype)[:2],
            ctx.final_transmittance, ctx.contributor_count,
            grad_image_array, grad_alpha.detach().contiguous().numpy(), gradients,
        )  # fmt: skip
        summed = torch.from_numpy(gradients.sum(axis=0)).to(grad_image.dtype)
        # As gsplat's absgrad: the saved input is the caller's means2d tensor itself
        ctx.saved_tensors[0].absgrad = summed[:, _ABS_MEAN_X : _ABS_MEAN_Y + 1]
        grad_background = torch.einsum(
            "hw,hwd->d", torch.from_numpy(ctx.final_transmittance).to(grad_image.dtype), grad_image
        )
        return (
            summed[:, _MEAN_X : _MEAN_Y + 1],
            summed[:, _CONIC_A : _CONIC_C + 1],
            summed[:, _FIRST_COLOUR:],
            summed[:, _OPACITY],
            grad_background,
            None,
            None,
            None,
            None,
        )


def composite(
    means2d: Tensor,
    conics: Tensor,
    colours: Tensor,
    opacities: Tensor,
    depths: Tensor,
    visible: Tensor,
    width: int,
    height: int,
    *,
    background: Tensor | None = None,
    rules: CompositingRules = CompositingRules(),
) -> tuple[Tensor, Tensor]:
    """Alpha-composite N 2D Gaussians front to back into an image, differentiably.

    means2d [N, 2] pixel coordinates (pixel (i, j) has its centre at (j + 0.5, i + 0.5));
    conics [N, 3] (a, b, c) of the inverse covariance, sigma = a dx^2 / 2 + b dx dy + c dy^2 / 2;
    colours [N, D]; opacities [N] in [0, 1]; depths [N] set the order (nearest first);
    visible [N] bool drops the culled ones; background [D] or None (black). All float tensors
    share one dtype (float32, or float64 for exact gradient checks) and live on the CPU.
    Returns image [H, W, D] and alpha [H, W]; gradients reach means2d, conics, colours,
    opacities and background. ``backward()`` also sets ``means2d.absgrad`` [N, 2], the sums of
    the per-pixel gradients' absolute values (gsplat's ``absgrad``).
    """
    if background is None:
        background = torch.zeros(colours.shape[1], dtype=colours.dtype)
    dtypes = {t.dtype for t in (means2d, conics, colours, opacities, depths, background)}
    if len(dtypes) != 1 or not dtypes <= {torch.float32, torch.float64}:
        raise TypeError(
            f"composite needs float32 or float64 tensors of one dtype, got {sorted(map(str, dtypes))}"
        )
    plan = _plan_tiles(*_as_arrays((means2d, conics, opacities, depths, visible)), width, height, rules)
    return _Composite.apply(means2d, conics, colours, opacities, background, plan, width, height, rules)
