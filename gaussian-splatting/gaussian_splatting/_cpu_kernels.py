"""Compiled loops of the CPU compositor (numba): screen boxes, tile lists, forward, backward.

Everything here works on NumPy arrays; ``rasterize_cpu`` wraps it for PyTorch. The image is cut
into square tiles; each tile keeps the list of Gaussians whose box touches it, nearest first.
Tiles are dealt to ``n_chunks`` groups of about equal work and the groups run in parallel, one
per thread, so no two threads ever write the same pixel or the same gradient row.

Per-pixel state is kept in float64 whatever the input precision: the backward pass recovers
each transmittance by dividing the final one by (1 - alpha) again and again, and the small
transmittances behind near-opaque Gaussians lose digits in float32 (gsplat's kernels say the
same). The cost on a CPU is small: these loops are scalar code either way.

Array layouts (N Gaussians, D colour channels, H x W image, T tiles):
  means2d [N, 2], conics [N, 3] as (a, b, c), colours [N, D], opacities [N], all one float dtype;
  boxes [N, 4] int32 inclusive pixel bounds (x0, x1, y0, y1), empty when x0 > x1;
  tile_offsets [T + 1] and tile_gaussians [n_intersections]: tile t's Gaussians, nearest first,
  are tile_gaussians[tile_offsets[t]:tile_offsets[t + 1]];
  chunk_offsets [n_chunks + 1] and chunk_tiles [T]: the tiles each parallel group renders.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

# Slack, in pixels, added to each box so that rounding never drops a pixel whose alpha sits
# exactly at the threshold; it only costs a few skipped evaluations.
BOX_SLACK_PIXELS = 0.01
# Likewise for the row spans (``row_span``): the sigma limit is taken this much larger,
# relatively (and by as much absolutely), far beyond float64 rounding of the chord's ends.
SPAN_SIGMA_SLACK = 1.001


@njit(cache=True)
def screen_boxes(means2d, conics, opacities, visible, width, height, min_alpha):
    """Inclusive pixel bounds [N, 4] outside which a Gaussian's alpha is below ``min_alpha``.

    alpha = opacity * exp(-sigma) >= min_alpha  <=>  d^T conic d <= 2 ln(opacity / min_alpha),
    an ellipse whose bounding box has half-sizes sqrt(2 ln(opacity / min_alpha) * cov_xx)
    and likewise in y (cov = conic^-1). Only pixel centres inside the box are listed.
    """
    n = means2d.shape[0]
    boxes = np.empty((n, 4), np.int32)
    for g in range(n):
        boxes[g, 0], boxes[g, 1], boxes[g, 2], boxes[g, 3] = 0, -1, 0, -1
        opacity = opacities[g]
        if not visible[g] or not opacity >= min_alpha:  # "not >=" also drops NaN
            continue
        a, b, c = conics[g, 0], conics[g, 1], conics[g, 2]
        determinant = a * c - b * b
        if not (determinant > 0.0 and a > 0.0):
            continue
        extent_sq = 2.0 * math.log(opacity / min_alpha)
        half_width = math.sqrt(extent_sq * c / determinant) + BOX_SLACK_PIXELS
        half_height = math.sqrt(extent_sq * a / determinant) + BOX_SLACK_PIXELS
        # pixel j's centre is j + 0.5; clip in floating point before converting to int
        x0 = max(0.0, math.ceil(means2d[g, 0] - half_width - 0.5))
        x1 = min(width - 1.0, math.floor(means2d[g, 0] + half_width - 0.5))
        y0 = max(0.0, math.ceil(means2d[g, 1] - half_height - 0.5))
        y1 = min(height - 1.0, math.floor(means2d[g, 1] + half_height - 0.5))
        if x0 <= x1 and y0 <= y1:
            boxes[g, 0], boxes[g, 1], boxes[g, 2], boxes[g, 3] = int(x0), int(x1), int(y0), int(y1)
    return boxes


@njit(cache=True)
def bin_to_tiles(boxes, depth_order, tile_size, tiles_x, tiles_y):
    """Per-tile Gaussian lists, nearest first, and each tile's work estimate.

    ``depth_order`` [N] lists Gaussian indices nearest first; filling the tiles in that order
    leaves every list sorted without sorting per tile. Work is the count of pixel-Gaussian
    pairs inside the boxes, what the compositing loops spend their time on.
    Returns tile_offsets [T + 1] int64, tile_gaussians [n_intersections] int32, work [T] float64.
    """
    n_tiles = tiles_x * tiles_y
    counts = np.zeros(n_tiles + 1, np.int64)
    work = np.zeros(n_tiles, np.float64)
    for g in depth_order:
        x0, x1, y0, y1 = boxes[g, 0], boxes[g, 1], boxes[g, 2], boxes[g, 3]
        if x0 > x1:
            continue
        for ty in range(y0 // tile_size, y1 // tile_size + 1):
            rows = min(y1, ty * tile_size + tile_size - 1) - max(y0, ty * tile_size) + 1
            for tx in range(x0 // tile_size, x1 // tile_size + 1):
                columns = min(x1, tx * tile_size + tile_size - 1) - max(x0, tx * tile_size) + 1
                tile = ty * tiles_x + tx
                counts[tile + 1] += 1
                work[tile] += rows * columns
    tile_offsets = np.cumsum(counts)
    next_slot = tile_offsets[:-1].copy()
    tile_gaussians = np.empty(tile_offsets[-1], np.int32)
    for g in depth_order:
        x0, x1, y0, y1 = boxes[g, 0], boxes[g, 1], boxes[g, 2], boxes[g, 3]
        if x0 > x1:
            continue
        for ty in range(y0 // tile_size, y1 // tile_size + 1):
            for tx in range(x0 // tile_size, x1 // tile_size + 1):
                tile = ty * tiles_x + tx
                tile_gaussians[next_slot[tile]] = g
                next_slot[tile] += 1
    return tile_offsets, tile_gaussians, work


@njit(cache=True)
def balance_tiles(work, pixels_per_tile, n_chunks):
    """Deal tiles to ``n_chunks`` groups of about equal work (largest first, to the lightest group).

    Each tile also costs its pixel count, for clearing and writing its pixels.
    Returns chunk_offsets [n_chunks + 1] int64 and chunk_tiles [T] int64.
    """
    n_tiles = work.shape[0]
    load = np.zeros(n_chunks, np.float64)
    chunk_of_tile = np.empty(n_tiles, np.int64)
    counts = np.zeros(n_chunks + 1, np.int64)
    for tile in np.argsort(-work):
        lightest = np.argmin(load)
        chunk_of_tile[tile] = lightest
        load[lightest] += work[tile] + pixels_per_tile
        counts[lightest + 1] += 1
    chunk_offsets = np.cumsum(counts)
    next_slot = chunk_offsets[:-1].copy()
    chunk_tiles = np.empty(n_tiles, np.int64)
    for tile in range(n_tiles):
        chunk = chunk_of_tile[tile]
        chunk_tiles[next_slot[chunk]] = tile
        next_slot[chunk] += 1
    return chunk_offsets, chunk_tiles


@njit(inline="always", cache=True)
def tile_bounds(tile, tiles_x, tile_size, width, height):
    """First and last pixel column and row of ``tile`` (row-major tile index), clipped to the image."""
    x0 = (tile % tiles_x) * tile_size
    y0 = (tile // tiles_x) * tile_size
    return x0, y0, min(x0 + tile_size, width) - 1, min(y0 + tile_size, height) - 1


@njit(inline="always", cache=True)
def row_span(mean_x, dy, a, b, c, sigma_limit, first, last):
    """The columns of [first, last] where a pixel row at offset ``dy`` from the centre can have
    sigma <= ``sigma_limit``: the chord of the ellipse, widened by a pixel each way.

    Every pixel outside it would fail the alpha threshold: skipping it changes no result, only
    the work (a Gaussian's box holds the whole ellipse, and for a thin tilted one each row's
    chord is a small part of the box's width). Empty when last < first.
    """
    # sigma = a dx^2 / 2 + b dy dx + c dy^2 / 2 <= limit, with dx = mean_x - (px + 0.5)
    discriminant = (b * dy) ** 2 - a * (c * dy * dy - 2.0 * sigma_limit)
    if not discriminant >= 0.0:  # "not >=" also catches NaN
        return first, first - 1
    centre = mean_x - 0.5 + b * dy / a  # px where dx = -b dy / a, the chord's middle
    half = math.sqrt(discriminant) / a
    # clip in floating point before converting to int, as screen_boxes does
    span_first = max(first - 1.0, math.floor(centre - half) - 1.0)
    span_last = min(last + 1.0, math.ceil(centre + half) + 1.0)
    return max(first, int(span_first)), min(last, int(span_last))


@njit(parallel=True, cache=True)
def composite_forward(
    means2d, conics, colours, opacities, background, boxes,
    tile_offsets, tile_gaussians, chunk_offsets, chunk_tiles,
    width, height, tile_size, tiles_x, min_alpha, max_alpha, min_transmittance,
    image, alpha_image, final_transmittance, contributor_count,
):  # fmt: skip
    """Front-to-back alpha compositing of every tile, written into the output arrays.

    Per pixel: alpha = min(max_alpha, opacity * exp(-sigma)); a Gaussian with sigma < 0 or
    alpha < min_alpha is skipped; the pixel stops before the Gaussian that would take its
    transmittance T to min_transmittance or below. colour = sum(colour_i alpha_i T_i) +
    T_final * background. Outputs: image [H, W, D] and alpha_image [H, W] (input dtype),
    final_transmittance [H, W] float64 and contributor_count [H, W] int32 (the position in the
    tile's list just past the last Gaussian drawn), which the backward pass starts from.
    """
    channels = colours.shape[1]
    rgb = channels == 3  # the training case: the colour in locals, the same sums in the same order
    pixels_per_tile = tile_size * tile_size
    for chunk in prange(chunk_offsets.shape[0] - 1):
        transmittance = np.empty(pixels_per_tile, np.float64)
        colour_sum = np.empty((pixels_per_tile, channels), np.float64)
        count = np.empty(pixels_per_tile, np.int32)
        done = np.empty(pixels_per_tile, np.bool_)
        for k in range(chunk_offsets[chunk], chunk_offsets[chunk + 1]):
            tile = chunk_tiles[k]
            tile_x0, tile_y0, tile_x1, tile_y1 = tile_bounds(tile, tiles_x, tile_size, width, height)
            transmittance[:] = 1.0
            colour_sum[:, :] = 0.0
            count[:] = 0
            done[:] = False
            pixels_left = (tile_x1 - tile_x0 + 1) * (tile_y1 - tile_y0 + 1)
            list_start = tile_offsets[tile]
            for slot in range(list_start, tile_offsets[tile + 1]):
                if pixels_left == 0:
                    break
                g = tile_gaussians[slot]
                mean_x, mean_y = means2d[g, 0], means2d[g, 1]
                a, b, c = conics[g, 0], conics[g, 1], conics[g, 2]
                opacity = opacities[g]
                c0 = c1 = c2 = 0.0
                if rgb:
                    c0, c1, c2 = colours[g, 0], colours[g, 1], colours[g, 2]
                sigma_limit = math.log(opacity / min_alpha) * SPAN_SIGMA_SLACK + SPAN_SIGMA_SLACK - 1.0
                x_first, x_last = max(boxes[g, 0], tile_x0), min(boxes[g, 1], tile_x1)
                for py in range(max(boxes[g, 2], tile_y0), min(boxes[g, 3], tile_y1) + 1):
                    dy = mean_y - (py + 0.5)
                    row = (py - tile_y0) * tile_size - tile_x0
                    span_first, span_last = row_span(mean_x, dy, a, b, c, sigma_limit, x_first, x_last)
                    for px in range(span_first, span_last + 1):
                        p = row + px
                        if done[p]:
                            continue
                        dx = mean_x - (px + 0.5)
                        sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
                        if sigma < 0.0:
                            continue
                        alpha = min(max_alpha, opacity * math.exp(-sigma))
                        if alpha < min_alpha:
                            continue
                        next_transmittance = transmittance[p] * (1.0 - alpha)
                        if next_transmittance <= min_transmittance:
                            done[p] = True
                            pixels_left -= 1
                            continue
                        weight = alpha * transmittance[p]
                        if rgb:
                            colour_sum[p, 0] += weight * c0
                            colour_sum[p, 1] += weight * c1
                            colour_sum[p, 2] += weight * c2
                        else:
                            for d in range(channels):
                                colour_sum[p, d] += weight * colours[g, d]
                        transmittance[p] = next_transmittance
                        count[p] = slot - list_start + 1
            for py in range(tile_y0, tile_y1 + 1):
                for px in range(tile_x0, tile_x1 + 1):
                    p = (py - tile_y0) * tile_size + (px - tile_x0)
                    for d in range(channels):
                        image[py, px, d] = colour_sum[p, d] + transmittance[p] * background[d]
                    alpha_image[py, px] = 1.0 - transmittance[p]
                    final_transmittance[py, px] = transmittance[p]
                    contributor_count[py, px] = count[p]


@njit(parallel=True, cache=True)
def composite_backward(
    means2d, conics, colours, opacities, background, boxes,
    tile_offsets, tile_gaussians, chunk_offsets, chunk_tiles,
    width, height, tile_size, tiles_x, min_alpha, max_alpha,
    final_transmittance, contributor_count, grad_image, grad_alpha, gradients,
):  # fmt: skip
    """Gradients of the composited image, walking each pixel's list back to front.

    As in the 3DGS paper's CUDA code: start from the final transmittance and the contributor
    count the forward pass saved, undo one Gaussian at a time (T_i = T_{i+1} / (1 - alpha_i)),
    and keep the colour accumulated behind it. grad_image [H, W, D], grad_alpha [H, W].
    ``gradients`` [n_chunks, N, 8 + D] float64, zeroed by the caller, receives per group the
    sums for (mean x, mean y, conic a, conic b, conic c, opacity, |mean x|, |mean y|, colour
    0..D-1); the caller adds the groups up. The two absolute sums add up each pixel's share of
    the mean's gradient without sign (AbsGS's homodirectional gradient, gsplat's ``absgrad``):
    a large Gaussian over a region it gets wrong on both sides has a small gradient, since the
    pixels pull it opposite ways, but a large absolute one. A Gaussian whose alpha was capped at
    max_alpha gets no gradient through alpha, as the cap's derivative is zero.
    """
    channels = colours.shape[1]
    rgb = channels == 3  # the training case: the colour in locals, the same sums in the same order
    pixels_per_tile = tile_size * tile_size
    for chunk in prange(chunk_offsets.shape[0] - 1):
        transmittance = np.empty(pixels_per_tile, np.float64)
        colour_behind = np.empty((pixels_per_tile, channels), np.float64)
        grad_background_term = np.empty(pixels_per_tile, np.float64)
        grad_colour = np.empty(channels, np.float64)
        grads = gradients[chunk]
        for k in range(chunk_offsets[chunk], chunk_offsets[chunk + 1]):
            tile = chunk_tiles[k]
            tile_x0, tile_y0, tile_x1, tile_y1 = tile_bounds(tile, tiles_x, tile_size, width, height)
            longest = 0
            for py in range(tile_y0, tile_y1 + 1):
                for px in range(tile_x0, tile_x1 + 1):
                    p = (py - tile_y0) * tile_size + (px - tile_x0)
                    transmittance[p] = final_transmittance[py, px]
                    colour_behind[p, :] = 0.0
                    # d colour / d alpha_i has a -T_final / (1 - alpha_i) * background term and
                    # d alpha_image / d alpha_i a +T_final / (1 - alpha_i) one: fold both here.
                    term = grad_alpha[py, px]
                    for d in range(channels):
                        term -= background[d] * grad_image[py, px, d]
                    grad_background_term[p] = term * final_transmittance[py, px]
                    longest = max(longest, contributor_count[py, px])
            list_start = tile_offsets[tile]
            for slot in range(list_start + longest - 1, list_start - 1, -1):
                position = slot - list_start
                g = tile_gaussians[slot]
                mean_x, mean_y = means2d[g, 0], means2d[g, 1]
                a, b, c = conics[g, 0], conics[g, 1], conics[g, 2]
                opacity = opacities[g]
                grad_mean_x = grad_mean_y = 0.0
                abs_mean_x = abs_mean_y = 0.0
                grad_a = grad_b = grad_c = grad_opacity = 0.0
                grad_colour[:] = 0.0
                gc0 = gc1 = gc2 = 0.0
                c0 = c1 = c2 = 0.0
                if rgb:
                    c0, c1, c2 = colours[g, 0], colours[g, 1], colours[g, 2]
                sigma_limit = math.log(opacity / min_alpha) * SPAN_SIGMA_SLACK + SPAN_SIGMA_SLACK - 1.0
                x_first, x_last = max(boxes[g, 0], tile_x0), min(boxes[g, 1], tile_x1)
                for py in range(max(boxes[g, 2], tile_y0), min(boxes[g, 3], tile_y1) + 1):
                    dy = mean_y - (py + 0.5)
                    row = (py - tile_y0) * tile_size - tile_x0
                    span_first, span_last = row_span(mean_x, dy, a, b, c, sigma_limit, x_first, x_last)
                    for px in range(span_first, span_last + 1):
                        if position >= contributor_count[py, px]:
                            continue
                        p = row + px
                        dx = mean_x - (px + 0.5)
                        sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
                        if sigma < 0.0:
                            continue
                        falloff = math.exp(-sigma)
                        unclamped_alpha = opacity * falloff
                        alpha = min(max_alpha, unclamped_alpha)
                        if alpha < min_alpha:
                            continue
                        inverse_keep = 1.0 / (1.0 - alpha)
                        in_front = transmittance[p] * inverse_keep  # T in front of this Gaussian
                        transmittance[p] = in_front
                        weight = alpha * in_front
                        grad_alpha_here = grad_background_term[p] * inverse_keep
                        if rgb:
                            u0, u1, u2 = grad_image[py, px, 0], grad_image[py, px, 1], grad_image[py, px, 2]
                            gc0 += weight * u0
                            grad_alpha_here += (c0 * in_front - colour_behind[p, 0] * inverse_keep) * u0
                            colour_behind[p, 0] += weight * c0
                            gc1 += weight * u1
                            grad_alpha_here += (c1 * in_front - colour_behind[p, 1] * inverse_keep) * u1
                            colour_behind[p, 1] += weight * c1
                            gc2 += weight * u2
                            grad_alpha_here += (c2 * in_front - colour_behind[p, 2] * inverse_keep) * u2
                            colour_behind[p, 2] += weight * c2
                        else:
                            for d in range(channels):
                                upstream = grad_image[py, px, d]
                                grad_colour[d] += weight * upstream
                                grad_alpha_here += (
                                    colours[g, d] * in_front - colour_behind[p, d] * inverse_keep
                                ) * upstream
                                colour_behind[p, d] += weight * colours[g, d]
                        if unclamped_alpha <= max_alpha:
                            grad_sigma = -unclamped_alpha * grad_alpha_here
                            grad_a += 0.5 * grad_sigma * dx * dx
                            grad_b += grad_sigma * dx * dy
                            grad_c += 0.5 * grad_sigma * dy * dy
                            pixel_mean_x = grad_sigma * (a * dx + b * dy)
                            pixel_mean_y = grad_sigma * (b * dx + c * dy)
                            grad_mean_x += pixel_mean_x
                            grad_mean_y += pixel_mean_y
                            abs_mean_x += abs(pixel_mean_x)
                            abs_mean_y += abs(pixel_mean_y)
                            grad_opacity += falloff * grad_alpha_here
                grads[g, 0] += grad_mean_x
                grads[g, 1] += grad_mean_y
                grads[g, 2] += grad_a
                grads[g, 3] += grad_b
                grads[g, 4] += grad_c
                grads[g, 5] += grad_opacity
                grads[g, 6] += abs_mean_x
                grads[g, 7] += abs_mean_y
                if rgb:
                    grads[g, 8] += gc0
                    grads[g, 9] += gc1
                    grads[g, 10] += gc2
                else:
                    for d in range(channels):
                        grads[g, 8 + d] += grad_colour[d]
