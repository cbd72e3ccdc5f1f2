"""``rasterize`` end to end on the CPU: wiring, backend choice, and a tiny fit that must converge."""

from __future__ import annotations

import pytest
import torch

from gaussian_splatting import project_gaussians, rasterize, sh_to_rgb
from gaussian_splatting.projection import camera_position
from splat_reference import brute_force_composite

WIDTH, HEIGHT = 48, 32  # 3 x 2 tiles
FOCAL = 40.0
K = torch.tensor([[FOCAL, 0.0, WIDTH / 2], [0.0, FOCAL, HEIGHT / 2], [0.0, 0.0, 1.0]])
VIEWMAT = torch.eye(4)
SH_DEGREE = 1


def random_scene(seed: int, n: int) -> dict[str, torch.Tensor]:
    """Trainable parameters as the trainer keeps them (log-scales, opacity logits), 3 to 5 units
    in front of the camera and spread over its field of view; SH degree 1 with a random DC
    colour and a little view dependence."""
    generator = torch.Generator().manual_seed(seed)
    depth = 3 + 2 * torch.rand(n, generator=generator)
    x = (torch.rand(n, generator=generator) - 0.5) * WIDTH / FOCAL * depth
    y = (torch.rand(n, generator=generator) - 0.5) * HEIGHT / FOCAL * depth
    sh_coeffs = 0.1 * torch.randn(n, (SH_DEGREE + 1) ** 2, 3, generator=generator)
    sh_coeffs[:, 0] = (torch.rand(n, 3, generator=generator) - 0.5) / 0.28209479177387814
    return {
        "means": torch.stack([x, y, depth], dim=-1),
        "quats": torch.randn(n, 4, generator=generator),
        "log_scales": torch.log(0.1 + 0.25 * torch.rand(n, 3, generator=generator)),
        "opacity_logits": torch.randn(n, generator=generator) + 1.0,
        "sh_coeffs": sh_coeffs,
    }


def render(scene: dict[str, torch.Tensor], background: torch.Tensor | None = None, backend: str = "cpu"):
    scales, opacities = torch.exp(scene["log_scales"]), torch.sigmoid(scene["opacity_logits"])
    return rasterize(
        scene["means"], scene["quats"], scales, opacities, scene["sh_coeffs"], VIEWMAT, K, WIDTH, HEIGHT,
        SH_DEGREE, backend=backend, background=background,
    )  # fmt: skip


def test_cpu_render_is_projection_sh_and_compositing():
    """The pieces, wired by hand and composited by the brute-force reference, give the same image."""
    scene = random_scene(0, 40)
    background = torch.tensor([0.2, 0.5, 0.9])
    image, alpha, meta = render(scene, background)

    opacities = torch.sigmoid(scene["opacity_logits"])
    projected = project_gaussians(
        scene["means"],
        scene["quats"],
        torch.exp(scene["log_scales"]),
        VIEWMAT,
        K,
        WIDTH,
        HEIGHT,
        opacities=opacities,
    )
    colours = sh_to_rgb(SH_DEGREE, scene["sh_coeffs"], scene["means"] - camera_position(VIEWMAT))
    expected_image, expected_alpha, _ = brute_force_composite(
        projected.means2d, projected.conics, colours, opacities, projected.depths, projected.visible,
        WIDTH, HEIGHT, background,
    )  # fmt: skip

    assert meta.backend == "cpu"
    assert image.shape == (HEIGHT, WIDTH, 3) and alpha.shape == (HEIGHT, WIDTH)
    torch.testing.assert_close(image, expected_image, rtol=0, atol=1e-5)
    torch.testing.assert_close(alpha, expected_alpha, rtol=0, atol=1e-5)
    assert torch.equal(meta.radii, projected.radii) and 0.3 < float(alpha.mean()) < 1


def test_view_space_positional_gradient_reaches_meta_means2d():
    scene = {k: v.requires_grad_(True) for k, v in random_scene(1, 30).items()}
    scene["means"].data[:3, 2] = -1.0  # behind the camera: never drawn
    image, _, meta = render(scene)
    meta.means2d.retain_grad()
    image.sum().backward()
    gradient = meta.means2d.grad.reshape(-1, 2)
    drawn = (meta.radii > 0).all(dim=-1)
    assert not drawn[:3].any()
    assert torch.equal(gradient[:3], torch.zeros(3, 2))
    assert (gradient[drawn].norm(dim=-1) > 0).float().mean() > 0.8
    for name, parameter in scene.items():
        assert torch.isfinite(parameter.grad).all(), name


@pytest.mark.skipif(torch.cuda.is_available(), reason="picks cuda where PyTorch sees a GPU")
def test_auto_picks_cpu_without_a_gpu():
    _, _, meta = render(random_scene(2, 5), backend="auto")
    assert meta.backend == "cpu"


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="backend must be"):
        render(random_scene(3, 5), backend="metal")


@pytest.fixture
def one_torch_thread():
    """On tensors this small PyTorch's threads only wait for each other, and on a busy machine
    their OpenMP spinning can slow each step tenfold; the compiled kernels keep their threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_fitting_a_random_scene_lowers_the_loss(one_torch_thread):
    """Gradients flow through compositing, SH and projection the right way: Adam fits 60 random
    Gaussians to the render of 30 other ones."""
    with torch.no_grad():
        target, _, _ = render(random_scene(10, 30))
    scene = {k: v.requires_grad_(True) for k, v in random_scene(11, 60).items()}
    learning_rates = {
        "means": 0.01,
        "quats": 0.01,
        "log_scales": 0.02,
        "opacity_logits": 0.05,
        "sh_coeffs": 0.02,
    }
    optimizer = torch.optim.Adam([{"params": [scene[k]], "lr": lr} for k, lr in learning_rates.items()])
    losses = []
    for _ in range(200):
        image, _, _ = render(scene)
        loss = (image - target).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 0.1
    assert losses[-1] < 0.1 * losses[0], losses[::20]
