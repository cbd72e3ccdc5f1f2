"""How big and how fast is scene.sog? Writes a synthetic scene (or a trained PLY) as SOG with
``gaussian_splatting.sog_export`` and prints bytes per splat, seconds (the SH palette's share
from the module's log), and the round trip's errors, decoded by the module's ``read_sog``.

    PYTHONPATH=gaussian-splatting python bench/sog_export.py [--splats 1000000] [--sh trained|noise]
        [--seed 0] [--ply path/to/point_cloud.ply]

The synthetic scene looks like a trained one rather than like noise: 60 % of the splats on a
20 x 20 ground plane, 30 % on 40 spheres, 10 % scattered through a box three times the plane's
size (background, floaters); flat anisotropic scales around e^-4.3; opacity mostly high; colour a
smooth field over space plus noise. The higher SH coefficients (degree 3), with ``--sh trained``,
are a view-dependent tint of one of 64 materials (spatially coherent, scaled by the splat's
colour) plus noise, RMS 0.12 / 0.06 / 0.035 in bands 1 / 2 / 3 as in trained models, which is
what a palette can learn; ``--sh noise`` makes them independent noise of the same RMS, the worst
case for a palette. With ``--ply`` the scene is that model (and --splats, --sh are ignored).

Errors: positions relative to |x| + 1, rotations in degrees, opacity as sigmoid, log scales
and SH dc in their own units (beside the bound, their range / 256), higher SH as RMS against the
coefficients' RMS. numpy's BLAS and scikit-learn use all cores (OPENBLAS_NUM_THREADS and
OMP_NUM_THREADS limit them). The load average is printed too: on a shared machine other work
skews the times.

On 2 shared cores (load 1-2.5): 1M splats, trained-like SH, 14.2 bytes a splat in 7-18 s (the
palette 4-14 s of it); the same with noise SH 14.4 bytes a splat; the trained demo (48k splats,
/work/main/state/jobs/demo-1) 15.3 bytes a splat in 1.3 s.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "gaussian-splatting"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from gaussian_splatting.ply_import import read_ply  # noqa: E402
from gaussian_splatting.sog_export import morton_order, read_sog, write_sog  # noqa: E402
from gaussian_splatting.spherical_harmonics import SH_C0  # noqa: E402

BAND_RMS = np.repeat([0.12, 0.06, 0.035], [3, 5, 7])  # per higher coefficient, degree 3


def synthetic_scene(count: int, sh: str, seed: int) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    ground, spheres = int(0.6 * count), int(0.3 * count)
    scattered = count - ground - spheres
    plane = np.column_stack([rng.uniform(-10, 10, (ground, 2)), rng.normal(0, 0.02, ground)])
    centres = rng.uniform(-8, 8, (40, 3)) * [1, 1, 0.3] + [0, 0, 2]
    radii = rng.uniform(0.3, 2.0, 40)
    which = rng.integers(0, 40, spheres)
    directions = rng.normal(size=(spheres, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    on_spheres = centres[which] + radii[which, None] * directions
    box = rng.uniform(-30, 30, (scattered, 3))
    means = np.concatenate([plane, on_spheres, box])

    log_scales = rng.normal(-4.3, 0.6, (count, 1)) + rng.normal(0, 0.3, (count, 3))
    log_scales[:, 2] -= 1.5  # flat, as splats on surfaces are
    quats = rng.normal(size=(count, 4))
    opacity_logits = np.where(rng.random(count) < 0.7, rng.normal(4.0, 2.0, count), rng.normal(-1.5, 2.0, count))
    phase = rng.uniform(0, 2 * np.pi, 3)
    colours = 0.5 + 0.35 * np.sin(0.7 * means[:, [0]] + 0.5 * means[:, [1]] + phase) * np.cos(0.3 * means[:, [2]])
    colours += rng.normal(0, 0.08, (count, 3))
    sh_dc = (colours - 0.5) / SH_C0

    if sh == "noise":
        sh_rest = rng.normal(size=(count, 15, 3)) * BAND_RMS[None, :, None]
    else:
        materials = rng.normal(size=(64, 15, 3)) * BAND_RMS[None, :, None] * 1.3
        cells = np.floor(means[:, :2] / 2.5).astype(np.int64)
        material = (cells[:, 0] * 7919 + cells[:, 1] * 104729 + rng.integers(0, 4, count)) % 64
        tint = materials[material] * (0.5 + np.clip(colours, 0, 1))[:, None, :]
        sh_rest = tint + 0.5 * rng.normal(size=(count, 15, 3)) * BAND_RMS[None, :, None]
    arrays = {"means": means, "log_scales": log_scales, "quats": quats, "opacity_logits": opacity_logits,
              "sh_dc": sh_dc[:, None, :], "sh_rest": sh_rest}
    return {name: torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)) for name, values in arrays.items()}


def errors(state: dict[str, torch.Tensor], decoded: dict[str, np.ndarray]) -> list[str]:
    """The round trip's errors; the .sog holds the splats in Morton order."""
    ours = {name: tensor.double().numpy() for name, tensor in state.items()}
    order = morton_order(ours["means"])
    ours = {name: values[order] for name, values in ours.items()}
    lines = []
    position = np.abs(decoded["means"] - ours["means"]) / (np.abs(ours["means"]) + 1)
    lines.append(f"positions: max {position.max():.2e} x (|x| + 1)")
    unit = ours["quats"] / np.linalg.norm(ours["quats"], axis=1, keepdims=True)
    dots = np.clip(np.abs((unit * decoded["quats"]).sum(axis=1)), 0, 1)
    lines.append(f"rotations: max {np.degrees(2 * np.arccos(dots)).max():.3f} degrees")
    sigmoid = 1 / (1 + np.exp(-ours["opacity_logits"]))
    opacity = np.abs(1 / (1 + np.exp(-decoded["opacity_logits"].astype(np.float64))) - sigmoid)
    lines.append(f"opacity: max {opacity.max() * 255:.3f} / 255")
    for name in ("log_scales", "sh_dc"):
        error = decoded[name] - ours[name]
        span = ours[name].max() - ours[name].min()
        lines.append(f"{name}: max {np.abs(error).max():.4f} (range {span:.2f}, bound {span / 256:.4f}), "
                     f"RMS {np.sqrt((error ** 2).mean()):.4f}")
    if ours["sh_rest"].shape[1]:
        error = decoded["sh_rest"] - ours["sh_rest"]
        rms = np.sqrt((ours["sh_rest"] ** 2).mean())
        lines.append(f"sh_rest: RMS error {np.sqrt((error ** 2).mean()):.4f} of RMS {rms:.4f}, "
                     f"worst splat RMS {np.sqrt((error ** 2).mean(axis=(1, 2))).max():.4f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--splats", type=int, default=1_000_000)
    parser.add_argument("--sh", choices=("trained", "noise"), default="trained")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ply", type=Path, help="a trained model instead of the synthetic scene")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="  %(name)s: %(message)s", stream=sys.stdout)
    load_before = os.getloadavg()[0]

    if args.ply:
        state = read_ply(args.ply)
        source = f"{args.ply} ({len(state['means']):,} splats, SH degree by {state['sh_rest'].shape[1]} rest)"
    else:
        state = synthetic_scene(args.splats, args.sh, args.seed)
        source = f"synthetic, {args.splats:,} splats, higher SH: {args.sh}"
    count = len(state["means"])
    print(f"scene: {source}")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "scene.sog"
        started = time.perf_counter()
        write_sog(path, state)
        seconds = time.perf_counter() - started
        size = path.stat().st_size
        decoded = read_sog(path)
    print(f"scene.sog: {size / 1e6:.2f} MB, {size / count:.2f} bytes/splat "
          f"(PLY {248 * count / 1e6:.1f} MB, .splat {32 * count / 1e6:.1f} MB)")
    print(f"write: {seconds:.1f} s ({seconds * 1e6 / count:.1f} s per 1M splats)")
    for line in errors(state, decoded):
        print(f"  {line}")
    print(f"load average (1 min) before: {load_before:.2f}, after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
