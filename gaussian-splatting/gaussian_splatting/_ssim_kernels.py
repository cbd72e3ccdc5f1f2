"""Compiled loops of SSIM and its gradient on the CPU (numba), for the training loss.

PyTorch's version (``losses.ssim``) blurs five images with an 11x11 window through ``conv2d``
and leaves the gradient to autograd: some thirty full-size temporaries and 121 taps per pixel.
Here the window is applied as two 11-tap passes (it is separable), the five blurs share their
passes, and the backward pass is written out:

    S = (2 mu_x mu_y + C1)(2 cov + C2) / ((mu_x^2 + mu_y^2 + C1)(var_x + var_y + C2)),
    with mu = G*x, var_x = G*(x x) - mu_x^2, cov = G*(x y) - mu_x mu_y (G the window), so
    d mean(S) / dx = (G*dS/dmu_x + 2 x G*dS/d(G*(x x)) + y G*dS/d(G*(x y))) / count,

as the window is symmetric and its zero-padded convolution is its own transpose. The forward
pass keeps the three partial-derivative maps for the backward one.

Array layouts: images [H, L] with L = W * C (an [H, W, C] image viewed row by row); a stack of
maps [K, H, L]. Blurs run in the input's precision (float32 in training, as PyTorch's); the
per-pixel SSIM terms in float64.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def blur_columns_of_products(x, y, weights, out):
    """out[0..4] = the vertical pass of the window over x, y, x x, y y and x y ([H, L] each)."""
    height, length = x.shape
    radius = weights.shape[0] // 2
    for i in prange(height):
        for k in range(5):
            out[k, i, :] = 0.0
        for t in range(max(0, radius - i), min(2 * radius + 1, height + radius - i)):
            w = weights[t]
            xs, ys = x[i + t - radius], y[i + t - radius]
            o0, o1, o2, o3, o4 = out[0, i], out[1, i], out[2, i], out[3, i], out[4, i]
            for q in range(length):
                a, b = xs[q], ys[q]
                o0[q] += w * a
                o1[q] += w * b
                o2[q] += w * (a * a)
                o3[q] += w * (b * b)
                o4[q] += w * (a * b)


@njit(parallel=True, cache=True)
def blur_columns(maps, weights, out):
    """out[k] = the vertical pass of the window over maps[k] ([K, H, L])."""
    count, height, length = maps.shape
    radius = weights.shape[0] // 2
    for i in prange(height):
        for k in range(count):
            row = out[k, i]
            row[:] = 0.0
            for t in range(max(0, radius - i), min(2 * radius + 1, height + radius - i)):
                w = weights[t]
                source = maps[k, i + t - radius]
                for q in range(length):
                    row[q] += w * source[q]


@njit(parallel=True, cache=True)
def blur_rows(maps, weights, channels, out):
    """out[k] = the horizontal pass of the window over maps[k] ([K, H, W * channels]), zero
    outside the image."""
    count, height, length = maps.shape
    radius = weights.shape[0] // 2
    margin = radius * channels
    for i in prange(height):
        padded = np.zeros(length + 2 * margin, maps.dtype)
        for k in range(count):
            padded[margin : margin + length] = maps[k, i]
            row = out[k, i]
            row[:] = 0.0
            for t in range(2 * radius + 1):
                w = weights[t]
                source = padded[t * channels : t * channels + length]  # a slice: no index arithmetic to wrap
                for q in range(length):
                    row[q] += w * source[q]


@njit(parallel=True, cache=True)
def ssim_terms(blurred, c1, c2, partials, row_sums):
    """Per pixel and channel: SSIM from the five blurred maps, summed per row into row_sums [H],
    and its partial derivatives with respect to G*x, G*(x x) and G*(x y) into partials [3]."""
    height, length = blurred.shape[1], blurred.shape[2]
    for i in prange(height):
        total = 0.0
        for q in range(length):
            mu_x = np.float64(blurred[0, i, q])
            mu_y = np.float64(blurred[1, i, q])
            var_x = blurred[2, i, q] - mu_x * mu_x
            var_y = blurred[3, i, q] - mu_y * mu_y
            cov = blurred[4, i, q] - mu_x * mu_y
            a1 = 2.0 * mu_x * mu_y + c1
            a2 = 2.0 * cov + c2
            b1 = mu_x * mu_x + mu_y * mu_y + c1
            b2 = var_x + var_y + c2
            inverse = 1.0 / (b1 * b2)
            s = a1 * a2 * inverse
            total += s
            # mu_x enters a1, a2 (through cov), b1 and b2 (through var_x)
            partials[0, i, q] = 2.0 * mu_y * (a2 - a1) * inverse - 2.0 * mu_x * s * (b2 - b1) * inverse
            partials[1, i, q] = -s / b2
            partials[2, i, q] = 2.0 * a1 * inverse
        row_sums[i] = total


@njit(parallel=True, cache=True)
def ssim_input_gradient(blurred_partials, x, y, scale, out):
    """out = scale (G*d0 + 2 x G*d1 + y G*d2), from the blurred partials [3, H, L]."""
    height, length = x.shape
    for i in prange(height):
        d0, d1, d2 = blurred_partials[0, i], blurred_partials[1, i], blurred_partials[2, i]
        xs, ys, row = x[i], y[i], out[i]
        for q in range(length):
            row[q] = scale * (d0[q] + 2.0 * xs[q] * d1[q] + ys[q] * d2[q])
