"""How long does a level of detail take? Prints the seconds and the peak memory of
``gaussian_splatting.level_of_detail.coarser`` taking a synthetic model to each budget (by
default 2M Gaussians, SH degree 3, to the viewer's 1.5M and 600k), on 2 threads.

    PYTHONPATH=gaussian-splatting python bench/level_of_detail.py [--gaussians 2000000]
        [--budgets 1500000 600000] [--threads 2] [--seed 0]

The scene looks like a trained one where it matters here, in how its Gaussians crowd: 70% on
surfaces (40 spheres and planes of very different areas, so densities differ by two orders of
magnitude), 30% scattered through a box 20 units across; log-normal scales around 0.01 units
(0.6 in the log), random rotations, opacities sigmoid(N(1, 2)), SH degree 3. Peak memory is the
resident set's high-water mark during the call less the resident set before it (the model
itself, 472 MB at 2M, is in the baseline), read from /proc (Linux); each budget runs in a fresh
process, since memory freed by one call stays in the process and would hide the next call's.
The load average is printed too: on a shared machine other work skews the numbers.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "gaussian-splatting"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from gaussian_splatting.level_of_detail import coarser  # noqa: E402


def synthetic_model(count: int, seed: int) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    on_surfaces = int(count * 0.7)
    weights = rng.pareto(1.0, 40) + 0.05  # a few surfaces hold most of the splats
    surface = rng.choice(40, on_surfaces, p=weights / weights.sum())
    centres = rng.uniform(-8, 8, (40, 3))
    radii = rng.uniform(0.2, 4.0, 40)
    directions = rng.normal(size=(on_surfaces, 3)).astype(np.float32)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    spheres = surface % 2 == 0
    means = np.empty((count, 3), dtype=np.float32)
    means[:on_surfaces] = centres[surface] + radii[surface, None] * directions
    planar = rng.uniform(-1, 1, (on_surfaces, 2)).astype(np.float32) * radii[surface, None]
    means[:on_surfaces][~spheres] = (centres[surface] + np.c_[planar, np.zeros(on_surfaces)])[~spheres]
    means[on_surfaces:] = rng.uniform(-10, 10, (count - on_surfaces, 3))
    generator = torch.Generator().manual_seed(seed)
    return {
        "means": torch.from_numpy(means),
        "log_scales": math.log(0.01) + 0.6 * torch.randn(count, 3, generator=generator),
        "quats": torch.randn(count, 4, generator=generator),
        "opacity_logits": 1 + 2 * torch.randn(count, generator=generator),
        "sh_dc": torch.randn(count, 1, 3, generator=generator),
        "sh_rest": 0.1 * torch.randn(count, 15, 3, generator=generator),
    }


def resident_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gaussians", type=int, default=2_000_000)
    parser.add_argument("--budgets", type=int, nargs="+", default=[1_500_000, 600_000])
    parser.add_argument("--threads", type=int, default=2, help="PyTorch's intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)  # a child's one line
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]

    if len(args.budgets) > 1:
        print(f"{args.gaussians:,} Gaussians, SH degree 3, {args.threads} threads")
        for budget in args.budgets:
            command = [sys.executable, __file__, "--gaussians", str(args.gaussians), "--budgets", str(budget)]
            command += ["--threads", str(args.threads), "--seed", str(args.seed), "--quiet"]
            subprocess.run(command, check=True)
    else:
        model = synthetic_model(args.gaussians, args.seed)
        coarser(synthetic_model(1000, args.seed + 1), 100)  # warm-up: first calls load kernels
        if not args.quiet:
            print(f"{args.gaussians:,} Gaussians, SH degree 3, {args.threads} threads")
        baseline = resident_kib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark
        start = time.perf_counter()
        level = coarser(model, args.budgets[0])
        seconds = time.perf_counter() - start
        peak = resident_kib("VmHWM")
        print(
            f"to {args.budgets[0]:>9,}: {level['means'].shape[0]:>9,} Gaussians in {seconds:5.2f} s, "
            f"peak memory +{(peak - baseline) / 1024:,.0f} MiB over the model's",
            flush=True,
        )
    if not args.quiet:
        print(f"load average: {load_before:.2f} before, {os.getloadavg()[0]:.2f} after (cores: {os.cpu_count()})")


if __name__ == "__main__":
    main()
