"""The publish stage's floater filter: planted outliers go, the scene stays, in any units."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from gaussian_splatting.outliers import OutlierSettings, filter_gaussians, find_outliers


def _grid(shape: tuple[int, int, int], origin: tuple[float, float, float]) -> np.ndarray:
    """A unit-spaced lattice: every point's k-NN distances are known exactly."""
    return np.array(list(itertools.product(*(range(n) for n in shape))), dtype=np.float64) + origin


def _far_outliers(count: int) -> np.ndarray:
    """Lone points spread evenly over a sphere of radius 5000 round the scene (a Fibonacci
    lattice): each one's mean 20-NN distance is one large D, to within a few per cent."""
    i = np.arange(count) + 0.5
    polar = np.arccos(1.0 - 2.0 * i / count)
    azimuth = np.pi * (1.0 + 5.0**0.5) * i
    directions = np.stack([np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)], axis=1)
    return 5000.0 * directions


def test_planted_outliers_and_a_small_remote_cluster_go_every_inlier_stays():
    # 1728 inliers. With k = 20 an interior lattice point's mean neighbour distance is 1.32 and
    # a corner's (the worst) is below 2 * sqrt(2): its 20 nearest lie within sqrt(8).
    inliers = _grid((12, 12, 12), (0.0, 0.0, 0.0))
    # 48 points (2.7 % < 5 %): dense enough for the statistical cut, but their own cluster.
    remote = _grid((4, 4, 3), (500.0, 0.0, 0.0))
    # 30 lone points, all at about one mean 20-NN distance D (~4400). A fraction p = 30 / 1806
    # of the values at D puts the cut, mean + 2 std, near (p + 2 sqrt(p (1 - p))) D ~ 0.27 D:
    # far below every lone point and far above every inlier (< 2.83, as p D alone is > 70).
    outliers = _far_outliers(30)
    points = np.concatenate([inliers, remote, outliers])
    order = np.random.default_rng(0).permutation(len(points))  # no reliance on input order

    result = find_outliers(points[order])

    expected = np.concatenate([np.ones(len(inliers), bool), np.zeros(len(remote) + len(outliers), bool)])
    np.testing.assert_array_equal(result.keep, expected[order])
    assert (result.removed_statistical, result.removed_clusters, result.kept) == (30, 48, 1728)
    assert all(type(value) is int for value in result.metrics().values())


def test_two_large_clusters_survive_and_clusters_under_five_percent_go():
    big = [_grid((10, 10, 9), (0.0, 0.0, 0.0)), _grid((10, 10, 9), (200.0, 0.0, 0.0))]  # 45 % each
    small = [_grid((5, 4, 2), (0.0, 300.0 * (i + 1), 0.0)) for i in range(5)]  # 2 % each
    outliers = _far_outliers(25)  # lift the statistical cut above every cluster point, as above
    points = np.concatenate(big + small + [outliers])
    sizes = [len(part) for part in big + small]
    assert sizes == [900, 900, 40, 40, 40, 40, 40]

    result = find_outliers(torch.from_numpy(points).float())

    expected = np.concatenate([np.ones(1800, bool), np.zeros(200 + 25, bool)])
    np.testing.assert_array_equal(result.keep, expected)
    assert (result.removed_statistical, result.removed_clusters, result.kept) == (25, 200, 1800)


def test_a_lower_fraction_keeps_the_small_clusters():
    """The threshold is what removes them, not DBSCAN calling them noise."""
    big = _grid((10, 10, 9), (0.0, 0.0, 0.0))
    small = [_grid((5, 4, 2), (0.0, 300.0 * (i + 1), 0.0)) for i in range(5)]
    points = np.concatenate([big, *small, _far_outliers(25)])
    result = find_outliers(points, OutlierSettings(min_cluster_fraction=0.01))
    assert (result.removed_statistical, result.removed_clusters, result.kept) == (25, 0, 1100)


def _fibonacci_sphere(count: int, radius: float) -> np.ndarray:
    return _far_outliers(count) / 5000.0 * radius


def test_a_sparse_ground_plane_is_scene_not_noise():
    """Density varies across real scenes: a plane 16x sparser per area than the object beside it
    must stay, while a speck as dense as the object, but apart, goes."""
    sphere = _fibonacci_sphere(4000, radius=1.0)  # spacing ~0.056
    plane = _grid((20, 20, 1), (0.0, 0.0, 0.0)) * 0.224 + (-2.1, -2.1, -1.1)  # spacing 0.224, 9 %
    speck = _fibonacci_sphere(100, radius=0.05) + (0.0, 0.0, 3.0)  # 2.2 %
    points = np.concatenate([sphere, plane, speck, _far_outliers(30)])
    result = find_outliers(points)
    expected = np.concatenate([np.ones(4400, bool), np.zeros(130, bool)])
    np.testing.assert_array_equal(result.keep, expected)
    assert (result.removed_statistical, result.removed_clusters) == (30, 100)


def _random_scene(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform random cube with a remote speck and lone outliers; [N] bool: planted."""
    rng = np.random.default_rng(seed)
    cube = rng.uniform(0.0, 10.0, (3000, 3))
    speck = rng.uniform(0.0, 0.5, (60, 3)) + (60.0, 0.0, 0.0)
    lone = rng.uniform(-1.0, 1.0, (20, 3)) * 400.0 + 500.0
    points = np.concatenate([cube, speck, lone])
    planted = np.concatenate([np.zeros(len(cube), bool), np.ones(len(speck) + len(lone), bool)])
    return points, planted


@pytest.mark.parametrize("sample_size", [200_000, 1000])
def test_random_scene_loses_only_the_planted_points(sample_size):
    """The 1000 case runs DBSCAN on a subsample and assigns the rest by nearest neighbour."""
    points, planted = _random_scene(seed=1)
    result = find_outliers(points, OutlierSettings(dbscan_sample_size=sample_size))
    assert not result.keep[planted].any()
    np.testing.assert_array_equal(result.keep, ~planted)
    assert result.removed_statistical + result.removed_clusters + result.kept == len(points)


def test_same_mask_whatever_the_units():
    points, _ = _random_scene(seed=2)
    in_metres = find_outliers(points)
    in_millimetres = find_outliers(points * 1000.0)
    np.testing.assert_array_equal(in_millimetres.keep, in_metres.keep)
    assert in_millimetres.metrics() == in_metres.metrics()


def test_non_finite_centres_are_removed_as_statistical():
    points = _grid((6, 6, 6), (0.0, 0.0, 0.0))
    points[3] = np.nan
    points[7, 1] = np.inf
    result = find_outliers(points)
    assert not result.keep[3] and not result.keep[7]
    assert result.removed_statistical >= 2 and result.kept + result.removed_statistical + result.removed_clusters == 216


@pytest.mark.parametrize("count", [0, 5, 20])
def test_too_few_gaussians_keep_everything(count):
    points = np.random.default_rng(0).normal(size=(count, 3))
    result = find_outliers(points)
    assert result.keep.shape == (count,) and result.keep.all()
    assert (result.removed_statistical, result.removed_clusters, result.kept) == (0, 0, count)


def test_disabled_keeps_everything():
    points = np.concatenate([_grid((6, 6, 6), (0.0, 0.0, 0.0)), _far_outliers(5)])
    result = find_outliers(points, OutlierSettings(enabled=False))
    assert result.keep.all() and result.kept == len(points)


def test_filter_gaussians_keeps_the_same_rows_of_every_parameter():
    count = 7
    state = {
        "means": torch.arange(count * 3, dtype=torch.float32).reshape(count, 3),
        "log_scales": torch.randn(count, 3),
        "quats": torch.randn(count, 4),
        "opacity_logits": torch.arange(count, dtype=torch.float32),
        "sh_dc": torch.randn(count, 1, 3),
        "sh_rest": torch.randn(count, 15, 3),
    }
    keep = np.array([True, False, True, True, False, False, True])
    filtered = filter_gaussians(state, keep)
    assert set(filtered) == set(state)
    for name, tensor in state.items():
        torch.testing.assert_close(filtered[name], tensor[torch.from_numpy(keep)], rtol=0, atol=0, msg=name)
    assert filtered["opacity_logits"].tolist() == [0.0, 2.0, 3.0, 6.0]
    with pytest.raises(ValueError, match="rows"):
        filter_gaussians(state, keep[:-1])
