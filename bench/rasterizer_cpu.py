"""How fast is the CPU rasteriser? Prints forward and backward milliseconds per iteration of
``gaussian_splatting.rasterize(backend="cpu")`` (projection, SH and compositing) on a random
scene, after warm-up, and the process's peak RSS.

    PYTHONPATH=gaussian-splatting python bench/rasterizer_cpu.py [--gaussians 20000]
        [--width 640] [--height 480] [--iterations 10] [--scale 0.015] [--seed 0] [--torch-threads N]

The scene: Gaussians spread through the camera's frustum 2 to 8 units away (and a little past
the image's edges), anisotropic scales around 0.015 units (a few pixels at that distance, the
way trained scenes look), opacities from sigmoid(N(0, 2)), SH degree 3. The loss is a weighted
sum of the image, so the backward pass gets a dense upstream gradient as an L1 loss gives it.
The compiled kernels use numba's threads (NUMBA_NUM_THREADS, all cores by default). The load
average is printed too: on a shared machine other work skews the numbers.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "gaussian-splatting"))

import numba  # noqa: E402
import torch  # noqa: E402

from gaussian_splatting import CompositingRules, project_gaussians, rasterize  # noqa: E402
from gaussian_splatting.rasterize_cpu import _plan_tiles  # noqa: E402  (for the scene's tile statistics)


def random_scene(n: int, width: int, height: int, scale: float, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    focal = 0.5 * width / math.tan(math.radians(60) / 2)  # 60 degree horizontal field of view
    K = torch.tensor([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], dtype=torch.float32)
    depth = 2 + 6 * torch.rand(n, generator=generator)
    u = width * (1.2 * torch.rand(n, generator=generator) - 0.1)
    v = height * (1.2 * torch.rand(n, generator=generator) - 0.1)
    means = torch.stack([(u - K[0, 2]) / focal * depth, (v - K[1, 2]) / focal * depth, depth], dim=-1)
    return {
        "means": means,
        "quats": torch.randn(n, 4, generator=generator),
        "scales": torch.exp(math.log(scale) + 0.6 * torch.randn(n, 3, generator=generator)),
        "opacities": torch.sigmoid(2 * torch.randn(n, generator=generator)),
        "sh_coeffs": 0.3 * torch.randn(n, 16, 3, generator=generator),
        "viewmat": torch.eye(4),
        "K": K,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gaussians", type=int, default=20000)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--scale", type=float, default=0.015, help="median Gaussian scale, scene units")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch-threads", type=int, help="PyTorch's intra-op threads (default: its own)")
    args = parser.parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    load_before = os.getloadavg()[0]

    scene = random_scene(args.gaussians, args.width, args.height, args.scale, args.seed)
    parameters = {
        k: scene[k].requires_grad_(True) for k in ("means", "quats", "scales", "opacities", "sh_coeffs")
    }
    upstream = torch.rand(args.height, args.width, 3, generator=torch.Generator().manual_seed(args.seed + 1))

    def render():
        return rasterize(
            **parameters, viewmat=scene["viewmat"], K=scene["K"], width=args.width, height=args.height,
            sh_degree=3, backend="cpu",
        )  # fmt: skip

    started = time.perf_counter()
    image, alpha, meta = render()
    (image * upstream).sum().backward()
    first_call = time.perf_counter() - started  # includes loading or compiling the kernels
    render()  # second warm-up

    forward_ms, backward_ms = [], []
    for _ in range(args.iterations):
        for p in parameters.values():
            p.grad = None
        started = time.perf_counter()
        image, alpha, meta = render()
        middle = time.perf_counter()
        (image * upstream).sum().backward()
        finished = time.perf_counter()
        forward_ms.append(1000 * (middle - started))
        backward_ms.append(1000 * (finished - middle))

    with torch.no_grad():
        projected = project_gaussians(
            scene["means"], scene["quats"], scene["scales"], scene["viewmat"], scene["K"],
            args.width, args.height, opacities=scene["opacities"],
        )  # fmt: skip
        plan = _plan_tiles(
            *(t.numpy() for t in (projected.means2d, projected.conics, scene["opacities"], projected.depths,
                                  projected.visible)),
            args.width, args.height, CompositingRules(),
        )  # fmt: skip
    n_tiles = plan.tile_offsets.shape[0] - 1
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    pairs = plan.tile_gaussians.shape[0]
    print(
        f"scene: {args.gaussians} Gaussians, {int(projected.visible.sum())} drawn, "
        f"{args.width}x{args.height}, {n_tiles} tiles, {pairs} Gaussian-tile pairs "
        f"({pairs / n_tiles:.0f} per tile), mean alpha {float(alpha.detach().mean()):.3f}"
    )
    print(
        f"threads: numba {numba.get_num_threads()} ({numba.threading_layer()}), "
        f"torch {torch.get_num_threads()}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}"
    )
    print(f"first call (kernel load or compile + 1 iteration): {first_call:.2f} s")
    print(
        f"forward:  {statistics.median(forward_ms):7.1f} ms/iteration (median of {args.iterations}, "
        f"min {min(forward_ms):.1f})"
    )
    print(
        f"backward: {statistics.median(backward_ms):7.1f} ms/iteration (median of {args.iterations}, "
        f"min {min(backward_ms):.1f})"
    )
    print(f"total:    {statistics.median(forward_ms) + statistics.median(backward_ms):7.1f} ms/iteration")
    print(f"peak RSS: {peak_rss_mib:.0f} MiB")
    print(f"load average (1 min) before: {load_before:.2f}, after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
