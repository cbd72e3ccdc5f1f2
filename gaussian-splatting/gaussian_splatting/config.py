"""Training settings: one frozen dataclass, with the 3DGS paper's values as defaults.

The CLI fills it from flags compatible with the 3DGS reference trainer; the checkpoint and
``config.json`` store it so a run can be read back and resumed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from gaussian_splatting.densify import DensifySettings

# The default coarse start never trains on images smaller than this on the long side (pixels)
MIN_COARSE_LONG_SIDE = 256


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run depends on besides its input files."""

    source: Path  # SfM output: images/, sparse/0/, points.ply, train.txt, test.txt
    model_dir: Path  # where point_cloud/, checkpoints/, cameras.json, cfg_args go
    iterations: int = 30_000  # optimiser steps, one training image each
    eval: bool = False  # train on train.txt only (test.txt held out); else on every image
    backend: Literal["auto", "cpu", "cuda"] = "auto"  # rasterize() backend
    sh_degree: int = 3  # highest SH degree, reached one step per sh_increase_every iterations
    sh_increase_every: int = 1000  # iterations between SH degree steps (3DGS: 1000)
    resolution_scale: int = 1  # images are read at 1/K of their size on each side
    # Coarse to fine: the first iterations see the images halved this many times (1/2, 1/4, ...),
    # one level per coarse_fraction of the run, finest last. None: 1 on the CPU, 0 on CUDA.
    coarse_levels: int | None = None
    coarse_fraction: float = 0.75  # share of the iterations each coarse level lasts
    lambda_dssim: float = 0.2  # loss = (1 - lambda) L1 + lambda (1 - SSIM)
    position_lr_init: float = 1.6e-4  # times the scene extent; decays exponentially ...
    position_lr_final: float = 1.6e-6  # ... to this (times the extent) at the last iteration
    sh_dc_lr: float = 0.0025  # SH band 0 (base colour)
    sh_rest_lr: float = 0.0025 / 20  # higher SH bands
    opacity_lr: float = 0.025  # opacity logits
    scaling_lr: float = 0.005  # log-scales
    rotation_lr: float = 0.001  # quaternions
    initial_opacity: float = 0.1  # opacity of every Gaussian made from an SfM point
    densify: DensifySettings = field(default_factory=DensifySettings)
    # who densifies: "ours" (densify.py), or gsplat's "default" or "mcmc" (gsplat_strategy.py)
    strategy: str = "ours"
    antialiased: bool = False  # gsplat's antialiased rasterisation (cuda only); evaluation follows config.json
    checkpoint_every: int = 1000  # iterations between checkpoints (and one at the end)
    checkpoints_kept: int = 1  # newest checkpoints kept; older ones are removed
    progress_every_s: float = 1.0  # seconds between JSON progress lines on stdout
    seed: int = 0  # seeds the camera order and the split samples

    def coarse_levels_on(self, backend: str, long_side: int) -> int:
        """``coarse_levels``, or its default for ``backend`` ("cpu" or "cuda") and training images
        of ``long_side`` pixels when None.

        On the CPU an iteration costs about the image's pixel count, so a coarse start is nearly
        free time; measured there (kermit, 2000 iterations at 659x487: 20.15 dB in 248 s of CPU
        time against 19.09 dB in 439 s). But not below MIN_COARSE_LONG_SIDE: the daemon's demo
        set, trained at 200x150, scored 0.03 lower SSIM (0.858 against 0.888) with its first three
        quarters at 100x75. Not measured on a GPU: off there."""
        if self.coarse_levels is not None:
            return self.coarse_levels
        return 1 if backend == "cpu" and long_side // 2 >= MIN_COARSE_LONG_SIDE else 0

    def downscale_at(self, iteration: int, backend: str, long_side: int) -> int:
        """The factor (1, 2, 4, ...) by which iteration ``iteration`` (1-based) sees the images
        (``long_side`` pixels at full size) shrunk on each side, on top of ``resolution_scale``."""
        levels = self.coarse_levels_on(backend, long_side)
        per_level = round(self.coarse_fraction * self.iterations)
        if levels <= 0 or per_level <= 0:
            return 1
        return 2 ** max(0, levels - (iteration - 1) // per_level)

    def to_json(self) -> dict:
        """Plain JSON-serialisable dict (paths as strings)."""
        values = asdict(self)
        values["source"], values["model_dir"] = str(self.source), str(self.model_dir)
        return values


PRESETS: dict[str, dict] = {
    # The 3DGS paper's schedule.
    "paper": {},
    # A quick look on a CPU: quarter-size images, a few thousand iterations, fewer Gaussians (the
    # daemon's train_cpu_iterations and train_cpu_max_gaussians).
    "cpu-preview": {
        "iterations": 3000,
        "resolution_scale": 4,
        "densify": DensifySettings(max_gaussians=500_000),
    },
}
