"""The cuda backend (gsplat) against our CPU backend: same images, same gradients, and training
that fits. These run only where PyTorch sees a GPU and gsplat is installed (the CPU-only CI
skips them; see bench/render_backends.py and the closing notes for the runs on a GPU)."""

from __future__ import annotations

import importlib.util
import io
import json

import pytest
import torch
from gs_synthetic_scene import write_synthetic_source

from gaussian_splatting import rasterize
from gaussian_splatting.config import TrainConfig
from gaussian_splatting.densify import DensifySettings
from gaussian_splatting.evaluate import evaluate
from gaussian_splatting.train import train

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available() or importlib.util.find_spec("gsplat") is None,
    reason="needs a CUDA GPU and gsplat",
)]

WIDTH, HEIGHT, FOCAL = 96, 64, 80.0


def _scene(seed: int, n: int, device: str) -> dict[str, torch.Tensor]:
    """Opacities under 0.9, so no single Gaussian reaches the alpha caps (0.99 on our CPU
    backend as the 3DGS paper's code, 0.999 in gsplat's kernels) and both must agree exactly."""
    generator = torch.Generator().manual_seed(seed)
    depth = 3 + 2 * torch.rand(n, generator=generator)
    x = (torch.rand(n, generator=generator) - 0.5) * WIDTH / FOCAL * depth
    y = (torch.rand(n, generator=generator) - 0.5) * HEIGHT / FOCAL * depth
    sh = 0.2 * torch.randn(n, 16, 3, generator=generator)
    sh[:, 0] = (torch.rand(n, 3, generator=generator) - 0.5) / 0.28209479177387814
    values = {
        "means": torch.stack([x, y, depth], dim=-1),
        "quats": torch.randn(n, 4, generator=generator),
        "scales": 0.05 + 0.2 * torch.rand(n, 3, generator=generator),
        "opacities": 0.1 + 0.8 * torch.rand(n, generator=generator),
        "sh_coeffs": sh,
    }
    return {name: tensor.to(device).requires_grad_(True) for name, tensor in values.items()}


def _render(scene: dict[str, torch.Tensor], backend: str) -> torch.Tensor:
    device = scene["means"].device
    K = torch.tensor([[FOCAL, 0, WIDTH / 2], [0, FOCAL, HEIGHT / 2], [0, 0, 1]], device=device)
    image, _, _ = rasterize(**scene, viewmat=torch.eye(4, device=device), K=K, width=WIDTH, height=HEIGHT,
                            sh_degree=3, backend=backend)  # fmt: skip
    return image


def test_cuda_and_cpu_render_the_same_image_and_gradients():
    cpu_scene, cuda_scene = _scene(0, 300, "cpu"), _scene(0, 300, "cuda")
    cpu_image, cuda_image = _render(cpu_scene, "cpu"), _render(cuda_scene, "cuda")
    torch.testing.assert_close(cuda_image.cpu(), cpu_image, rtol=0, atol=2e-4)

    weights = torch.rand(HEIGHT, WIDTH, 3, generator=torch.Generator().manual_seed(1))
    (cpu_image * weights).sum().backward()
    (cuda_image * weights.cuda()).sum().backward()
    for name in cpu_scene:
        expected, actual = cpu_scene[name].grad, cuda_scene[name].grad.cpu()
        relative = (actual - expected).norm() / expected.norm().clamp_min(1e-12)
        assert relative < 1e-3, (name, relative.item())


def test_training_on_cuda_fits_the_held_out_views(tmp_path):
    source = tmp_path / "source"
    write_synthetic_source(source)
    config = TrainConfig(source=source, model_dir=tmp_path / "model", iterations=300, eval=True, backend="cuda")
    train(config, io.StringIO())
    evaluation = evaluate(source, config.model_dir, backend="cuda")
    assert evaluation.backend == "cuda"
    assert evaluation.psnr >= evaluation.mean_colour_psnr + 5.0, evaluation


@pytest.mark.parametrize(("strategy", "antialiased"), [("ours", False), ("default", False), ("mcmc", False),
                                                         ("mcmc", True)])
def test_every_strategy_trains_on_cuda_and_fits_the_held_out_views(tmp_path, strategy, antialiased):
    """gsplat's strategies through our trainer (gaussian_splatting/gsplat_strategy.py): each
    fits the tiny scene, MCMC stays under its cap (our max_gaussians), the progress lines carry
    the peak GPU memory, and an antialiased model is scored antialiased."""
    source = tmp_path / "source"
    write_synthetic_source(source)
    cap = 400
    config = TrainConfig(source=source, model_dir=tmp_path / "model", iterations=600, eval=True, backend="cuda",
                         strategy=strategy, antialiased=antialiased, progress_every_s=0.0,
                         densify=DensifySettings(max_gaussians=cap))  # fmt: skip
    progress = io.StringIO()
    result = train(config, progress)
    lines = [json.loads(line) for line in progress.getvalue().splitlines()]
    assert all(line["gpu_memory_peak_bytes"] > 0 for line in lines)
    assert result.gaussians <= cap
    if strategy == "mcmc":
        assert result.gaussians > lines[0]["gaussians"]  # it added Gaussians up to the cap
    evaluation = evaluate(source, config.model_dir, backend="cuda")
    assert evaluation.psnr >= evaluation.mean_colour_psnr + 5.0, evaluation
