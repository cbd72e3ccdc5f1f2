"""Do the cpu and cuda backends of ``gaussian_splatting.rasterize`` render the same, and how fast?

    .venv/bin/python bench/render_backends.py                     (a synthetic scene, seeded)
    .venv/bin/python bench/render_backends.py --ply MODEL/point_cloud/iteration_N/point_cloud.ply
        --source SFM_DIR [-r K] [--views N]
    options: [--views N] [--repeats 3] [--seed 0] [--gaussians 4000] [--width 640 --height 480]
        [--match-alpha] [--cpu-only]

The same Gaussians and cameras go to ``rasterize(..., backend="cpu")`` (our projection, SH and
compiled tile compositor) and ``rasterize(..., backend="cuda")`` (gsplat's CUDA kernels). Per
view it prints: the time of one forward pass and of one forward+backward pass on each backend
(median of ``--repeats``, after one untimed warm-up render per backend: numba and gsplat compile
or load their kernels on first use; CUDA timings synchronise the device), the PSNR between the
two renders (peak 1) and their largest absolute pixel difference, the largest alpha difference,
how many Gaussians each backend drew, and the relative difference of each parameter's gradient
(|g_cpu - g_cuda| / |g_cpu|, Frobenius norms; the loss is sum(image * R) with a fixed random R,
a dense upstream gradient as an L1 loss gives). Then the means over the views, and a verdict:
the renders agree when the mean PSNR between them is at least 40 dB.

The model: ``--ply`` reads a standard 3DGS PLY (x y z, f_dc_*, f_rest_*, opacity as a logit,
log scales, rot_0..3 as w x y z, normalised here; with ``gaussian_splatting.ply_import``) and
renders it from ``--views`` registered
cameras of ``--source`` (an sfm stage folder), evenly spaced in name order, at 1/``-r`` size.
Without ``--ply``: ``--gaussians`` random Gaussians (SH degree 3, opacities sigmoid(N(0, 2)))
in a ball of radius 1 seen by ``--views`` cameras 4 units away on an arc around it.

Expected differences: the cpu compositor caps a Gaussian's alpha at 0.99, as the 3DGS paper's
code does, while gsplat's CUDA kernels cap it at 0.999, so small differences remain at pixels
where a single Gaussian is nearly opaque (``--match-alpha`` renders the cpu side with 0.999,
which should remove them). Floating-point summation order differs too (gsplat composites in
float32 on the GPU), which costs nothing visible.

Exit status 0 after the comparison (it measures, it does not judge), 2 with a message when
CUDA is not available to PyTorch or gsplat is not installed. ``--cpu-only`` skips the cuda side
(renders and times the cpu backend alone), to check the script on machines without a GPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "gaussian-splatting"))

import torch  # noqa: E402

from gaussian_splatting.rasterize import RenderSettings, rasterize  # noqa: E402
from gaussian_splatting.rasterize_cpu import CompositingRules  # noqa: E402

PARAMETERS = ("means", "quats", "scales", "opacities", "sh_coeffs")
AGREE_PSNR_DB = 40.0
EXIT_NO_CUDA = 2


@dataclass(frozen=True)
class View:
    name: str
    viewmat: torch.Tensor  # [4, 4] world to camera, OpenCV axes
    K: torch.Tensor  # [3, 3]
    width: int
    height: int


@dataclass(frozen=True)
class Scene:
    gaussians: dict[str, torch.Tensor]  # activated, as rasterize() takes them, on the CPU
    sh_degree: int
    views: list[View]
    description: str


# --- scenes ------------------------------------------------------------------------------------

def look_at(eye: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[4, 4] world-to-camera matrix (OpenCV axes) of a camera at ``eye`` looking at ``target``,
    world +y pointing down in the image."""
    forward = torch.nn.functional.normalize(target - eye, dim=0)
    right = torch.nn.functional.normalize(torch.linalg.cross(torch.tensor([0.0, 1.0, 0.0]), forward), dim=0)
    down = torch.linalg.cross(forward, right)
    rotation = torch.stack([right, down, forward])
    viewmat = torch.eye(4)
    viewmat[:3, :3] = rotation
    viewmat[:3, 3] = -rotation @ eye
    return viewmat


def synthetic_scene(count: int, views: int, width: int, height: int, seed: int) -> Scene:
    generator = torch.Generator().manual_seed(seed)
    direction = torch.nn.functional.normalize(torch.randn(count, 3, generator=generator), dim=1)
    radius = torch.rand(count, 1, generator=generator) ** (1 / 3)  # uniform in the unit ball
    gaussians = {
        "means": direction * radius,
        "quats": torch.nn.functional.normalize(torch.randn(count, 4, generator=generator), dim=1),
        "scales": torch.exp(math.log(0.03) + 0.5 * torch.randn(count, 3, generator=generator)),
        "opacities": torch.sigmoid(2 * torch.randn(count, generator=generator)),
        "sh_coeffs": 0.3 * torch.randn(count, 16, 3, generator=generator),
    }
    focal = 0.5 * width / math.tan(math.radians(60) / 2)  # 60 degree horizontal field of view
    K = torch.tensor([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], dtype=torch.float32)
    cameras = []
    for index in range(views):
        yaw = math.radians(-20 + 40 * index / max(1, views - 1))
        eye = torch.tensor([4 * math.sin(yaw), -0.5, -4 * math.cos(yaw)])
        cameras.append(View(f"synthetic{index}", look_at(eye, torch.zeros(3)), K, width, height))
    description = f"synthetic: {count} Gaussians, SH degree 3, {width}x{height}, seed {seed}"
    return Scene(gaussians, 3, cameras, description)


def read_3dgs_ply(path: Path) -> tuple[dict[str, torch.Tensor], int]:
    """Activated Gaussians (as the trainer's ``Gaussians.render_inputs``, quaternions normalised)
    and the SH degree, from a standard 3DGS PLY read by the project's reader."""
    from gaussian_splatting.ply_import import read_ply, sh_degree_of

    state = read_ply(path)  # raw values: log scales, opacity logits, f_rest de-interleaved
    gaussians = {
        "means": state["means"],
        "quats": torch.nn.functional.normalize(state["quats"], dim=1),
        "scales": torch.exp(state["log_scales"]),
        "opacities": torch.sigmoid(state["opacity_logits"]),
        "sh_coeffs": torch.cat([state["sh_dc"], state["sh_rest"]], dim=1).contiguous(),
    }
    return gaussians, sh_degree_of(state)


def model_scene(ply: Path, source: Path, views: int, resolution_scale: int) -> Scene:
    from gaussian_splatting.scene import load_views  # imports pycolmap: only on this path

    gaussians, sh_degree = read_3dgs_ply(ply)
    registered = load_views(source, None, resolution_scale)
    if not registered:
        raise SystemExit(f"no registered images in {source}")
    picks = sorted({round(i * (len(registered) - 1) / max(1, views - 1)) for i in range(min(views, len(registered)))})
    cameras = [View(registered[i].name, registered[i].viewmat, registered[i].K, registered[i].width,
                    registered[i].height) for i in picks]
    description = (f"{ply}: {len(gaussians['means'])} Gaussians, SH degree {sh_degree}; cameras of {source} "
                   f"at 1/{resolution_scale} size ({cameras[0].width}x{cameras[0].height})")
    return Scene(gaussians, sh_degree, cameras, description)


# --- rendering and timing ----------------------------------------------------------------------

def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Run:
    """One backend's results on one view."""

    image: torch.Tensor  # [H, W, 3] on the CPU
    alpha: torch.Tensor  # [H, W] on the CPU
    drawn: int
    gradients: dict[str, torch.Tensor]  # on the CPU
    forward_s: float
    forward_backward_s: float


def run_backend(backend: str, scene: Scene, view: View, upstream: torch.Tensor, repeats: int,
                settings: RenderSettings) -> Run:
    device = torch.device(backend)
    leaves = {name: scene.gaussians[name].to(device).clone().requires_grad_(True) for name in PARAMETERS}
    viewmat, K, weights = view.viewmat.to(device), view.K.to(device), upstream.to(device)

    def render():
        return rasterize(**leaves, viewmat=viewmat, K=K, width=view.width, height=view.height,
                         sh_degree=scene.sh_degree, backend=backend, settings=settings)

    def timed(step) -> tuple[float, object]:
        times, out = [], None
        for _ in range(repeats):
            for leaf in leaves.values():
                leaf.grad = None
            synchronise(device)
            started = time.perf_counter()
            out = step()
            synchronise(device)
            times.append(time.perf_counter() - started)
        return statistics.median(times), out

    def forward_backward():
        image, alpha, meta = render()
        (image * weights).sum().backward()
        return image, alpha, meta

    forward_s, _ = timed(render)  # with autograd recording, as in training
    forward_backward_s, (image, alpha, meta) = timed(forward_backward)
    radii = meta.radii.reshape(meta.radii.shape[0], -1)
    return Run(
        image=image.detach().cpu(), alpha=alpha.detach().cpu(), drawn=int((radii > 0).all(dim=1).sum()),
        gradients={name: leaf.grad.detach().cpu() for name, leaf in leaves.items() if leaf.grad is not None},
        forward_s=forward_s, forward_backward_s=forward_backward_s,
    )


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else -10 * math.log10(mse)


def relative_difference(reference: torch.Tensor | None, other: torch.Tensor | None) -> float:
    if reference is None or other is None:
        return math.nan
    scale = float(reference.norm())
    return float((reference - other).norm()) / scale if scale > 0 else float(other.norm())


def milliseconds(seconds: float) -> str:
    return f"{1000 * seconds:8.1f}"


def check_cuda() -> str | None:
    """Why the cuda backend cannot run here, or None."""
    if not torch.cuda.is_available():
        return f"CUDA is not available to PyTorch {torch.__version__} (torch.cuda.is_available() is false)"
    if importlib.util.find_spec("gsplat") is None:
        return "gsplat is not installed: the cuda backend of rasterize() runs gsplat's kernels"
    try:
        import gsplat  # noqa: F401
    except Exception as error:  # noqa: BLE001  (a broken install says so in any way)
        return f"gsplat does not import: {type(error).__name__}: {error}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ply", type=Path, help="a 3DGS PLY (needs --source for the cameras)")
    parser.add_argument("--source", type=Path, help="the sfm stage's folder the model was trained on")
    parser.add_argument("-r", "--resolution-scale", dest="resolution_scale", type=int, default=1)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per backend and view (median)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gaussians", type=int, default=4000, help="synthetic scene only")
    parser.add_argument("--width", type=int, default=640, help="synthetic scene only")
    parser.add_argument("--height", type=int, default=480, help="synthetic scene only")
    parser.add_argument("--match-alpha", action="store_true",
                        help="cap alpha at 0.999 on the cpu as gsplat's kernels do (default: 0.99, the paper's)")
    parser.add_argument("--cpu-only", action="store_true", help="skip the cuda side (a check without a GPU)")
    args = parser.parse_args(argv)
    if (args.ply is None) != (args.source is None):
        parser.error("--ply and --source go together")
    if args.views < 1 or args.repeats < 1 or args.resolution_scale < 1:
        parser.error("--views, --repeats and -r must be at least 1")

    backends = ["cpu"]
    if not args.cpu_only:
        reason = check_cuda()
        if reason is not None:
            print(f"render_backends: cannot compare with the cuda backend: {reason}. "
                  "Run it on a machine with a GPU and gsplat, or pass --cpu-only.", file=sys.stderr)
            return EXIT_NO_CUDA
        backends.append("cuda")

    if args.ply is not None:
        scene = model_scene(args.ply, args.source, args.views, args.resolution_scale)
    else:
        scene = synthetic_scene(args.gaussians, args.views, args.width, args.height, args.seed)
    cpu_settings = RenderSettings(compositing=CompositingRules(max_alpha=0.999 if args.match_alpha else 0.99))
    settings = {"cpu": cpu_settings, "cuda": RenderSettings()}  # gsplat hard-codes its alpha cap
    print(scene.description)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, load average {os.getloadavg()[0]:.2f}"
          + (f", {torch.cuda.get_device_name()}" if "cuda" in backends else "")
          + f"; cpu alpha cap {cpu_settings.compositing.max_alpha}; median of {args.repeats} passes")

    first = scene.views[0]
    for backend in backends:  # warm-up: kernel compilation and loading are not what we time
        started = time.perf_counter()
        run_backend(backend, scene, first, torch.zeros(first.height, first.width, 3), 1, settings[backend])
        print(f"warm-up {backend}: {time.perf_counter() - started:.2f} s")

    header = f"{'view':<16}{'size':>10}{'cpu fwd ms':>12}{'cpu f+b ms':>12}{'drawn':>8}"
    if "cuda" in backends:
        header += (f"{'cuda fwd ms':>12}{'cuda f+b ms':>12}{'drawn':>8}{'PSNR dB':>9}{'max|d|':>9}"
                   f"{'alpha max|d|':>13}  gradient |d|/|g| (means quats scales opac sh)")
    print(header)
    rows = []
    generator = torch.Generator().manual_seed(args.seed + 1)
    for view in scene.views:
        upstream = torch.rand(view.height, view.width, 3, generator=generator)
        runs = {backend: run_backend(backend, scene, view, upstream, args.repeats, settings[backend])
                for backend in backends}
        cpu = runs["cpu"]
        row = {"cpu_forward": cpu.forward_s, "cpu_forward_backward": cpu.forward_backward_s}
        line = (f"{view.name[:15]:<16}{f'{view.width}x{view.height}':>10}{milliseconds(cpu.forward_s):>12}"
                f"{milliseconds(cpu.forward_backward_s):>12}{cpu.drawn:>8}")
        if "cuda" in runs:
            cuda = runs["cuda"]
            gradient_differences = [relative_difference(cpu.gradients.get(name), cuda.gradients.get(name))
                                    for name in PARAMETERS]
            row.update(
                cuda_forward=cuda.forward_s, cuda_forward_backward=cuda.forward_backward_s,
                psnr=psnr(cpu.image, cuda.image), max_difference=float((cpu.image - cuda.image).abs().max()),
                alpha_difference=float((cpu.alpha - cuda.alpha).abs().max()),
                **{f"gradient_{name}": value for name, value in zip(PARAMETERS, gradient_differences)},
            )
            line += (f"{milliseconds(cuda.forward_s):>12}{milliseconds(cuda.forward_backward_s):>12}{cuda.drawn:>8}"
                     f"{row['psnr']:>9.2f}{row['max_difference']:>9.4f}{row['alpha_difference']:>13.4f}  "
                     + " ".join(f"{value:.1e}" for value in gradient_differences))
        print(line, flush=True)
        rows.append(row)

    def mean(key: str) -> float:
        return statistics.fmean(row[key] for row in rows)

    summary = (f"mean over {len(rows)} views: cpu forward {1000 * mean('cpu_forward'):.1f} ms, "
               f"forward+backward {1000 * mean('cpu_forward_backward'):.1f} ms")
    if "cuda" in backends:
        summary += (f"; cuda forward {1000 * mean('cuda_forward'):.1f} ms, forward+backward "
                    f"{1000 * mean('cuda_forward_backward'):.1f} ms (cpu/cuda: forward "
                    f"{mean('cpu_forward') / mean('cuda_forward'):.0f}x, forward+backward "
                    f"{mean('cpu_forward_backward') / mean('cuda_forward_backward'):.0f}x); PSNR cpu vs cuda "
                    f"{mean('psnr'):.2f} dB, max |difference| {max(row['max_difference'] for row in rows):.4f}; "
                    f"gradient |d|/|g| " + ", ".join(f"{name} {mean(f'gradient_{name}'):.1e}" for name in PARAMETERS)
                    + f"; cuda peak memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    print(summary)
    if "cuda" in backends:
        agree = mean("psnr") >= AGREE_PSNR_DB
        print(f"renders {'AGREE' if agree else 'DIFFER'}: mean PSNR between backends "
              f"{mean('psnr'):.2f} dB ({'>=' if agree else '<'} {AGREE_PSNR_DB:.0f} dB)")
    else:
        print("cuda side skipped (--cpu-only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
