"""A short training run on a tiny scene with exact cameras: it must really fit the target.

One run (300 iterations at 64x48, held-out views in test.txt) is shared by the tests here.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from gs_synthetic_scene import write_synthetic_source
from PIL import Image
from plyfile import PlyData

from gaussian_splatting import rasterize
from gaussian_splatting.checkpoint import latest_checkpoint, load_checkpoint
from gaussian_splatting.config import TrainConfig
from gaussian_splatting.evaluate import NothingToEvaluate, evaluate
from gaussian_splatting.gaussians import Gaussians
from gaussian_splatting.losses import psnr
from gaussian_splatting.scene import load_views, read_split
from gaussian_splatting.train import train

ITERATIONS = 300
PROGRESS_FIELDS = {"iteration", "iterations", "loss", "gaussians", "iterations_per_second"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    source, model = root / "source", root / "model"
    write_synthetic_source(source)
    config = TrainConfig(
        source=source,
        model_dir=model,
        iterations=ITERATIONS,
        eval=True,
        backend="cpu",
        checkpoint_every=100,
        progress_every_s=0.0,  # a line per iteration, so the loss curve is visible
    )
    progress = io.StringIO()
    result = train(config, progress)
    return config, result, [json.loads(line) for line in progress.getvalue().splitlines()]


def test_progress_lines_are_json_with_the_fields(run):
    _, _, lines = run
    assert [line["iteration"] for line in lines] == list(range(1, ITERATIONS + 1))
    for line in lines:
        assert set(line) == PROGRESS_FIELDS
        assert line["iterations"] == ITERATIONS and line["gaussians"] > 0 and line["iterations_per_second"] > 0


def test_loss_goes_down(run):
    _, _, lines = run
    first = sum(line["loss"] for line in lines[:20]) / 20
    last = sum(line["loss"] for line in lines[-20:]) / 20
    assert last < 0.5 * first


def test_held_out_psnr_beats_mean_colour_by_5_db(run):
    config, _, _ = run
    gaussians = Gaussians.from_state(load_checkpoint(latest_checkpoint(config.model_dir)).gaussians)
    train_views = load_views(config.source, read_split(config.source, "train.txt"))
    test_views = load_views(config.source, read_split(config.source, "test.txt"))
    assert len(test_views) == 4 and not {v.name for v in test_views} & {v.name for v in train_views}
    mean_colour = torch.stack([view.image for view in train_views]).mean(dim=(0, 1, 2))
    ours, baseline = [], []
    with torch.no_grad():
        for view in test_views:
            image, _, _ = rasterize(
                **gaussians.render_inputs(), viewmat=view.viewmat, K=view.K,
                width=view.width, height=view.height, sh_degree=0, backend="cpu",
            )  # fmt: skip
            ours.append(psnr(image, view.image))
            baseline.append(psnr(mean_colour.expand_as(view.image), view.image))
    assert sum(ours) / len(ours) >= sum(baseline) / len(baseline) + 5.0, (ours, baseline)


def test_outputs_are_where_the_reference_puts_them(run):
    config, result, _ = run
    model: Path = config.model_dir
    assert result.ply_path == model / "point_cloud" / f"iteration_{ITERATIONS}" / "point_cloud.ply"
    ply = PlyData.read(str(result.ply_path))
    assert ply["vertex"].count == result.gaussians
    cameras = json.loads((model / "cameras.json").read_text())
    assert len(cameras) == 12 and {"img_name", "position", "rotation", "fx", "fy", "cx", "cy"} <= set(cameras[0])
    assert "sh_degree=3" in (model / "cfg_args").read_text()
    assert json.loads((model / "config.json").read_text())["iterations"] == ITERATIONS
    # checkpoints every 100 iterations; only the newest is kept
    assert sorted(p.name for p in (model / "checkpoints").iterdir()) == ["chkpnt300.pt"]


def test_evaluation_scores_the_held_out_images_and_keeps_the_renders(run, tmp_path, monkeypatch):
    """results.json: the held-out scores the daemon publishes, with renders beside ground truth;
    LPIPS is null with the reason when its weights are not on the machine (never downloaded)."""
    config, result, _ = run
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    evaluation = evaluate(config.source, config.model_dir, backend="cpu")

    saved = json.loads((config.model_dir / "results.json").read_text())
    assert saved["iteration"] == ITERATIONS and saved["gaussians"] == result.gaussians
    held_out = read_split(config.source, "test.txt")
    assert [image["name"] for image in saved["images"]] == held_out
    assert saved["lpips"] is None and all(image["lpips"] is None for image in saved["images"])
    assert "alexnet-owt-7be5be79.pth" in saved["lpips_unavailable"]
    assert saved["psnr"] >= saved["mean_colour_psnr"] + 5.0, saved
    assert 0.0 < saved["ssim"] <= 1.0

    # The PSNR is the mean of per-image scores of what was saved, recomputed here from the PNGs.
    folder = config.model_dir / "test" / f"ours_{ITERATIONS}"
    recomputed = []
    for name in held_out:
        stem = Path(name).stem
        render = torch.from_numpy(np.asarray(Image.open(folder / "renders" / f"{stem}.png"), dtype=np.float32) / 255)
        truth = torch.from_numpy(np.asarray(Image.open(folder / "gt" / f"{stem}.png"), dtype=np.float32) / 255)
        assert render.shape == truth.shape == (48, 64, 3)
        recomputed.append(psnr(render, truth))
    assert abs(sum(recomputed) / len(recomputed) - evaluation.psnr) < 0.1  # PNG rounding only


def test_evaluation_without_held_out_images_says_so(run, tmp_path):
    config, _, _ = run
    source = tmp_path / "source"
    shutil.copytree(config.source, source)
    (source / "test.txt").write_text("")
    with pytest.raises(NothingToEvaluate, match="lists no held-out images"):
        evaluate(source, config.model_dir, backend="cpu")
