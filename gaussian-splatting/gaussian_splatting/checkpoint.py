"""Checkpoints: everything needed to continue a run exactly where it stopped.

``checkpoints/chkpnt<iteration>.pt`` holds the parameters, Adam's state, the densification
statistics, the iteration and PyTorch's RNG state. Written to a
temporary file and renamed into place, so a kill mid-write never leaves a broken checkpoint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from gaussian_splatting.atomic_write import write_atomically

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^chkpnt(\d+)\.pt$")


@dataclass(frozen=True)
class Checkpoint:
    """One saved training state."""

    iteration: int  # iterations completed
    gaussians: dict[str, Tensor]  # raw parameters by name
    optimizer: dict  # torch.optim.Adam.state_dict()
    densify: dict[str, Tensor]  # DensifyState.as_dict()
    rng: Tensor  # torch.get_rng_state()
    config: dict  # TrainConfig.to_json() of the run that wrote it


def checkpoint_path(model_dir: Path, iteration: int) -> Path:
    return model_dir / CHECKPOINT_DIR / f"chkpnt{iteration}.pt"


def save_checkpoint(model_dir: Path, checkpoint: Checkpoint) -> Path:
    """Write atomically (temporary file, fsync, rename); returns the path."""
    path = checkpoint_path(model_dir, checkpoint.iteration)
    write_atomically(path, lambda handle: torch.save(checkpoint.__dict__, handle))
    return path


def _saved(model_dir: Path) -> list[tuple[int, Path]]:
    """(iteration, path) of every checkpoint in ``model_dir``, oldest first."""
    found = []
    for path in (model_dir / CHECKPOINT_DIR).glob("chkpnt*.pt"):
        match = _NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(model_dir: Path) -> Path | None:
    """The checkpoint with the highest iteration in ``model_dir``, or None."""
    found = _saved(model_dir)
    return found[-1][1] if found else None


def remove_older_checkpoints(model_dir: Path, keep: int) -> None:
    """Keep the ``keep`` newest checkpoints: each holds the whole model and Adam's moments
    (about 0.75 KB per Gaussian), and only the newest is needed to resume."""
    for _, path in _saved(model_dir)[:-keep]:
        path.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> Checkpoint:
    """Tensors come back on the CPU; the trainer moves them where it trains."""
    return Checkpoint(**torch.load(path, map_location="cpu", weights_only=True))
