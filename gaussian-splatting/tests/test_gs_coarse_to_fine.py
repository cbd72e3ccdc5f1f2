"""Coarse to fine: which size each iteration trains at, the shrunk views, and the statistics
densification keeps while the images are small."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gaussian_splatting.cli import build_parser, config_from_args
from gaussian_splatting.config import TrainConfig
from gaussian_splatting.densify import DensifyState
from gaussian_splatting.projection import project_gaussians
from gaussian_splatting.rasterize import RenderMeta
from gaussian_splatting.scene import TrainingView


def config(**values) -> TrainConfig:
    return TrainConfig(source=Path("."), model_dir=Path("."), **values)


def test_each_level_lasts_its_share_of_the_run_finest_last():
    run = config(iterations=100, coarse_levels=2, coarse_fraction=0.25)
    factors = [run.downscale_at(i, "cpu", 659) for i in range(1, 101)]
    assert factors == [4] * 25 + [2] * 25 + [1] * 50
    assert [run.downscale_at(i, "cuda", 659) for i in (1, 26, 51)] == [4, 2, 1]  # set explicitly: any backend


def test_default_is_one_level_for_three_quarters_of_the_run_on_the_cpu_and_none_on_cuda():
    run = config(iterations=2000)
    assert [run.downscale_at(i, "cpu", 659) for i in (1, 1500, 1501, 2000)] == [2, 2, 1, 1]
    assert {run.downscale_at(i, "cuda", 659) for i in range(1, 2001)} == {1}
    assert {config(iterations=2000, coarse_levels=0).downscale_at(i, "cpu", 659) for i in range(1, 2001)} == {1}
    # a run too short for a level to last one iteration stays at full size
    assert config(iterations=1, coarse_fraction=0.25).downscale_at(1, "cpu", 659) == 1


def test_by_default_images_are_not_made_smaller_than_256_pixels_on_the_long_side():
    """The daemon's CPU preview already trains on small photos (the demo: 200x150): halved again,
    the demo scored 0.03 less SSIM; kermit at 659x487, halved to 330x244, scored as well or better."""
    run = config(iterations=2000)
    assert run.coarse_levels_on("cpu", 659) == 1 and run.coarse_levels_on("cpu", 512) == 1
    assert run.coarse_levels_on("cpu", 511) == 0 and run.coarse_levels_on("cpu", 200) == 0
    assert {run.downscale_at(i, "cpu", 200) for i in range(1, 2001)} == {1}
    assert config(iterations=2000, coarse_levels=1).downscale_at(1, "cpu", 200) == 2  # asked for: given


def test_cli_flags_reach_the_config():
    args = build_parser().parse_args(["-s", "src", "-m", "model", "--coarse-levels", "2", "--coarse-fraction", "0.1"])
    chosen = config_from_args(args)
    assert (chosen.coarse_levels, chosen.coarse_fraction) == (2, 0.1)
    default = config_from_args(build_parser().parse_args(["-s", "src", "-m", "model"]))
    assert (default.coarse_levels, default.coarse_fraction) == (None, 0.75)


def test_shrunk_view_averages_blocks_and_sees_points_where_the_full_one_does():
    image = torch.rand(7, 9, 3, generator=torch.Generator().manual_seed(0))
    K = torch.tensor([[20.0, 0.0, 4.3], [0.0, 21.0, 3.6], [0.0, 0.0, 1.0]])
    view = TrainingView(name="a.jpg", image=image, viewmat=torch.eye(4), K=K)
    half = view.downscaled(2)
    assert (half.width, half.height) == (4, 3)  # the odd last column and row are dropped
    torch.testing.assert_close(half.image[1, 2], image[2:4, 4:6].mean(dim=(0, 1)))
    assert view.downscaled(1) is view
    # a point lands at half the full view's pixel coordinates: block (i, j) covers full pixels
    # 2i..2i+1, 2j..2j+1, whose centre is at 2 (j + 0.5), 2 (i + 0.5)
    point = torch.tensor([[0.3, -0.2, 2.0]])
    quats, scales = torch.tensor([[1.0, 0.0, 0.0, 0.0]]), torch.full((1, 3), 0.05)
    full = project_gaussians(point, quats, scales, view.viewmat, view.K, view.width, view.height)
    small = project_gaussians(point, quats, scales, half.viewmat, half.K, half.width, half.height)
    torch.testing.assert_close(small.means2d, full.means2d / 2)
    with pytest.raises(ValueError, match="too small"):
        view.downscaled(8)


def test_radii_seen_on_shrunk_images_are_kept_in_full_size_pixels():
    means2d = torch.zeros(2, 2, requires_grad=True)
    (means2d * torch.tensor([[1.0, 2.0], [3.0, 4.0]])).sum().backward()
    meta = RenderMeta(backend="cpu", means2d=means2d, radii=torch.tensor([[3, 5], [0, 0]], dtype=torch.int32),
                      depths=torch.ones(2))
    state = DensifyState.empty(2)
    state.observe(meta, width=40, height=30, downscale=4)
    assert state.max_radius.tolist() == [20.0, 0.0]
    assert state.grad_count.tolist() == [1.0, 0.0]
    # the gradient in NDC units: pixels times half the size rendered
    assert state.grad_sum[0].item() == pytest.approx((20.0**2 + 30.0**2) ** 0.5)
