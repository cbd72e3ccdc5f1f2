"""The one rendering entry point: 3D Gaussians with SH colours -> image, on CUDA or on the CPU.

``cuda`` runs ``gsplat.rasterization`` (gsplat compiles its CUDA kernels on first use); ``cpu``
runs our projection, SH and compiled tile compositor, the same maths; ``auto`` takes CUDA when
PyTorch sees a GPU. Parameters come in activated form, as gsplat takes them: positive scales
and opacities in [0, 1] (the trainer keeps log-scales and logits, as the PLY stores them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from gaussian_splatting.projection import ProjectionSettings, camera_position, project_gaussians
from gaussian_splatting.rasterize_cpu import CompositingRules, composite
from gaussian_splatting.spherical_harmonics import sh_to_rgb

Backend = Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True)
class RenderSettings:
    """Projection and compositing knobs. On ``cuda`` gsplat applies ``projection`` and
    ``compositing.tile_size``; its kernels hard-code the other compositing rules (see
    ``CompositingRules``). ``antialiased`` is gsplat's antialiased mode (each Gaussian's opacity
    scaled by how much the 0.3-pixel blur widened it, as Mip-Splatting): ``cuda`` only, the CPU
    compositor draws classic 3DGS."""

    projection: ProjectionSettings = ProjectionSettings()
    compositing: CompositingRules = CompositingRules()
    antialiased: bool = False
    # backward() also sets RenderMeta.means2d.absgrad (densification by absolute gradients); the
    # CPU compositor always does, at the cost of two additions per pixel and Gaussian
    absgrad: bool = False


@dataclass(frozen=True)
class RenderMeta:
    """What densification and diagnostics need from a render besides the image."""

    backend: Literal["cpu", "cuda"]
    # The projected means the compositor consumed. Call ``means2d.retain_grad()`` before
    # ``backward()``; ``means2d.grad.reshape(-1, 2)`` is then each Gaussian's view-space
    # positional gradient, and with ``RenderSettings.absgrad`` ``means2d.absgrad`` the sums of
    # its per-pixel parts' absolute values. Shape [N, 2] on cpu, [1, N, 2] on cuda (gsplat
    # batches cameras).
    means2d: Tensor
    radii: Tensor  # [N, 2] int32 screen-box half-sizes in pixels; 0 = not drawn
    depths: Tensor  # [N] camera-space z


def resolve_backend(backend: Backend) -> Literal["cpu", "cuda"]:
    """The backend that runs: "auto" is "cuda" where PyTorch sees a GPU, else "cpu". Parameters
    and images belong on that device (``torch.device(resolve_backend(backend))``)."""
    if backend == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return backend


def rasterize(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    sh_coeffs: Tensor,
    viewmat: Tensor,
    K: Tensor,
    width: int,
    height: int,
    sh_degree: int,
    backend: Backend = "auto",
    background: Tensor | None = None,
    settings: RenderSettings = RenderSettings(),
) -> tuple[Tensor, Tensor, RenderMeta]:
    """Render N Gaussians seen by one pinhole camera.

    means [N, 3]; quats [N, 4] (w, x, y, z), any norm; scales [N, 3] > 0; opacities [N] in
    [0, 1]; sh_coeffs [N, K, 3] with K >= (sh_degree + 1)^2 (higher bands are ignored, so the
    degree can be raised during training without reshaping); viewmat [4, 4] world to camera
    (OpenCV axes); K [3, 3]; background [3] or None (black). All on one device, float32.
    Returns image [H, W, 3], alpha [H, W] and a ``RenderMeta``.
    """
    backend = resolve_backend(backend)
    renderers = {"cpu": _rasterize_cpu, "cuda": _rasterize_cuda}
    if backend not in renderers:
        raise ValueError(f"backend must be 'auto', 'cpu' or 'cuda', got {backend!r}")
    arguments = (means, quats, scales, opacities, sh_coeffs, viewmat, K, width, height, sh_degree)
    return renderers[backend](*arguments, background, settings)


def _rasterize_cpu(
    means, quats, scales, opacities, sh_coeffs, viewmat, K, width, height, sh_degree, background, settings
):  # fmt: skip
    if settings.antialiased:
        raise ValueError("antialiased rendering is gsplat's (backend 'cuda'); the CPU backend renders classic 3DGS")
    projected = project_gaussians(
        means,
        quats,
        scales,
        viewmat,
        K,
        width,
        height,
        settings=settings.projection,
        opacities=opacities,
        min_alpha=settings.compositing.min_alpha,
    )
    colours = sh_to_rgb(sh_degree, sh_coeffs, means - camera_position(viewmat))
    image, alpha = composite(
        projected.means2d,
        projected.conics,
        colours,
        opacities,
        projected.depths,
        projected.visible,
        width,
        height,
        background=background,
        rules=settings.compositing,
    )
    meta = RenderMeta(
        backend="cpu", means2d=projected.means2d, radii=projected.radii, depths=projected.depths
    )
    return image, alpha, meta


def _rasterize_cuda(
    means, quats, scales, opacities, sh_coeffs, viewmat, K, width, height, sh_degree, background, settings
):  # fmt: skip
    # UNTESTED on the development machines (no GPU): kept to a direct call of gsplat's public
    # API so there is little to get wrong; issue 4's cpu-vs-cuda bench is where it runs on a GPU.
    import gsplat  # lazily: importing it must never be needed on CPU-only machines

    images, alphas, info = gsplat.rasterization(
        means,
        quats,
        scales,
        opacities,
        sh_coeffs,
        viewmat[None],
        K[None],
        width,
        height,
        near_plane=settings.projection.near_plane,
        far_plane=settings.projection.far_plane,
        eps2d=settings.projection.eps2d,
        sh_degree=sh_degree,
        packed=False,  # per-Gaussian rows in info, aligned with the inputs
        tile_size=settings.compositing.tile_size,
        backgrounds=None if background is None else background[None],
        rasterize_mode="antialiased" if settings.antialiased else "classic",
        absgrad=settings.absgrad,
    )
    meta = RenderMeta(
        backend="cuda", means2d=info["means2d"], radii=info["radii"][0], depths=info["depths"][0]
    )
    return images[0], alphas[0, ..., 0], meta
