"""Image losses and metrics: L1, SSIM with the 3DGS paper's 11x11 Gaussian window, PSNR."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


def _window(channels: int, dtype: torch.dtype) -> Tensor:
    """[C, 1, 11, 11] normalised Gaussian window, one per channel (depthwise convolution)."""
    x = torch.arange(SSIM_WINDOW, dtype=dtype) - SSIM_WINDOW // 2
    g = torch.exp(-(x**2) / (2 * SSIM_SIGMA**2))
    g = g / g.sum()
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


def training_loss(image: Tensor, target: Tensor, lambda_dssim: float) -> Tensor:
    """(1 - lambda) L1 + lambda (1 - SSIM), the 3DGS photometric loss."""
    l1 = (image - target).abs().mean()
    return (1.0 - lambda_dssim) * l1 + lambda_dssim * (1.0 - ssim(image, target))


def psnr(image: Tensor, target: Tensor) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1]."""
    mse = torch.mean((image.clamp(0, 1) - target) ** 2).item()
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)
