"""Small photo sets for daemon tests, made by the project's own synthetic renderer."""

from __future__ import annotations

from pathlib import Path

from daemon.demo_set import write_demo_set


def small_set(folder: Path, views: int = 4, ready: bool = False) -> list[Path]:
    """``views`` photos of 160x120 in ``folder`` (and a READY marker when asked)."""
    cameras = write_demo_set(folder, views=views, width=160, height=120, ready_marker=ready)
    return [folder / camera.file for camera in cameras]
