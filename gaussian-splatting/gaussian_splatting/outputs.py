"""The small files the 3DGS reference trainer writes beside the model, so that its viewers and
evaluation scripts find what they expect: cameras.json, cfg_args, and our config.json."""

from __future__ import annotations

import json
from pathlib import Path

from gaussian_splatting.config import TrainConfig
from gaussian_splatting.scene import TrainingView


def write_cameras_json(model_dir: Path, views: list[TrainingView]) -> None:
    """cameras.json as the reference writes it: camera centre and camera-to-world rotation."""
    entries = []
    for index, view in enumerate(views):
        entries.append(
            {
                "id": index,
                "img_name": Path(view.name).stem,
                "width": view.width,
                "height": view.height,
                "position": view.centre.tolist(),
                "rotation": view.viewmat[:3, :3].T.tolist(),
                "fy": float(view.K[1, 1]),
                "fx": float(view.K[0, 0]),
            }
        )
    (model_dir / "cameras.json").write_text(json.dumps(entries))


def write_run_config(model_dir: Path, config: TrainConfig) -> None:
    """config.json (every setting) and cfg_args (the reference's Namespace line, read by SIBR)."""
    (model_dir / "config.json").write_text(json.dumps(config.to_json(), indent=2))
    cfg_args = (
        f"Namespace(data_device='cpu', eval={config.eval}, images='images', "
        f"model_path={str(config.model_dir)!r}, resolution={config.resolution_scale}, "
        f"sh_degree={config.sh_degree}, source_path={str(config.source)!r}, white_background=False)"
    )
    (model_dir / "cfg_args").write_text(cfg_args)
