"""InstaRecon3D's Gaussian Splatting: EWA projection, spherical harmonics and rasterising.

``rasterize`` is the one entry point renderers and the trainer use; it runs on gsplat's CUDA
kernels when a GPU is there and on our own compiled tile compositor on the CPU, with the same
maths. This package never imports the daemon or the stages: the trainer runs on its own.
"""

from gaussian_splatting.projection import ProjectedGaussians, ProjectionSettings, project_gaussians
from gaussian_splatting.rasterize import RenderMeta, RenderSettings, rasterize
from gaussian_splatting.rasterize_cpu import CompositingRules, composite
from gaussian_splatting.spherical_harmonics import evaluate_sh, sh_to_rgb

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
