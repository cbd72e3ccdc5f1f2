"""gsplat's densification strategies beside ours (``--strategy``): gsplat's DefaultStrategy
really trains on the CPU rasterizer's output, its Gaussian count stops at ``max_gaussians``, a
run resumes under it exactly, and what needs CUDA (MCMC, antialiased rendering) is refused on
the CPU with the reason. The CUDA runs of every strategy are in test_gs_cuda.py."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from gs_synthetic_scene import write_synthetic_source

from gaussian_splatting import rasterize
from gaussian_splatting.checkpoint import checkpoint_path, load_checkpoint
from gaussian_splatting.config import TrainConfig
from gaussian_splatting.densify import DensifySettings
from gaussian_splatting.evaluate import evaluate
from gaussian_splatting.gaussians import Gaussians, gaussians_from_points, read_points
from gaussian_splatting.gsplat_strategy import GsplatTraining, make_strategy
from gaussian_splatting.losses import training_loss
from gaussian_splatting.scene import load_views, scene_extent
from gaussian_splatting.train import train

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("strategies") / "source"
    write_synthetic_source(path)
    return path


def test_default_strategy_trains_on_the_cpu_and_fits_the_held_out_views(source, tmp_path):
    config = TrainConfig(source=source, model_dir=tmp_path / "model", iterations=300, eval=True, backend="cpu",
                         strategy="default", progress_every_s=0.0)  # fmt: skip
    progress = io.StringIO()
    result = train(config, progress)
    counts = [json.loads(line)["gaussians"] for line in progress.getvalue().splitlines()]
    assert counts[-1] != counts[0], "gsplat's strategy never densified"
    assert result.gaussians == counts[-1]
    evaluation = evaluate(source, config.model_dir, backend="cpu")
    assert evaluation.gaussians == result.gaussians
    assert evaluation.psnr >= evaluation.mean_colour_psnr + 5.0, evaluation
    assert json.loads((config.model_dir / "config.json").read_text())["strategy"] == "default"


def _after_one_render(source: Path, max_gaussians: int):
    """A GsplatTraining ("default") on the synthetic scene's points after one real CPU render
    and backward, with a threshold any gradient passes; also the render's meta, its size and
    the first iteration that densifies."""
    config = TrainConfig(source=source, model_dir=source.parent / "unused", iterations=300, backend="cpu",
                         strategy="default",
                         densify=DensifySettings(grad_threshold=1e-12, max_threshold_scale=1.0,
                                                 max_gaussians=max_gaussians))  # fmt: skip
    views = load_views(source, None, 1)
    gaussians = Gaussians.from_state(gaussians_from_points(*read_points(source / "points.ply"), 3, 0.1).state())
    run = GsplatTraining("default", gaussians, config, scene_extent(views))
    view = views[0]
    image, _, meta = rasterize(**gaussians.render_inputs(), viewmat=view.viewmat, K=view.K, width=view.width,
                               height=view.height, sh_degree=0, backend="cpu")  # fmt: skip
    meta.means2d.retain_grad()
    training_loss(image, view.image, 0.2).backward()
    schedule = config.densify.schedule(config.iterations)
    densify_at = next(i for i in range(1, config.iterations) if schedule.densifies_at(i))
    return run, gaussians, (meta, view.width, view.height), densify_at



def test_gsplat_default_strategy_keeps_its_signed_gradient_and_threshold(source):
    """Our densification measures absolute gradients by default; gsplat's DefaultStrategy is
    compared as gsplat ships it, with the signed gradient and the paper's threshold (scaled for
    the run's length as ours is)."""
    config = TrainConfig(source=source, model_dir=source.parent / "unused", iterations=30_000, strategy="default")
    assert config.densify.absgrad
    strategy = make_strategy("default", config)
    assert strategy.grow_grad2d == 0.0002 and not strategy.absgrad

def test_default_strategy_stops_growing_at_max_gaussians(source):
    uncapped, gaussians, render, densify_at = _after_one_render(source, max_gaussians=10**6)
    meta = render[0]
    with_gradient = int(((meta.means2d.grad.norm(dim=-1) > 0) & (meta.radii > 0).all(dim=-1)).sum())
    before = len(gaussians)
    assert with_gradient > 7
    uncapped.step(densify_at, *render)
    assert len(gaussians) == before + with_gradient  # each cloned or split in two
    assert gaussians.means is uncapped.params["means"]  # our model follows gsplat's edits

    capped, gaussians, render, densify_at = _after_one_render(source, max_gaussians=before + 7)
    capped.step(densify_at, *render)
    assert len(gaussians) == before + 7
    assert all(len(tensor) == before + 7 for tensor in capped.params.values())
    assert all(len(optimizer.state[param]["exp_avg"]) == before + 7
               for param, optimizer in zip(capped.params.values(), capped.optimizers.values()))


@pytest.mark.slow
def test_resumed_default_strategy_run_ends_where_the_uninterrupted_one_does(source, tmp_path):
    """gsplat's optimizers and statistics go into the checkpoint: resuming at 110 of 300
    (densifying at 50 to 150) gives the uninterrupted run's parameters."""
    whole = TrainConfig(source=source, model_dir=tmp_path / "whole", iterations=300, eval=True, backend="cpu",
                        checkpoint_every=110, checkpoints_kept=3, strategy="default")  # fmt: skip
    train(whole, io.StringIO())
    shutil.copytree(whole.model_dir / "checkpoints", tmp_path / "resumed" / "checkpoints")
    for iteration in (220, 300):
        checkpoint_path(tmp_path / "resumed", iteration).unlink()
    resumed = dataclasses.replace(whole, model_dir=tmp_path / "resumed")
    assert train(resumed, io.StringIO(), resume=True).resumed_from == 110
    expected = load_checkpoint(checkpoint_path(whole.model_dir, 300)).gaussians
    actual = load_checkpoint(checkpoint_path(resumed.model_dir, 300)).gaussians
    for name, tensor in expected.items():
        torch.testing.assert_close(actual[name], tensor, rtol=1e-5, atol=1e-6, msg=name)


def test_a_checkpoint_of_another_strategy_is_not_continued(source, tmp_path):
    ours = TrainConfig(source=source, model_dir=tmp_path / "model", iterations=40, eval=True, backend="cpu",
                       checkpoint_every=20)  # fmt: skip
    train(ours, io.StringIO())
    result = train(dataclasses.replace(ours, strategy="default"), io.StringIO(), resume=True)
    assert result.resumed_from == 0
    assert json.loads((ours.model_dir / "config.json").read_text())["strategy"] == "default"


def _cli(source: Path, model: Path, *extra: str) -> subprocess.CompletedProcess:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "gaussian_splatting", "-s", str(source), "-m", str(model), "--iterations", "5",
               "--backend", "cpu", *extra]  # fmt: skip
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        (("--strategy", "mcmc"), "the 'mcmc' strategy needs CUDA"),
        (("--antialiased",), "antialiased rendering is gsplat's (CUDA only)"),
    ],
)
def test_what_needs_cuda_is_refused_on_the_cpu_with_the_reason(source, tmp_path, flags, reason):
    run = _cli(source, tmp_path / "model", *flags)
    assert run.returncode == 2, run.stderr
    assert reason in run.stderr
    assert not (tmp_path / "model" / "point_cloud").exists()
