"""The training loop: one image per iteration, L1 + D-SSIM, Adam, adaptive density control,
progress lines, checkpoints, and the PLY at the end.

Progress goes to ``progress`` (stdout from the CLI) as one JSON object per line:
{"iteration", "iterations", "loss", "gaussians", "iterations_per_second"}, and on CUDA
"gpu_memory_peak_bytes" (``torch.cuda.max_memory_allocated`` so far); logs go to logging.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch

from gaussian_splatting.checkpoint import (
    Checkpoint,
    latest_checkpoint,
    load_checkpoint,
    remove_older_checkpoints,
    save_checkpoint,
)
from gaussian_splatting.config import TrainConfig
from gaussian_splatting.densify import DensifyState, densify_and_prune, reset_opacity
from gaussian_splatting.gaussians import Gaussians, gaussians_from_points, read_points
from gaussian_splatting.gsplat_strategy import GsplatTraining, check_strategy, initial_state
from gaussian_splatting.losses import training_loss
from gaussian_splatting.optimizer import make_optimizer, position_lr, set_position_lr
from gaussian_splatting.outputs import write_cameras_json, write_run_config
from gaussian_splatting.ply_export import write_ply
from gaussian_splatting.rasterize import RenderSettings, rasterize, resolve_backend
from gaussian_splatting.scene import TRAIN_FILE, TrainingView, load_views, read_split, scene_extent

log = logging.getLogger(__name__)

POINTS_FILE = "points.ply"


@dataclass(frozen=True)
class TrainResult:
    """What a finished run produced."""

    iterations: int
    gaussians: int
    ply_path: Path
    resumed_from: int  # iteration of the checkpoint the run continued from; 0 for a fresh run


def ply_path(model_dir: Path, iteration: int) -> Path:
    """Where the reference puts the model after ``iteration`` iterations."""
    return model_dir / "point_cloud" / f"iteration_{iteration}" / "point_cloud.ply"


def view_order(seed: int, iteration: int, count: int) -> int:
    """Index of the view for ``iteration`` (1-based): a fresh random permutation of the views
    each epoch, derived from the seed alone so a resumed run sees the same sequence."""
    epoch, step = divmod(iteration - 1, count)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return int(torch.randperm(count, generator=generator)[step])


class ProgressLines:
    """Writes a JSON progress line at most every ``interval_s`` seconds, and on the last
    iteration; the loss is the mean since the previous line."""

    def __init__(self, stream: TextIO, iterations: int, interval_s: float, start_iteration: int,
                 device: torch.device = torch.device("cpu")):
        self.stream, self.iterations, self.interval_s, self.device = stream, iterations, interval_s, device
        self.last_time, self.last_iteration = time.monotonic(), start_iteration
        self.loss_sum, self.loss_count = 0.0, 0

    def update(self, iteration: int, loss: float, gaussians: int) -> None:
        self.loss_sum += loss
        self.loss_count += 1
        now = time.monotonic()
        if now - self.last_time < self.interval_s and iteration < self.iterations:
            return
        rate = (iteration - self.last_iteration) / max(now - self.last_time, 1e-9)
        line = {
            "iteration": iteration,
            "iterations": self.iterations,
            "loss": self.loss_sum / self.loss_count,
            "gaussians": gaussians,
            "iterations_per_second": rate,
        }
        if self.device.type == "cuda":
            line["gpu_memory_peak_bytes"] = torch.cuda.max_memory_allocated(self.device)
        self.stream.write(json.dumps(line) + "\n")
        self.stream.flush()
        self.last_time, self.last_iteration = now, iteration
        self.loss_sum, self.loss_count = 0.0, 0


def train(config: TrainConfig, progress: TextIO, resume: bool = False) -> TrainResult:
    """Train on ``config.source`` into ``config.model_dir``; with ``resume``, continue from the
    latest checkpoint there (a fresh start when there is none)."""
    config.model_dir.mkdir(parents=True, exist_ok=True)
    names = read_split(config.source, TRAIN_FILE) if config.eval else None
    views = load_views(config.source, names, config.resolution_scale)
    if not views:
        raise ValueError(f"no training images in {config.source}")
    device = torch.device(resolve_backend(config.backend))
    check_strategy(config.strategy, device.type, config.antialiased)
    views = [view.to(device) for view in views]
    extent = scene_extent(views)
    log.info(
        "%d training views at %dx%d on %s, scene extent %.3f",
        len(views), views[0].width, views[0].height, device, extent,
    )  # fmt: skip
    write_cameras_json(config.model_dir, views)
    write_run_config(config.model_dir, config)

    torch.manual_seed(config.seed)
    found = latest_checkpoint(config.model_dir) if resume else None
    saved = load_checkpoint(found) if found is not None else None
    if saved is not None and saved.config.get("strategy", "ours") != config.strategy:
        # its optimiser state and statistics are another strategy's: they cannot be continued
        log.warning("%s was trained with the %r strategy, not %r: starting afresh",
                    found, saved.config.get("strategy", "ours"), config.strategy)
        saved = None
    if saved is not None:
        gaussians = Gaussians.from_state(saved.gaussians, device)
        start = saved.iteration
    else:
        if resume and found is None:
            log.info("no checkpoint in %s; starting afresh", config.model_dir)
        points = gaussians_from_points(*read_points(config.source / POINTS_FILE), config.sh_degree, config.initial_opacity)
        gaussians = Gaussians.from_state(initial_state(config.strategy, points.state()), device)
        start = 0
        log.info("initialised %d Gaussians from %s", len(gaussians), POINTS_FILE)

    if config.strategy == "ours":
        gsplat_run = None
        optimizer = make_optimizer(gaussians, config, extent)
        state = DensifyState.empty(len(gaussians), device)
        if saved is not None:
            optimizer.load_state_dict(saved.optimizer)
            state = DensifyState(**{name: t.to(device) for name, t in saved.densify.items()})
        schedule = config.densify.schedule(config.iterations)
        log.info("densification %s", schedule)
    else:
        gsplat_run = GsplatTraining(config.strategy, gaussians, config, extent)
        if saved is not None:
            gsplat_run.load_optimizer_state(saved.optimizer)
            gsplat_run.load_strategy_state(saved.densify, device)
        log.info("densification: gsplat's %s", gsplat_run.strategy)
    if saved is not None:
        torch.set_rng_state(saved.rng)
        log.info("resumed from %s at iteration %d with %d Gaussians", found, start, len(gaussians))

    absgrad = config.strategy == "ours" and config.densify.absgrad
    render_settings = RenderSettings(antialiased=config.antialiased, absgrad=absgrad)
    reporter = ProgressLines(progress, config.iterations, config.progress_every_s, start, device)
    backend = resolve_backend(config.backend)
    long_side = max(max(view.width, view.height) for view in views)
    log.info("coarse to fine: %d level(s) of %.0f%% of the run each",
             config.coarse_levels_on(backend, long_side), 100 * config.coarse_fraction)
    shrunk: dict[tuple[int, int], TrainingView] = {}  # (view index, factor) -> the view made smaller
    for iteration in range(start + 1, config.iterations + 1):
        rate = position_lr(config, extent, iteration)
        if gsplat_run is None:
            set_position_lr(optimizer, rate)
        else:
            gsplat_run.set_position_lr(rate)
        sh_degree = min(config.sh_degree, iteration // config.sh_increase_every)
        index, downscale = view_order(config.seed, iteration, len(views)), config.downscale_at(iteration, backend, long_side)
        if (index, downscale) not in shrunk:
            shrunk[index, downscale] = views[index].downscaled(downscale)
        view = shrunk[index, downscale]
        image, _, meta = rasterize(
            **gaussians.render_inputs(),
            viewmat=view.viewmat,
            K=view.K,
            width=view.width,
            height=view.height,
            sh_degree=sh_degree,
            backend=config.backend,
            settings=render_settings,
        )
        meta.means2d.retain_grad()
        loss = training_loss(image, view.image, config.lambda_dssim)
        if gsplat_run is not None:
            loss = loss + gsplat_run.regulariser()
        loss.backward()
        with torch.no_grad():
            if gsplat_run is not None:
                gsplat_run.step(iteration, meta, view.width, view.height)
            else:
                if iteration <= schedule.stop:
                    state.observe(meta, view.width, view.height, downscale, absgrad=absgrad)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if schedule.densifies_at(iteration):
                    state = densify_and_prune(
                        gaussians, optimizer, state, config.densify, extent,
                        prune_large=iteration > schedule.reset_every, grad_threshold=schedule.grad_threshold,
                    )  # fmt: skip
                if schedule.resets_at(iteration):
                    reset_opacity(gaussians, optimizer, config.densify)
        reporter.update(iteration, loss.item(), len(gaussians))
        if iteration % config.checkpoint_every == 0 or iteration == config.iterations:
            saved_to = save_checkpoint(
                config.model_dir,
                Checkpoint(
                    iteration=iteration,
                    gaussians=gaussians.state(),
                    optimizer=optimizer.state_dict() if gsplat_run is None else gsplat_run.optimizer_state(),
                    densify=state.as_dict() if gsplat_run is None else gsplat_run.strategy_state(),
                    rng=torch.get_rng_state(),
                    config=config.to_json(),
                ),
            )
            remove_older_checkpoints(config.model_dir, keep=config.checkpoints_kept)
            log.info("checkpoint %s", saved_to)

    output = ply_path(config.model_dir, config.iterations)
    write_ply(output, gaussians.state())
    log.info("wrote %s with %d Gaussians", output, len(gaussians))
    return TrainResult(config.iterations, len(gaussians), output, resumed_from=start)
