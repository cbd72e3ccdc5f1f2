"""What the site shows of a job, read from its status.json document (the public record).

The site builder sees jobs only through this view: plain data made from the document that
users already read, so it needs neither the job store nor the daemon, and a page can never show
something status.json does not say.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

from stages.file_names import display_name

# The files a finished job's folder in the outbox offers for download, in the order shown.
DOWNLOADS = (
    ("scene.splat", "Splat (web viewers)", "splat_bytes"),
    ("scene.sog", "SOG (PlayCanvas, SuperSplat)", "sog_bytes"),
    ("scene.ply", "PLY (3DGS tools)", "ply_bytes"),
    ("cameras.json", "Training cameras", None),
)
SCENE_FILE = "scene.splat"  # streamed biggest splats first: the scene of any job, and of devices a .sog is too big for
COMPRESSED_SCENE_FILE = "scene.sog"  # all SH bands at a third of the size: what the viewer loads where it can
LEVEL_FILE = re.compile(r"scene(\.lod[0-9]+)?\.sog")  # the whole scene, or a coarser level (publish_levels)
POSTER_FILE = "poster.jpg"
THUMBNAIL_FILE = "thumb.jpg"
COVER_FILE = "cover.jpg"  # one of the set's photos, handed to the outbox by ingest: the card's picture before a poster
STATUS_FILE = "status.json"
ACTIVE_STATES = frozenset({"waiting", "queued", "running"})
SCENE_STATES = frozenset({"done", "removed"})  # a done job's scene stays viewable once removed, while its page is kept
# What each stage does, in the words of the person who dropped the photos (cards; gallery.js reads them from the page).
STAGE_WORDS = {
    "ingest": "checking the photos",
    "sfm": "placing the cameras",
    "train": "training the model",
    "evaluate": "scoring the held-out photos",
    "publish": "publishing the scene",
}


@dataclass(frozen=True)
class StageTiming:
    name: str
    state: str
    seconds: float | None


@dataclass(frozen=True)
class Download:
    file: str
    label: str
    size_bytes: int | None


@dataclass(frozen=True)
class SceneLevel:
    """A .sog the viewer may load: the whole scene, or a coarser version of it for a smaller splat budget."""

    file: str
    splats: int


@dataclass(frozen=True)
class JobView:
    job_id: str
    name: str
    state: str
    host: str | None  # the daemon that runs or ran it
    stage: str | None
    progress: float
    message: str
    created_at: str | None
    finished_at: str | None
    psnr: float | None
    ssim: float | None
    lpips: float | None
    gaussians: int | None
    photos_accepted: int | None
    photos_found: int | None
    iterations: int | None
    stages: tuple[StageTiming, ...]
    warnings: tuple[str, ...]
    error_message: str | None
    error_hint: str | None
    log_tail: tuple[str, ...]  # the last lines of the job's log, as status.json has them
    start_camera: str | None  # the training photo the poster shows; the viewer starts there
    downloads: tuple[Download, ...]
    has_scene: bool
    scene_levels: tuple[SceneLevel, ...]  # biggest first; empty where publish wrote no .sog
    has_poster: bool
    has_thumbnail: bool
    has_cover: bool

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def total_seconds(self) -> float | None:
        seconds = [stage.seconds for stage in self.stages if stage.seconds is not None]
        return round(sum(seconds), 1) if seconds else None

    def settled(self) -> "JobView":
        """The view without what changes every few seconds while a job runs (the pages fetch
        that from status.json themselves): equal settled views need no rebuild."""
        return replace(self, progress=0.0, message="", log_tail=())


def job_view(status: Mapping[str, Any], job_folder: Path) -> JobView:
    """The view of one status.json document; ``job_folder`` is the job's folder in the outbox,
    looked at only to offer the files that are really there."""
    metrics = status.get("metrics") or {}
    evaluation = metrics.get("evaluate") or {}
    published = metrics.get("publish") or {}
    trained = metrics.get("train") or {}
    images = status.get("images") or {}
    error = status.get("error") or {}
    present = _files_in(job_folder)
    downloads = tuple(
        Download(file, label, published.get(size_key) if size_key else None)
        for file, label, size_key in DOWNLOADS
        if file in present
    )
    gaussians = published.get("gaussians", trained.get("gaussians"))
    return JobView(
        job_id=str(status["job_id"]),
        name=display_name(str(status["name"])),  # exact, on one line, even if not UTF-8 (stages/file_names.py)
        state=str(status["state"]),
        host=status.get("host"),
        stage=status.get("stage"),
        progress=float(status.get("progress") or 0.0),
        message=str(status.get("message") or ""),
        created_at=status.get("created_at"),
        finished_at=status.get("finished_at"),
        psnr=_number(evaluation.get("psnr")),
        ssim=_number(evaluation.get("ssim")),
        lpips=_number(evaluation.get("lpips")),
        gaussians=int(gaussians) if isinstance(gaussians, (int, float)) else None,
        photos_accepted=images.get("accepted"),
        photos_found=images.get("found"),
        iterations=trained.get("iterations"),
        stages=tuple(
            StageTiming(name, str(entry.get("state")), _number(entry.get("seconds")))
            for name, entry in (status.get("stages") or {}).items()
        ),
        warnings=tuple(str(warning) for warning in status.get("warnings") or ()),
        error_message=error.get("message"),
        error_hint=error.get("hint"),
        log_tail=tuple(str(line) for line in status.get("log_tail") or ()),
        start_camera=_camera_name(published.get("view")),
        downloads=downloads,
        has_scene=SCENE_FILE in present and status.get("state") in SCENE_STATES,
        scene_levels=_scene_levels(published, gaussians, present),
        has_poster=POSTER_FILE in present,
        has_thumbnail=THUMBNAIL_FILE in present,
        has_cover=COVER_FILE in present,
    )


def _scene_levels(published: Mapping[str, Any], gaussians: Any, present: frozenset[str]) -> tuple[SceneLevel, ...]:
    """The .sog files publish listed (metrics.publish.levels) that are in the folder, biggest first; a job
    published before levels existed has its scene.sog alone."""
    listed = published.get("levels")
    if not isinstance(listed, list):
        listed = [{"file": COMPRESSED_SCENE_FILE, "gaussians": gaussians}]
    levels = {
        SceneLevel(level["file"], level["gaussians"])
        for level in listed
        if isinstance(level, Mapping) and isinstance(level.get("file"), str) and LEVEL_FILE.fullmatch(level["file"])
        and level["file"] in present and isinstance(level.get("gaussians"), int) and level["gaussians"] > 0
    }
    return tuple(sorted(levels, key=lambda level: -level.splats))


def _camera_name(photo: Any) -> str | None:
    """cameras.json names a camera by its photo's name without the extension (as the 3DGS
    reference writes it); metrics.publish.view names the photo."""
    return PurePosixPath(photo).stem if isinstance(photo, str) and photo else None


def _files_in(folder: Path) -> frozenset[str]:
    try:
        return frozenset(entry.name for entry in folder.iterdir() if entry.is_file() and not entry.is_symlink())
    except OSError:
        return frozenset()


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
