"""A coarser version of a model, for viewers that cannot hold all of it: at most ``count``
Gaussians that still cover the whole scene, with its colours and its look from afar, and less
fine detail.

Cutting a model to its biggest splats (the order ``splat_export`` writes, which a viewer with a
splat budget truncates) loses every region made only of small splats: holes. Here the small
Gaussians are merged instead, on a grid whose cell size is searched for so that the result has
at most ``count`` Gaussians and (budget permitting) not 0.5% fewer. In each cell:

- Gaussians as large as a cell (largest standard deviation >= the cell's side) stay as they
  are: they are already coarse, and merged they would swallow their small neighbours.
- A cell holding one small Gaussian keeps it as it is.
- Two or more small Gaussians become one, by moment matching: weights w = opacity x projected
  area (the product of the two largest standard deviations, its area seen face on), so a splat
  counts as much as it shows; the mean is the weighted mean; the covariance the weighted mean of
  Sigma_i + (mu_i - mu)(mu_i - mu)^T, whose eigen-decomposition gives the scales and (as a proper
  rotation) the quaternion; SH band 0 and the higher bands are weighted means.
- The merged opacity keeps the cell's alpha mass: opacity x area integrates a splat's alpha over
  the screen (2 pi alpha sigma_1 sigma_2 face on), so sum(alpha_i A_i) / A_merged keeps the
  cell's coverage and its weight in the colour of what lies behind, as seen from afar where
  the cell is a few pixels. Where the members overlap, that sum exceeds the merged area and the
  cell is simply opaque: the opacity is capped at MAX_OPACITY.

Measured on the demo's trained model (47,916 Gaussians; 5 of its training cameras, and the
same 3 units further back), PSNR against the full model, near / far: at half the Gaussians
23.5 / 29.8 dB (its biggest half: 16.7 / 21.6), at a quarter 20.9 / 26.8 (11.0 / 16.0), at a
tenth 17.8 / 22.7 (8.7 / 12.7).
The choices were measured there too: keeping Gaussians from one cell across rather than half a
cell gains 1.1-1.8 dB near; the alpha mass beats averaging optical depth (1 - prod(1 - alpha_i)
^(A_i / A_merged)) by 0.1-0.6 dB near and is within 0.4 dB of it from afar; enlarging merged
Gaussians (at equal mass) gains nothing there (0.1 dB) and loses 0.5-1.5 dB on the tests' scene.

Gaussians fainter than 1/255 are dropped first: no renderer draws them (the compositor skips an
alpha below 1/255, and opacity bounds alpha), so they cost a slot and show nothing.

Everything runs in float64 NumPy on the CPU (small element-wise steps in PyTorch were 10 to 50
times slower on a busy 2-core machine, its threads waiting on each other). The Gaussians to merge
are visited sorted by cell, CHUNK at a time, so that each cell's sums are finished as soon as its
last member is read: working memory is a few CHUNK x (10 + 3K) float64 arrays, not one row of
sums per cell, whatever the model's size. The result has the input's dtype and device.

Publish (not here): for each splat budget B below the model's count N (the viewer's profiles:
1.5M for mid-memory devices, 600k for phones; ``device-profile.js``), call ``coarser(state, B)``
on the full model, once per budget (each level from the full model, not from the level above,
so errors do not add up), and write each result as its own ``.splat``; a viewer whose budget is
below N loads the largest level within its budget instead of a truncated prefix of the full file.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

# As gaussians.PARAMETER_NAMES (not imported: that module loads plyfile and scikit-learn).
PARAMETER_NAMES = ("means", "log_scales", "quats", "opacity_logits", "sh_dc", "sh_rest")

# Below this opacity a Gaussian is drawn nowhere (the compositor's per-pixel threshold).
MIN_VISIBLE_OPACITY = 1.0 / 255.0
# A Gaussian stays unmerged when its largest standard deviation is at least this many cells.
KEEP_EXTENT_IN_CELLS = 1.0
# The merged opacity's cap: where the alpha mass exceeds the merged area, the cell is opaque.
MAX_OPACITY = 0.99
# The search for the cell size stops when the count is this close below the budget (relative),
# or the cell sizes bracketing it are this close (relative).
COUNT_TOLERANCE = 0.005
CELL_TOLERANCE = 0.002
# Cells per axis at the finest grid tried: keeps the int64 cell keys exact (3 x 20 bits).
MAX_CELLS_PER_AXIS = 1 << 20
# Gaussians merged at a time (float64 rows of 1 + 3 + 6 + 3K values: 60 MB at SH degree 3).
CHUNK = 131_072
# The six entries of a symmetric 3x3 matrix kept (row, column).
UPPER = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))


def coarser(state: dict[str, Tensor], count: int) -> dict[str, Tensor]:
    """At most ``count`` Gaussians (raw parameters, as ``read_ply`` gives them) showing the same
    scene as ``state``; ``state`` itself (a new dict of the same tensors) when it has no more."""
    if count < 1:
        raise ValueError(f"a level of detail needs at least 1 Gaussian, got count={count}")
    total = state["means"].shape[0]
    if total <= count:
        return {name: state[name] for name in PARAMETER_NAMES}
    device = state["means"].device
    state = {name: state[name].detach().cpu() for name in PARAMETER_NAMES}
    _check_finite(state)

    opacity_logits = _numpy(state["opacity_logits"]).reshape(total)
    visible = np.flatnonzero(opacity_logits >= math.log(MIN_VISIBLE_OPACITY / (1 - MIN_VISIBLE_OPACITY)))
    del opacity_logits
    if visible.size <= count:
        return _on(device, _rows(state, visible))

    means = _numpy(state["means"])[visible]
    extent = np.exp(_numpy(state["log_scales"])[visible].max(axis=1))
    origin = means.min(axis=0)
    local = means - origin
    del means
    cell = _cell_size(local, extent, count)

    keep_big = extent >= KEEP_EXTENT_IN_CELLS * cell
    small = np.flatnonzero(~keep_big)
    keys = _cell_keys(np.floor(local[small] / cell))
    _, cell_of, members = np.unique(keys, return_inverse=True, return_counts=True)
    del local, extent
    cell_of = cell_of.reshape(-1)
    alone = members[cell_of] == 1
    kept = np.sort(np.concatenate([np.flatnonzero(keep_big), small[alone]]))
    # the cells that merge, numbered 0..C-1 in the order of their keys; their Gaussians by cell
    merged_number = np.cumsum(members >= 2) - 1
    merging_cell = merged_number[cell_of[~alone]]
    order = np.argsort(merging_cell, kind="stable")
    merging = visible[small[~alone][order]]
    merging_cell = merging_cell[order]
    cells = int(merged_number[-1]) + 1 if merged_number.size else 0
    del keys, cell_of, alone, order, small, keep_big

    # one allocation for the result: the kept Gaussians first, then the merged ones
    result = {
        name: torch.empty((kept.size + cells,) + state[name].shape[1:], dtype=state[name].dtype)
        for name in PARAMETER_NAMES
    }
    kept_rows = torch.from_numpy(visible[kept])
    for name in PARAMETER_NAMES:
        torch.index_select(state[name], 0, kept_rows, out=result[name][: kept.size])
    merged = {name: result[name][kept.size :] for name in PARAMETER_NAMES}
    _merge(state, merging, merging_cell, origin, cell, merged)
    return _on(device, result)


def _cell_size(local: np.ndarray, extent: np.ndarray, count: int) -> float:
    """A grid cell whose clustering leaves at most ``count`` Gaussians and no fewer than
    COUNT_TOLERANCE below it (or the smallest such cell, to CELL_TOLERANCE).

    Each try clusters every Gaussian (hashing 2M cell keys takes 0.2 s), so tries are few: a
    bracket by factors of 2 from the median Gaussian's size (cells come out about that size),
    then regula falsi on log count against log cell size (the Illinois variant, which cannot
    stall at one end). A cell larger than the scene and than every keep threshold leaves 1."""
    span = float(local.max())
    finest = max(span / MAX_CELLS_PER_AXIS, np.finfo(np.float64).tiny)
    coarsest = max(span, float(extent.max()) / KEEP_EXTENT_IN_CELLS, finest) * 1.01
    at_finest = _clustered_count(local, extent, finest)
    if at_finest <= count:
        return finest

    def excess(log_cell: float) -> tuple[float, int]:
        """log(Gaussians left / count) > 0 where too many are left; and the Gaussians left."""
        clustered = _clustered_count(local, extent, math.exp(log_cell))
        return math.log(clustered / count), clustered

    low = (math.log(finest), math.log(at_finest / count))  # (log cell, excess > 0)
    high = (math.log(coarsest), math.log(1 / count))  # (log cell, excess <= 0)
    best = 1  # Gaussians left at high
    guess = min(max(math.log(float(np.median(extent))), low[0]), high[0])
    value, clustered = excess(guess)
    too_many = value > 0
    while True:
        if value > 0:
            low = (guess, value)
        else:
            high, best = (guess, value), clustered
        guess += math.log(2.0) if too_many else -math.log(2.0)
        if (value > 0) != too_many or not low[0] < guess < high[0]:
            break
        value, clustered = excess(guess)

    replaced = 0  # the end the last try replaced: -1 low, +1 high
    while high[0] - low[0] > CELL_TOLERANCE and best < count * (1 - COUNT_TOLERANCE):
        (x_low, f_low), (x_high, f_high) = low, high
        guess = x_low + (x_high - x_low) * f_low / (f_low - f_high)
        guess = min(max(guess, x_low + 0.01 * (x_high - x_low)), x_high - 0.01 * (x_high - x_low))
        value, clustered = excess(guess)
        if value > 0:
            if replaced == -1:  # high stays a second time: halve its excess (Illinois)
                high = (x_high, f_high / 2)
            low, replaced = (guess, value), -1
        else:
            if replaced == 1:
                low = (x_low, f_low / 2)
            high, best, replaced = (guess, value), clustered, 1
    return math.exp(high[0])


def _clustered_count(local: np.ndarray, extent: np.ndarray, cell: float) -> int:
    small = extent < KEEP_EXTENT_IN_CELLS * cell
    points = local[small]
    cells = np.unique(_cell_keys(np.floor(points / cell))).size
    return int(small.size - np.count_nonzero(small)) + cells


def _cell_keys(corners: np.ndarray) -> np.ndarray:
    """One int64 per grid cell from its integer corner (cells counted from the scene's lowest
    corner; at most MAX_CELLS_PER_AXIS + 1 per axis, so the key is exact)."""
    index = np.minimum(corners, MAX_CELLS_PER_AXIS).astype(np.int64)
    size = np.int64(MAX_CELLS_PER_AXIS + 1)
    return (index[:, 0] * size + index[:, 1]) * size + index[:, 2]


def _merge(
    state: dict[str, Tensor], rows: np.ndarray, cell_of: np.ndarray, origin: np.ndarray, cell: float,
    merged: dict[str, Tensor],
) -> None:  # fmt: skip
    """One Gaussian per cell into ``merged`` (row c for cell c) from the Gaussians ``rows`` of
    ``state``, sorted by their cells ``cell_of`` (0..C-1, each with 2 members or more)."""
    if rows.size == 0:
        return
    # log(opacity x area) of each Gaussian, and the largest in its cell: weights taken relative
    # to it cannot all underflow, however small a cell's Gaussians are
    log_mass = np.empty(rows.size)
    for start in range(0, rows.size, CHUNK):
        part = torch.from_numpy(rows[start : start + CHUNK])
        log_scales = np.sort(_numpy(state["log_scales"][part]), axis=1)
        logits = _numpy(state["opacity_logits"][part]).reshape(-1)
        log_mass[start : start + CHUNK] = log_scales[:, 1] + log_scales[:, 2] - np.logaddexp(0.0, -logits)
    reference = np.full(merged["means"].shape[0], -np.inf)
    np.maximum.at(reference, cell_of, log_mass)

    # sums per cell: weight, weight x (local mean, second moment's 6 entries, SH), each cell's
    # finished when a chunk holds its last member; the last cell of a chunk may go on in the next
    carried: tuple[int, np.ndarray, np.ndarray] | None = None  # (cell, sums, corner)
    for start in range(0, rows.size, CHUNK):
        stop = min(start + CHUNK, rows.size)
        part, cells = torch.from_numpy(rows[start:stop]), cell_of[start:stop]
        means = _numpy(state["means"][part]) - origin
        corners = np.floor(means / cell)
        local = means - corners * cell
        values = np.empty((len(part), 13 + 3 * state["sh_rest"].shape[1]))
        values[:, 0] = 1.0
        values[:, 1:4] = local
        values[:, 4:10] = _covariance_entries(_numpy(state["quats"][part]), _numpy(state["log_scales"][part]))
        for k, (i, j) in enumerate(UPPER):
            values[:, 4 + k] += local[:, i] * local[:, j]
        values[:, 10:13] = _numpy(state["sh_dc"][part]).reshape(len(part), 3)
        values[:, 13:] = _numpy(state["sh_rest"][part]).reshape(len(part), -1)
        del means, local
        values *= np.exp(log_mass[start:stop] - reference[cells])[:, None]

        starts = np.flatnonzero(np.r_[True, cells[1:] != cells[:-1]])
        sums = np.add.reduceat(values, starts, axis=0)
        first, corners = int(cells[0]), corners[starts]
        if carried is not None:
            if carried[0] == first:
                sums[0] += carried[1]
                corners[0] = carried[2]
            else:
                _write_merged(merged, carried[0], carried[1][None], carried[2][None], origin, cell, reference)
        if stop < rows.size:
            carried = (first + len(starts) - 1, sums[-1].copy(), corners[-1].copy())
            sums, corners = sums[:-1], corners[:-1]
        _write_merged(merged, first, sums, corners, origin, cell, reference)


def _write_merged(
    merged: dict[str, Tensor], first: int, sums: np.ndarray, corners: np.ndarray, origin: np.ndarray,
    cell: float, reference: np.ndarray,
) -> None:  # fmt: skip
    """Gaussians first, first + 1, ... of ``merged`` from their cells' weighted sums."""
    count = len(sums)
    if count == 0:
        return
    total = sums[:, 0]
    mean_local = sums[:, 1:4] / total[:, None]
    upper = sums[:, 4:10] / total[:, None]
    covariance = np.empty((count, 3, 3))
    for k, (i, j) in enumerate(UPPER):
        covariance[:, i, j] = covariance[:, j, i] = upper[:, k] - mean_local[:, i] * mean_local[:, j]
    variances, axes = (t.numpy() for t in torch.linalg.eigh(torch.from_numpy(covariance)))  # ascending
    variances = np.maximum(variances, np.maximum(variances[:, 2:], np.finfo(np.float64).tiny) * 1e-12)
    axes[:, :, 0] *= np.sign(np.linalg.det(axes))[:, None]  # a proper rotation
    log_scales = 0.5 * np.log(variances)
    # the alpha mass kept: sum(alpha_i A_i) / A_merged, in logs (the sum is total x e^reference)
    span = slice(first, first + count)
    log_opacity = np.log(total) + reference[span] - log_scales[:, 1] - log_scales[:, 2]
    opacity = np.clip(np.exp(log_opacity), 1e-12, MAX_OPACITY)
    values = {
        "means": origin + corners * cell + mean_local,
        "log_scales": log_scales,
        "quats": _quaternions(axes),
        "opacity_logits": np.log(opacity) - np.log1p(-opacity),
        "sh_dc": sums[:, 10:13] / total[:, None],
        "sh_rest": sums[:, 13:] / total[:, None],
    }
    for name, value in values.items():
        target = merged[name][span]
        target.copy_(torch.from_numpy(value).reshape(target.shape))


def _covariance_entries(quats: np.ndarray, log_scales: np.ndarray) -> np.ndarray:
    """The UPPER entries [n, 6] of R diag(s^2) R^T, from quaternions (w, x, y, z; any norm;
    zero = identity) and log scales."""
    norms = np.linalg.norm(quats, axis=1)
    w, x, y, z = (np.where(norms[:, None] > 0, quats / np.maximum(norms, 1e-300)[:, None], [1.0, 0.0, 0.0, 0.0])).T
    scales = np.exp(log_scales).T
    xx, yy, zz, xy, xz, yz, wx, wy, wz = x * x, y * y, z * z, x * y, x * z, y * z, w * x, w * y, w * z
    rotation = np.stack([
        (1 - 2 * (yy + zz), 2 * (xy - wz), 2 * (xz + wy)),
        (2 * (xy + wz), 1 - 2 * (xx + zz), 2 * (yz - wx)),
        (2 * (xz - wy), 2 * (yz + wx), 1 - 2 * (xx + yy)),
    ])  # fmt: skip  # [3, 3, n]
    rotation *= scales[None]
    return np.stack([np.einsum("kn,kn->n", rotation[i], rotation[j]) for i, j in UPPER], axis=1)


def _quaternions(rotations: np.ndarray) -> np.ndarray:
    """Unit quaternions (w, x, y, z), w >= 0, of proper rotation matrices [n, 3, 3]: Shepperd's
    method, row by row the largest of the four squared components first."""
    m = rotations
    trace = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    squares = np.stack([1 + trace, 1 + 2 * m[:, 0, 0] - trace, 1 + 2 * m[:, 1, 1] - trace, 1 + 2 * m[:, 2, 2] - trace])
    largest = squares.argmax(axis=0)
    root = 2 * np.sqrt(np.maximum(np.take_along_axis(squares, largest[None], axis=0)[0], 1e-300))  # 4 |q_largest|
    d21, d02, d10 = m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]
    s01, s02, s12 = m[:, 0, 1] + m[:, 1, 0], m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1]
    quarter = root * root / 4
    candidates = np.stack([
        (quarter, d21, d02, d10),
        (d21, quarter, s01, s02),
        (d02, s01, quarter, s12),
        (d10, s02, s12, quarter),
    ]) / root  # fmt: skip  # [4 cases, 4 components, n]
    quaternions = candidates[largest, :, np.arange(len(m))]
    quaternions /= np.linalg.norm(quaternions, axis=1, keepdims=True)
    return np.where(quaternions[:, :1] < 0, -quaternions, quaternions)


def _on(device: torch.device, state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {name: tensor.to(device) for name, tensor in state.items()}


def _rows(state: dict[str, Tensor], index: np.ndarray) -> dict[str, Tensor]:
    rows = torch.from_numpy(index)
    return {name: state[name].index_select(0, rows) for name in PARAMETER_NAMES}


def _check_finite(state: dict[str, Tensor]) -> None:
    for name in PARAMETER_NAMES:
        values = state[name].reshape(state[name].shape[0], -1)
        if torch.isfinite(values.sum()):  # one pass; a sum that overflows is counted row by row
            continue
        bad = int((~torch.isfinite(values)).any(dim=1).sum())
        if bad:
            raise ValueError(f"{bad} Gaussians have non-finite {name}: the model is broken, retrain it")


def _numpy(values: Tensor) -> np.ndarray:
    return values.detach().numpy().astype(np.float64)
