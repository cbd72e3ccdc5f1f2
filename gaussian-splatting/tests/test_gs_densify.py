"""Adaptive density control, initialisation and the learning-rate schedule, on small tensors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gaussian_splatting.config import TrainConfig
from gaussian_splatting.densify import DensifySchedule, DensifySettings, DensifyState, densify_and_prune, reset_opacity
from gaussian_splatting.gaussians import gaussians_from_points, mean_neighbour_distance_sq
from gaussian_splatting.losses import ssim
from gaussian_splatting.optimizer import make_optimizer, position_lr
from gaussian_splatting.rasterize import RenderMeta

EXTENT = 2.0


def test_schedule_is_the_reference_at_30k_and_shrinks_for_short_runs():
    settings = DensifySettings(absgrad=False)
    assert settings.schedule(30_000) == DensifySchedule(0.0002, start=500, stop=15_000, every=100, reset_every=3_000)
    assert settings.schedule(60_000) == settings.schedule(30_000)
    # a tenth of the reference run: the threshold rises by sqrt(10)
    assert settings.schedule(3_000) == DensifySchedule(
        pytest.approx(0.0002 * 10**0.5), start=50, stop=1_500, every=25, reset_every=300
    )
    short = settings.schedule(300)
    assert short == DensifySchedule(0.0008, start=50, stop=150, every=25, reset_every=250)  # at most 4x
    assert [i for i in range(1, 301) if short.densifies_at(i)] == [75, 100, 125, 150]



def test_absgrad_schedules_its_own_threshold_and_observes_the_absolute_sums():
    settings = DensifySettings()  # absgrad is the default
    assert settings.absgrad and settings.schedule(30_000).grad_threshold == 0.0008
    assert settings.schedule(3_000).grad_threshold == pytest.approx(0.0008 * 10**0.5)

    # one Gaussian pulled both ways: its gradient cancels to 0.5 px, its absolute sum is 3 px
    means2d = torch.zeros(1, 2)
    means2d.grad, means2d.absgrad = torch.tensor([[0.5, 0.0]]), torch.tensor([[3.0, 0.0]])
    meta = RenderMeta(backend="cpu", means2d=means2d, radii=torch.ones(1, 2, dtype=torch.int32), depths=torch.ones(1))
    signed, absolute = DensifyState.empty(1), DensifyState.empty(1)
    signed.observe(meta, width=100, height=50)
    absolute.observe(meta, width=100, height=50, absgrad=True)
    assert signed.grad_sum.tolist() == [25.0] and absolute.grad_sum.tolist() == [150.0]  # NDC: x (width / 2)

def test_clone_split_prune_keep_adam_state_aligned():
    xyz = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 1, 1]]).numpy()
    gaussians = gaussians_from_points(xyz, xyz * 0 + 0.5, sh_degree=1, initial_opacity=0.1)
    with torch.no_grad():
        gaussians.log_scales[:] = torch.log(torch.tensor(0.01))  # small: cloned
        gaussians.log_scales[2:4] = torch.log(torch.tensor(0.5))  # large: split
        gaussians.opacity_logits[5] = torch.logit(torch.tensor(0.001))  # faint: pruned
    optimizer = make_optimizer(gaussians, TrainConfig(source=Path("."), model_dir=Path(".")), EXTENT)
    sum(p.sum() for p in gaussians.parameters().values()).backward()
    optimizer.step()
    parents = gaussians.log_scales.detach()[2:4].clone()
    state = DensifyState.empty(6)
    state.grad_sum[:] = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    state.grad_count[:] = 1.0

    fresh = densify_and_prune(gaussians, optimizer, state, DensifySettings(), EXTENT, prune_large=False,
                              grad_threshold=0.0002)

    # 6 + 2 clones + 2 x 2 split children - 2 split parents - 1 faint = 9
    assert len(gaussians) == 9 and fresh.grad_sum.shape == (9,)
    split_children = gaussians.log_scales.detach()[-4:]
    torch.testing.assert_close(split_children, parents.repeat_interleave(2, dim=0) - torch.log(torch.tensor(1.6)))
    for group in optimizer.param_groups:
        parameter = group["params"][0]
        assert parameter is getattr(gaussians, group["name"])
        moments = optimizer.state[parameter]
        assert moments["exp_avg"].shape == parameter.shape == moments["exp_avg_sq"].shape
    new_rows_moments = optimizer.state[gaussians.means]["exp_avg"][-6:]
    assert torch.all(new_rows_moments == 0)
    sum(p.sum() for p in gaussians.parameters().values()).backward()
    optimizer.step()  # the optimiser still works on the new tensors


def test_opacity_reset_caps_opacities_and_clears_their_moments():
    xyz = torch.rand(5, 3).numpy()
    gaussians = gaussians_from_points(xyz, xyz, sh_degree=0, initial_opacity=0.5)
    optimizer = make_optimizer(gaussians, TrainConfig(source=Path("."), model_dir=Path(".")), EXTENT)
    gaussians.opacity_logits.sum().backward()
    optimizer.step()
    reset_opacity(gaussians, optimizer, DensifySettings())
    torch.testing.assert_close(torch.sigmoid(gaussians.opacity_logits.detach()), torch.full((5,), 0.01))
    assert torch.all(optimizer.state[gaussians.opacity_logits]["exp_avg"] == 0)


def test_neighbour_distances_match_brute_force():
    points = torch.rand(400, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    distances = torch.cdist(points, points) + torch.diag(torch.full((400,), float("inf")))
    expected = (distances.topk(3, largest=False).values ** 2).mean(dim=1)
    torch.testing.assert_close(mean_neighbour_distance_sq(points), expected)


def test_initial_gaussians_follow_the_points():
    xyz = torch.tensor([[0.0, 0, 0], [2, 0, 0], [0, 2, 0], [0, 0, 2]]).numpy()
    rgb = torch.tensor([[1.0, 0, 0.5]] * 4).numpy()
    gaussians = gaussians_from_points(xyz, rgb, sh_degree=3, initial_opacity=0.1)
    inputs = gaussians.render_inputs()
    assert inputs["sh_coeffs"].shape == (4, 16, 3)
    torch.testing.assert_close(0.28209479177387814 * gaussians.sh_dc[:, 0] + 0.5, torch.tensor(rgb, dtype=torch.float32))
    torch.testing.assert_close(inputs["opacities"], torch.full((4,), 0.1))
    # The origin's 3 neighbours are 2 away; (2, 0, 0)'s are 2, sqrt 8 and sqrt 8 away.
    torch.testing.assert_close(inputs["scales"][:2, 0].detach(), torch.tensor([2.0, (20 / 3) ** 0.5]))


def test_position_lr_decays_from_init_to_final_times_extent():
    config = TrainConfig(source=Path("."), model_dir=Path("."), iterations=1000)
    assert position_lr(config, EXTENT, 0) == pytest.approx(1.6e-4 * EXTENT)
    assert position_lr(config, EXTENT, 1000) == pytest.approx(1.6e-6 * EXTENT)
    assert position_lr(config, EXTENT, 500) == pytest.approx(1.6e-5 * EXTENT)


def test_ssim_is_one_for_equal_images_and_lower_otherwise():
    image = torch.rand(20, 24, 3, generator=torch.Generator().manual_seed(2))
    assert ssim(image, image).item() == pytest.approx(1.0, abs=1e-6)
    assert ssim(image, image.flip(0)).item() < 0.5
