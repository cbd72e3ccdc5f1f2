"""The CLI as the daemon runs it: killed after a checkpoint, then rerun with --resume."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from gs_synthetic_scene import write_synthetic_source

from gaussian_splatting.checkpoint import checkpoint_path, load_checkpoint
from gaussian_splatting.config import TrainConfig
from gaussian_splatting.train import train

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
ITERATIONS = 600
EVERY = 50


def _command(source: Path, model: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "gaussian_splatting", "-s", str(source), "-m", str(model),
        "--iterations", str(ITERATIONS), "--eval", "--backend", "cpu", "--checkpoint-every", str(EVERY), *extra,
    ]  # fmt: skip


def _environment(**extra: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))
    return environment | extra


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("resume") / "source"
    write_synthetic_source(path)
    return path


@pytest.mark.slow
def test_resume_after_kill_continues_from_the_checkpoint(source, tmp_path):
    model = tmp_path / "model"
    checkpoints = model / "checkpoints"
    # First run: OMP_WAIT_POLICY already set, as the daemon sets it.
    first = subprocess.Popen(
        _command(source, model), env=_environment(OMP_WAIT_POLICY="PASSIVE"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(checkpoints.glob("chkpnt*.pt")) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    _, first_log = first.communicate()
    assert first.returncode == -signal.SIGKILL, first_log
    saved = sorted(int(p.stem.removeprefix("chkpnt")) for p in checkpoints.glob("chkpnt*.pt"))
    assert saved and saved[-1] < ITERATIONS, saved

    # Second run: the package sets OMP_WAIT_POLICY itself (before PyTorch loads).
    second = subprocess.run(
        _command(source, model, "--resume"), env=_environment(), capture_output=True, text=True, timeout=180
    )
    assert second.returncode == 0, second.stderr
    assert f"at iteration {saved[-1]}" in second.stderr
    lines = [json.loads(line) for line in second.stdout.splitlines()]
    assert lines and all(line["iteration"] > saved[-1] for line in lines)
    assert lines[-1]["iteration"] == ITERATIONS
    assert (model / "point_cloud" / f"iteration_{ITERATIONS}" / "point_cloud.ply").exists()
    assert (checkpoints / f"chkpnt{ITERATIONS}.pt").exists()


@pytest.mark.slow
def test_resumed_run_ends_where_the_uninterrupted_one_does(source, tmp_path):
    """Checkpoints hold everything the run depends on: resuming from iteration 110 of 400
    (densification runs at 75 to 200: split samples, statistics and Adam moments all matter)
    gives the uninterrupted run's parameters."""
    whole = TrainConfig(source=source, model_dir=tmp_path / "whole", iterations=400, eval=True,
                        backend="cpu", checkpoint_every=110, checkpoints_kept=4)  # fmt: skip
    train(whole, io.StringIO())
    shutil.copytree(whole.model_dir / "checkpoints", tmp_path / "resumed" / "checkpoints")
    for iteration in (220, 330, 400):
        checkpoint_path(tmp_path / "resumed", iteration).unlink()
    result = train(TrainConfig(**{**whole.__dict__, "model_dir": tmp_path / "resumed"}), io.StringIO(), resume=True)
    assert result.resumed_from == 110
    expected = load_checkpoint(checkpoint_path(whole.model_dir, 400)).gaussians
    actual = load_checkpoint(checkpoint_path(tmp_path / "resumed", 400)).gaussians
    assert actual["means"].shape == expected["means"].shape
    for name, tensor in expected.items():
        torch.testing.assert_close(actual[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
