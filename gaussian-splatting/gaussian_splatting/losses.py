"""Image losses and metrics: L1, SSIM with the 3DGS paper's 11x11 Gaussian window, PSNR."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


def _window_1d(dtype: torch.dtype) -> Tensor:
    """[11] normalised 1D Gaussian; the 2D window is its outer product with itself."""
    x = torch.arange(SSIM_WINDOW, dtype=dtype) - SSIM_WINDOW // 2
    g = torch.exp(-(x**2) / (2 * SSIM_SIGMA**2))
    return g / g.sum()


def _window(channels: int, dtype: torch.dtype) -> Tensor:
    """[C, 1, 11, 11] normalised Gaussian window, one per channel (depthwise convolution)."""
    g = _window_1d(dtype)
    return (g[:, None] @ g[None, :]).expand(channels, 1, SSIM_WINDOW, SSIM_WINDOW).contiguous()


def ssim(image: Tensor, target: Tensor) -> Tensor:
    """Mean SSIM of two [H, W, C] images in [0, 1] (zero-padded borders, as the 3DGS code)."""
    x, y = image.permute(2, 0, 1)[None], target.permute(2, 0, 1)[None]
    channels = x.shape[1]
    window = _window(channels, x.dtype).to(x.device)
    pad = SSIM_WINDOW // 2

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, window, padding=pad, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)
    denominator = (mu_x**2 + mu_y**2 + SSIM_C1) * (var_x + var_y + SSIM_C2)
    return (numerator / denominator).mean()


class _CpuSsim(torch.autograd.Function):
    """``ssim`` on the CPU through the compiled kernels of ``_ssim_kernels``: the same value
    up to float rounding, about five times faster. The gradient reaches ``image`` only."""

    @staticmethod
    def forward(ctx, image: Tensor, target: Tensor) -> Tensor:
        from gaussian_splatting import _ssim_kernels as kernels  # numba: only where it runs

        height, width, channels = image.shape
        x = image.detach().contiguous().numpy().reshape(height, width * channels)
        y = target.detach().to(image.dtype).contiguous().numpy().reshape(height, width * channels)
        weights = _window_1d(image.dtype).numpy()
        columns = np.empty((5, *x.shape), x.dtype)
        kernels.blur_columns_of_products(x, y, weights, columns)
        blurred = np.empty_like(columns)
        kernels.blur_rows(columns, weights, channels, blurred)
        partials = np.empty((3, *x.shape), x.dtype)
        row_sums = np.empty(height, np.float64)
        kernels.ssim_terms(blurred, SSIM_C1, SSIM_C2, partials, row_sums)
        ctx.partials, ctx.x, ctx.y, ctx.weights, ctx.shape = partials, x, y, weights, image.shape
        return torch.tensor(row_sums.sum() / x.size, dtype=image.dtype)

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        from gaussian_splatting import _ssim_kernels as kernels

        columns = np.empty_like(ctx.partials)
        kernels.blur_columns(ctx.partials, ctx.weights, columns)
        blurred = np.empty_like(columns)
        kernels.blur_rows(columns, ctx.weights, ctx.shape[2], blurred)
        grad = np.empty_like(ctx.x)
        kernels.ssim_input_gradient(blurred, ctx.x, ctx.y, float(grad_output) / ctx.x.size, grad)
        return torch.from_numpy(grad).reshape(ctx.shape), None


def fast_ssim(image: Tensor, target: Tensor) -> Tensor:
    """``ssim``, differentiable with respect to ``image``; on the CPU through compiled kernels
    (``_CpuSsim``), elsewhere ``ssim`` itself."""
    if image.device.type == "cpu" and image.dtype in (torch.float32, torch.float64):
        return _CpuSsim.apply(image, target)
    return ssim(image, target)


def training_loss(image: Tensor, target: Tensor, lambda_dssim: float) -> Tensor:
    """(1 - lambda) L1 + lambda (1 - SSIM), the 3DGS photometric loss."""
    l1 = (image - target).abs().mean()
    return (1.0 - lambda_dssim) * l1 + lambda_dssim * (1.0 - fast_ssim(image, target))


def psnr(image: Tensor, target: Tensor) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1]."""
    mse = torch.mean((image.clamp(0, 1) - target) ** 2).item()
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)
