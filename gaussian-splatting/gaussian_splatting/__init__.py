"""InstaRecon3D's Gaussian Splatting: EWA projection, spherical harmonics, rasterising, training.

``rasterize`` is the one entry point renderers and the trainer use; it runs on gsplat's CUDA
kernels when a GPU is there and on our own compiled tile compositor on the CPU, with the same
maths. This package never imports the daemon or the stages: the trainer runs on its own.
"""

import os

# Before anything here loads PyTorch: PyTorch's and numba's OpenMP pools otherwise spin against
# each other on a busy machine, slowing an iteration several-fold (README). Every process that
# imports this package renders with both; a value the caller set is kept, and where PyTorch was
# loaded before this package the setting simply comes too late to matter.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from gaussian_splatting.projection import ProjectedGaussians, ProjectionSettings, project_gaussians  # noqa: E402
from gaussian_splatting.rasterize import RenderMeta, RenderSettings, rasterize  # noqa: E402
from gaussian_splatting.rasterize_cpu import CompositingRules, composite  # noqa: E402
from gaussian_splatting.spherical_harmonics import evaluate_sh, sh_to_rgb  # noqa: E402

__all__ = [
    "CompositingRules",
    "ProjectedGaussians",
    "ProjectionSettings",
    "RenderMeta",
    "RenderSettings",
    "composite",
    "evaluate_sh",
    "project_gaussians",
    "rasterize",
    "sh_to_rgb",
]
