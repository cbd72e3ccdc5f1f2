"""Small photo sets for daemon tests, made by the project's own synthetic renderer."""

from __future__ import annotations

from pathlib import Path

from daemon.demo_set import write_demo_set


def small_set(folder: Path, views: int = 4, ready: bool = False, stop_after: str | None = "ingest") -> list[Path]:
    """``views`` photos of 160x120 in ``folder`` (and a READY marker when asked).

    Daemon tests are about the daemon: by default the set's job.toml stops it after
    ingest, so that no test waits for structure from motion it does not look at.
    """
    cameras = write_demo_set(folder, views=views, width=160, height=120, ready_marker=False)
    if stop_after is not None:
        (folder / "job.toml").write_text(f'stop_after = "{stop_after}"\n')
    if ready:
        (folder / "READY").touch()
    return [folder / camera.file for camera in cameras]
