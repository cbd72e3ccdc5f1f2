"""Held-out evaluation: render every image of ``test.txt`` from the trained model and score it
against the photo with PSNR, SSIM (11x11 Gaussian window, as the 3DGS paper) and LPIPS (AlexNet).

    python -m gaussian_splatting.evaluate -s SOURCE -m MODEL_DIR [--iteration N]
        [--backend auto|cpu|cuda] [-r K] [--lpips-weights DIR] [--split test|train]

``--split train`` scores the training views instead (``train.txt``): for a set too small to keep
a photo out of training, the only score there is, and one that flatters the model; results.json
says which split was scored (``split``).

Reads the model from the standard PLY (``point_cloud/iteration_N/point_cloud.ply``, the highest
N by default), so it scores any trainer's output. Writes, each file atomically:
``test/ours_N/renders/<image>.png`` and ``test/ours_N/gt/<image>.png`` side by side (``train/``
for the training views), and ``results.json``. LPIPS is null, with the reason, when its weights are not on this machine:
nothing is downloaded and no number is made up. ``mean_colour_psnr`` scores a flat image of the
training photos' mean colour, the floor any model must clear.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from gaussian_splatting.atomic_write import write_atomically, write_text_atomically
from gaussian_splatting.gaussians import Gaussians
from gaussian_splatting.losses import psnr, ssim
from gaussian_splatting.lpips import Lpips, load_lpips
from gaussian_splatting.ply_import import read_ply, sh_degree_of
from gaussian_splatting.rasterize import RenderSettings, rasterize, resolve_backend
from gaussian_splatting.scene import TEST_FILE, TRAIN_FILE, TrainingView, load_views, read_split

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
SPLIT_FILES = {"test": TEST_FILE, "train": TRAIN_FILE}
_ITERATION_DIR = re.compile(r"^iteration_(\d+)$")


class NothingToEvaluate(ValueError):
    """The model or the images to score are missing; the message says which."""


@dataclass(frozen=True)
class ImageScore:
    name: str
    psnr: float
    ssim: float
    lpips: float | None


@dataclass(frozen=True)
class Evaluation:
    """What results.json holds; means are over the scored images (the held-out ones, unless ``split`` is "train")."""

    iteration: int
    split: str  # "test": held-out photos; "train": the training views
    psnr: float
    ssim: float
    lpips: float | None
    lpips_unavailable: str | None  # why lpips is null
    mean_colour_psnr: float  # a flat image of the training photos' mean colour, same images
    width: int  # render size of the first scored image
    height: int
    backend: str
    gaussians: int
    seconds: float
    images: tuple[ImageScore, ...]

    def to_json(self) -> dict:
        return asdict(self) | {"images": [asdict(score) for score in self.images]}


def latest_iteration(model_dir: Path) -> int:
    """The highest N with a ``point_cloud/iteration_N/point_cloud.ply``."""
    found = [
        int(match.group(1))
        for folder in (model_dir / "point_cloud").glob("iteration_*")
        if (match := _ITERATION_DIR.match(folder.name)) and (folder / "point_cloud.ply").exists()
    ]
    if not found:
        raise NothingToEvaluate(f"no point_cloud/iteration_*/point_cloud.ply in {model_dir}")
    return max(found)


def trained_antialiased(model_dir: Path) -> bool:
    """Whether the run that wrote ``model_dir`` rendered antialiased (its config.json says)."""
    try:
        return bool(json.loads((model_dir / "config.json").read_text()).get("antialiased", False))
    except (OSError, ValueError):
        return False  # another trainer's model, or none: classic 3DGS


def mean_training_colour(source: Path, resolution_scale: int) -> Tensor:
    """[3] the mean colour over the training photos (all registered ones without a train.txt)."""
    names = read_split(source, TRAIN_FILE) or None
    total, pixels = torch.zeros(3, dtype=torch.float64), 0
    for view in load_views(source, names, resolution_scale):
        total += view.image.reshape(-1, 3).double().sum(dim=0)
        pixels += view.width * view.height
    return (total / max(pixels, 1)).float()


def evaluate(
    source: Path,
    model_dir: Path,
    iteration: int | None = None,
    backend: str = "auto",
    resolution_scale: int = 1,
    lpips_weights: Path | None = None,
    output_dir: Path | None = None,
    on_image: Callable[[int, int], None] | None = None,
    split: str = "test",
) -> Evaluation:
    """Score the model on ``test.txt`` (``split="train"``: on ``train.txt``); write the renders and
    results.json into ``output_dir`` (``model_dir`` by default). ``on_image(done, total)`` follows
    the progress."""
    started = time.monotonic()
    iteration = latest_iteration(model_dir) if iteration is None else iteration
    ply = model_dir / "point_cloud" / f"iteration_{iteration}" / "point_cloud.ply"
    if not ply.exists():
        raise NothingToEvaluate(f"no model at {ply}")
    split_file = SPLIT_FILES[split]
    scored = read_split(source, split_file)
    if not scored:
        raise NothingToEvaluate(f"{source / split_file} lists no {'held-out images' if split == 'test' else 'training views'}")
    views = load_views(source, scored, resolution_scale)
    if not views:
        raise NothingToEvaluate(f"none of the {len(scored)} images of {split_file} is in the SfM model")

    device = torch.device(resolve_backend(backend))
    state = read_ply(ply)
    gaussians = Gaussians.from_state(state, device)
    sh_degree = sh_degree_of(state)
    lpips = load_lpips(lpips_weights)
    lpips_unavailable = lpips if isinstance(lpips, str) else None
    if lpips_unavailable:
        log.warning("%s", lpips_unavailable)
    baseline_colour = mean_training_colour(source, resolution_scale)

    output_dir = model_dir if output_dir is None else output_dir
    renders_dir = output_dir / split / f"ours_{iteration}"
    scores, baseline_scores = [], []
    # a model trained antialiased is scored as it was trained (config.json, written by train)
    settings = RenderSettings(antialiased=trained_antialiased(model_dir))
    used_backend = backend
    for view in views:
        view = view.to(device)
        with torch.no_grad():
            image, _, meta = rasterize(
                **gaussians.render_inputs(), viewmat=view.viewmat, K=view.K, width=view.width,
                height=view.height, sh_degree=sh_degree, backend=backend, settings=settings,
            )  # fmt: skip
        used_backend = meta.backend
        image = image.clamp(0, 1)
        scores.append(_score(view, image, lpips))
        baseline_scores.append(psnr(baseline_colour.to(device).expand_as(view.image), view.image))
        stem = Path(view.name).stem
        _write_png(renders_dir / "renders" / f"{stem}.png", image)
        _write_png(renders_dir / "gt" / f"{stem}.png", view.image)
        log.info("%s: PSNR %.2f dB, SSIM %.4f", view.name, scores[-1].psnr, scores[-1].ssim)
        if on_image is not None:
            on_image(len(scores), len(views))

    lpips_values = [score.lpips for score in scores]
    evaluation = Evaluation(
        iteration=iteration,
        split=split,
        psnr=_mean([score.psnr for score in scores]),
        ssim=_mean([score.ssim for score in scores]),
        lpips=None if lpips_unavailable else _mean(lpips_values),
        lpips_unavailable=lpips_unavailable,
        mean_colour_psnr=_mean(baseline_scores),
        width=views[0].width,
        height=views[0].height,
        backend=used_backend,
        gaussians=len(gaussians),
        seconds=round(time.monotonic() - started, 3),
        images=tuple(scores),
    )
    write_text_atomically(output_dir / RESULTS_FILE, json.dumps(evaluation.to_json(), indent=2))
    return evaluation


def _score(view: TrainingView, image: Tensor, lpips: Lpips | str) -> ImageScore:
    return ImageScore(
        name=view.name,
        psnr=round(psnr(image, view.image), 4),
        ssim=round(ssim(image, view.image).item(), 5),
        lpips=None if isinstance(lpips, str) else round(lpips(image, view.image), 5),
    )


def _mean(values: list[float]) -> float:
    """Mean rounded for people; PSNR means are of the per-image dB values, as 3DGS reports them."""
    finite = [value for value in values if math.isfinite(value)]
    return round(sum(finite) / len(finite), 4) if finite else float("nan")


def _write_png(path: Path, image: Tensor) -> None:
    pixels = (image.detach().clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    write_atomically(path, lambda handle: handle.write(buffer.getvalue()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gaussian_splatting.evaluate", description="Score a trained model on the held-out images."
    )
    parser.add_argument("-s", "--source_path", "--source", dest="source", type=Path, required=True)
    parser.add_argument("-m", "--model_path", "--model", dest="model_dir", type=Path, required=True)
    parser.add_argument("--iteration", type=int, help="which point_cloud/iteration_N (default: the highest)")
    parser.add_argument("--backend", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--resolution-scale", "-r", "--resolution", dest="resolution_scale", type=int, default=1)
    parser.add_argument("--lpips-weights", type=Path, help="folder with alexnet-owt-7be5be79.pth and alex.pth")
    parser.add_argument("--split", choices=tuple(SPLIT_FILES), default="test",
                        help="score the held-out images (test.txt, the default) or the training views (train.txt)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result = evaluate(args.source, args.model_dir, args.iteration, args.backend, args.resolution_scale,
                          args.lpips_weights, split=args.split)
    except NothingToEvaluate as problem:
        log.error("%s", problem)
        return 2
    lpips = "n/a" if result.lpips is None else f"{result.lpips:.4f}"
    scored = "held-out images" if result.split == "test" else "training views, which flatter the model"
    print(f"PSNR {result.psnr:.2f} dB  SSIM {result.ssim:.4f}  LPIPS {lpips}  (mean colour: {result.mean_colour_psnr:.2f} dB)"
          f"  on {len(result.images)} {scored}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
