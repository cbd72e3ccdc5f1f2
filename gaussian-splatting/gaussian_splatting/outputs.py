"""The small files the 3DGS reference trainer writes beside the model, so that its viewers and
evaluation scripts find what they expect: cameras.json, cfg_args, and our config.json."""

from __future__ import annotations

import json
from pathlib import Path

from gaussian_splatting.atomic_write import write_text_atomically
from gaussian_splatting.config import TrainConfig
from gaussian_splatting.scene import TrainingView


def camera_entries(views: list[TrainingView]) -> list[dict]:
    """cameras.json entries as the reference writes them: camera centre and camera-to-world
    rotation, with the image size and focal lengths; plus the principal point (cx, cy), which
    the reference leaves out and web viewers need to start exactly on a photo's view."""
    return [
        {
            "id": index,
            "img_name": Path(view.name).stem,
            "width": view.width,
            "height": view.height,
            "position": view.centre.tolist(),
            "rotation": view.viewmat[:3, :3].T.tolist(),
            "fy": float(view.K[1, 1]),
            "fx": float(view.K[0, 0]),
            "cx": float(view.K[0, 2]),
            "cy": float(view.K[1, 2]),
        }
        for index, view in enumerate(views)
    ]


def write_cameras_json(model_dir: Path, views: list[TrainingView]) -> None:
    write_text_atomically(model_dir / "cameras.json", json.dumps(camera_entries(views)))


def write_run_config(model_dir: Path, config: TrainConfig) -> None:
    """config.json (every setting) and cfg_args (the reference's Namespace line, read by SIBR)."""
    write_text_atomically(model_dir / "config.json", json.dumps(config.to_json(), indent=2))
    cfg_args = (
        f"Namespace(data_device='cpu', eval={config.eval}, images='images', "
        f"model_path={str(config.model_dir)!r}, resolution={config.resolution_scale}, "
        f"sh_degree={config.sh_degree}, source_path={str(config.source)!r}, white_background=False)"
    )
    write_text_atomically(model_dir / "cfg_args", cfg_args)
