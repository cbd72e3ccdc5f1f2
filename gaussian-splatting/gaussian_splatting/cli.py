"""Command line compatible with the 3DGS reference trainer's flags:

    python -m gaussian_splatting -s SOURCE -m MODEL_DIR --iterations N --eval [--resume]
        [--backend auto|cpu|cuda] [--sh-degree 3] [--resolution-scale K] [--coarse-levels L]
        [--coarse-fraction F] [--preset NAME] [--strategy ours|default|mcmc] [--antialiased] ...

Progress lines go to stdout (one JSON object each), logs to stderr. Exit status 0 on success,
2 when the strategy or rendering mode cannot run on the backend (mcmc or --antialiased on the
CPU), 4 when the GPU ran out of memory (the caller may retry at a lower resolution: ``-r``), 1 on
other errors.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

import torch

from gaussian_splatting.config import PRESETS, TrainConfig
from gaussian_splatting.gsplat_strategy import STRATEGIES, StrategyUnavailable
from gaussian_splatting.train import train

log = logging.getLogger(__name__)

EXIT_UNAVAILABLE = 2
EXIT_OUT_OF_MEMORY = 4


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gaussian_splatting",
        description="Train a 3D Gaussian Splatting model (flags as the 3DGS reference trainer's).",
    )
    parser.add_argument("-s", "--source_path", "--source", dest="source", type=Path, required=True)
    parser.add_argument("-m", "--model_path", "--model", dest="model_dir", type=Path, required=True)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="paper", help="defaults to start from")
    parser.add_argument("--iterations", type=int)
    parser.add_argument("--eval", action="store_true", help="train on train.txt only, hold out test.txt")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    parser.add_argument("--backend", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--sh-degree", "--sh_degree", dest="sh_degree", type=int)
    parser.add_argument("--resolution-scale", "-r", "--resolution", dest="resolution_scale", type=int)
    parser.add_argument("--coarse-levels", dest="coarse_levels", type=int,
                        help="halve the images this many times for the first iterations (default: 1 on the CPU, 0 on CUDA)")
    parser.add_argument("--coarse-fraction", dest="coarse_fraction", type=float,
                        help="share of the iterations each coarse level lasts (default 0.75)")
    parser.add_argument("--checkpoint-every", dest="checkpoint_every", type=int)
    parser.add_argument("--max-gaussians", dest="max_gaussians", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--strategy", choices=STRATEGIES,
                        help="densification: ours (default), or gsplat's default or mcmc (cuda only)")
    parser.add_argument("--antialiased", action="store_true", default=None,
                        help="gsplat's antialiased rasterisation (cuda only)")
    parser.add_argument("--quiet", action="store_true", help="log warnings only")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The preset's values, overridden by the flags given."""
    values = dict(PRESETS[args.preset])
    names = ("iterations", "backend", "sh_degree", "resolution_scale", "coarse_levels", "coarse_fraction",
             "checkpoint_every", "seed", "strategy", "antialiased")
    for name in names:
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    config = TrainConfig(source=args.source, model_dir=args.model_dir, eval=args.eval, **values)
    if args.max_gaussians is not None:
        config = dataclasses.replace(
            config, densify=dataclasses.replace(config.densify, max_gaussians=args.max_gaussians)
        )
    return config


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    config = config_from_args(args)
    try:
        result = train(config, progress=sys.stdout, resume=args.resume)
    except StrategyUnavailable as error:
        log.error("%s", error)
        return EXIT_UNAVAILABLE
    except torch.cuda.OutOfMemoryError as error:
        log.error("out of GPU memory at 1/%d resolution: %s", config.resolution_scale, str(error).splitlines()[0])
        return EXIT_OUT_OF_MEMORY
    log.info("done: %d iterations, %d Gaussians, %s", result.iterations, result.gaussians, result.ply_path)
    return 0
