"""Removing floaters before a model is published: Gaussians far from everything, and small
groups of Gaussians far from the scene, which photogrammetry leaves around most captures.

Two passes over the Gaussian centres, both free of the scene's units:

1. Statistical: each centre's mean distance to its ``k`` nearest neighbours; those beyond
   mean + ``std_ratio`` standard deviations of that quantity (over all Gaussians) go, as in
   Open3D's ``remove_statistical_outlier``. Non-finite centres go here too.
2. Clusters: DBSCAN on what is left; its noise points go, and so does every cluster holding
   less than ``min_cluster_fraction`` of those points. ``eps`` is a multiple of a high quantile
   of the mean k-NN distances, so it follows the sampling density whatever the units, and a
   sparse but connected part of the scene (ground, background) stays one with it.

Speed (a 2-core CPU, uniform random points with 0.1 % far outliers, defaults): 200k centres
take about 3 s (k-NN pass 1.2-1.7 s, DBSCAN the rest); 1M take 16-21 s (k-NN pass 13-14 s;
DBSCAN on a 200k subsample, the rest following their nearest sampled neighbour, 4-7 s); so
about a minute for 3M, less with more cores (both passes use them all). The k-NN pass runs in
chunks and keeps only the mean distances: peak memory stayed under 0.8 GB at 1M, torch included.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.cluster import DBSCAN
from sklearn.neighbors import NearestNeighbors
from torch import Tensor

# eps = EPS_PER_KNN_DISTANCE x the EPS_QUANTILE quantile of the mean k-NN distances of the
# points DBSCAN sees. Density varies a lot across a scene (a ground plane or background is often
# 10-100x sparser per area than the object), so eps must follow its sparser legitimate parts,
# not the typical (median) spacing: with a median-based eps a sparse ground plane is all noise.
# A high quantile rather than the maximum, so that a few stragglers the statistical cut let
# through cannot stretch eps and merge remote specks into the scene. In a region at that quantile
# a point has ~8 points (3D or on a surface) within 1.0x its mean k-NN distance and ~28 within
# 1.5x, so it is safely a core point; a group must lie that far from the rest to count as apart.
EPS_QUANTILE = 0.99
EPS_PER_KNN_DISTANCE = 1.5

# DBSCAN's min_samples as a fraction of k (5 for k = 20): a point is core when k/4 points, itself
# included, lie within eps, which every point of the scene's parts, sparse ones included, meets
# (see above); stragglers and specks of fewer than k/4 points that no core point reaches are noise.
MIN_SAMPLES_PER_K = 0.25

# Beyond this many points DBSCAN (whose neighbourhood lists grow with N x density) runs on a
# random subsample; eps comes from the subsample itself, so the density it sees is consistent.
DBSCAN_SAMPLE_SIZE = 200_000

# The quantile that sets eps is estimated from this many probe points (100 of them above the
# 99th percentile: within a few per cent of the true one).
EPS_PROBES = 10_000

KNN_CHUNK = 65_536
SEED = 0


@dataclass(frozen=True)
class OutlierSettings:
    """``k`` neighbours per mean distance (and DBSCAN's scale); ``std_ratio`` sets the statistical
    cut; ``min_cluster_fraction`` is of the Gaussians left after that cut."""

    k: int = 20
    std_ratio: float = 2.0
    min_cluster_fraction: float = 0.05
    enabled: bool = True
    dbscan_sample_size: int = DBSCAN_SAMPLE_SIZE


@dataclass(frozen=True)
class OutlierResult:
    """``keep``: [N] bool mask; the counts add up to N (plain ints, for status metrics)."""

    keep: np.ndarray
    removed_statistical: int
    removed_clusters: int
    kept: int

    def metrics(self) -> dict[str, int]:
        return {
            "removed_statistical": self.removed_statistical,
            "removed_clusters": self.removed_clusters,
            "kept": self.kept,
        }


def find_outliers(means: np.ndarray | Tensor, settings: OutlierSettings = OutlierSettings()) -> OutlierResult:
    """Which Gaussians to keep, from their centres [N, 3]. Fewer than k + 1 centres (or a
    disabled filter) keep everything: there is no neighbourhood to judge them by."""
    points = _as_float64(means)
    count = points.shape[0]
    keep = np.ones(count, dtype=bool)
    if not settings.enabled or count <= settings.k:
        return OutlierResult(keep, 0, 0, count)

    finite = np.all(np.isfinite(points), axis=1)
    keep &= finite
    if finite.sum() > settings.k:
        kept_so_far = np.flatnonzero(finite)
        distances = mean_knn_distances(points[kept_so_far], settings.k)
        cut = distances.mean() + settings.std_ratio * distances.std()
        keep[kept_so_far[distances > cut]] = False
    removed_statistical = count - int(keep.sum())

    survivors = np.flatnonzero(keep)
    if survivors.size > settings.k:
        keep[survivors[~_in_large_clusters(points[survivors], settings)]] = False
    kept = int(keep.sum())
    return OutlierResult(keep, removed_statistical, count - removed_statistical - kept, kept)


def filter_gaussians(state: dict[str, Tensor], keep: np.ndarray | Tensor) -> dict[str, Tensor]:
    """The rows of every parameter where ``keep`` is true."""
    mask = torch.as_tensor(np.asarray(keep, dtype=bool))
    filtered = {}
    for name, tensor in state.items():
        if tensor.shape[0] != mask.shape[0]:
            raise ValueError(f"{name} has {tensor.shape[0]} rows, the mask {mask.shape[0]}")
        filtered[name] = tensor[mask.to(tensor.device)]
    return filtered


def mean_knn_distances(points: np.ndarray, k: int) -> np.ndarray:
    """[N] mean distance of each point to its k nearest others (needs N > k)."""
    index = NearestNeighbors(n_neighbors=k + 1, algorithm="kd_tree", n_jobs=-1).fit(points)
    means = np.empty(points.shape[0])
    for start in range(0, points.shape[0], KNN_CHUNK):
        distances, _ = index.kneighbors(points[start : start + KNN_CHUNK])
        # Column 0 is a zero distance: the point itself (or a duplicate of it, equally zero).
        means[start : start + KNN_CHUNK] = distances[:, 1:].mean(axis=1)
    return means


def _in_large_clusters(points: np.ndarray, settings: OutlierSettings) -> np.ndarray:
    """[N] bool: in a DBSCAN cluster of at least ``min_cluster_fraction`` of the points."""
    rng = np.random.default_rng(SEED)
    count = points.shape[0]
    sampled = count > settings.dbscan_sample_size
    sample = np.sort(rng.choice(count, settings.dbscan_sample_size, replace=False)) if sampled else np.arange(count)
    sample_points = points[sample]

    probes = sample_points
    if sample.size > EPS_PROBES:
        probes = sample_points[rng.choice(sample.size, EPS_PROBES, replace=False)]
    index = NearestNeighbors(n_neighbors=settings.k + 1, algorithm="kd_tree", n_jobs=-1).fit(sample_points)
    probe_distances, _ = index.kneighbors(probes)
    eps = EPS_PER_KNN_DISTANCE * float(np.quantile(probe_distances[:, 1:].mean(axis=1), EPS_QUANTILE))
    if not eps > 0:
        # Nearly all points sit on k duplicates of themselves: no spacing to measure clusters by.
        return np.ones(count, dtype=bool)

    min_samples = max(2, round(MIN_SAMPLES_PER_K * settings.k))
    sample_labels = DBSCAN(eps=eps, min_samples=min_samples, algorithm="kd_tree", n_jobs=-1).fit_predict(sample_points)
    if sampled:
        # The rest join their nearest sampled neighbour's cluster, if it is within eps.
        labels = np.full(count, -1)
        labels[sample] = sample_labels
        rest = np.ones(count, dtype=bool)
        rest[sample] = False
        distance, nearest = index.kneighbors(points[rest], n_neighbors=1)
        labels[rest] = np.where(distance[:, 0] <= eps, sample_labels[nearest[:, 0]], -1)
    else:
        labels = sample_labels

    sizes = np.bincount(labels[labels >= 0], minlength=1)
    large = sizes >= settings.min_cluster_fraction * count
    return (labels >= 0) & large[np.maximum(labels, 0)]


def _as_float64(means: np.ndarray | Tensor) -> np.ndarray:
    if isinstance(means, Tensor):
        means = means.detach().cpu().numpy()
    points = np.asarray(means, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"expected centres of shape [N, 3], got {list(points.shape)}")
    return points
