"""What the site shows of a job, read from its status.json document (the public record).

The site builder sees jobs only through this view: plain data made from the document that
users already read, so it needs neither the job store nor the daemon, and a page can never show
something status.json does not say.

The verdict is the band of the held-out PSNR (the one score every scored job has: LPIPS needs
weights a server may lack); SSIM and LPIPS get a band of their own beside their value. A set too
small to hold a photo out is scored on its training views, which flatter the model: its scores
are labelled as such, with no verdict and no bands. The bands are where published 3D Gaussian Splatting results lie on real photos (Kerbl et al., "3D Gaussian
Splatting for Real-Time Radiance Field Rendering", SIGGRAPH 2023, Table 1, at 30k iterations):
Mip-NeRF360 27.2 dB PSNR, SSIM 0.815, LPIPS 0.214; Tanks&Temples 23.1 dB, 0.841, 0.183; Deep
Blending 29.4 dB, 0.903, 0.243; the older methods in the same table score 23.1-25.6 dB, SSIM
0.63-0.70, LPIPS 0.33-0.46 on Mip-NeRF360 (Plenoxels, Instant-NGP: visibly blurrier).
So PSNR >= 25 dB is "very good" (Instant-NGP's level on Mip-NeRF360, 2 dB under 3DGS's),
20-25 dB "good" (the best on Tanks&Temples is 23 dB), below 20 dB "rough"; SSIM >= 0.8 and
LPIPS <= 0.3 (lower is better), which split 3DGS's results from the blurrier methods', are
"good", the rest "rough". The flat-colour floor (each held-out photo against its own
mean colour) is shown beside PSNR: a PSNR near it means the model learned little of the scene.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

from inbox_protocol.file_names import display_name, without_surrogates

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
# What each stage does, in the words of the person who dropped the photos; the pages and cards show
# these (job-status.js reads them from the stages table for its live updates, gallery.js from the page).
STAGE_WORDS = {
    "ingest": "checking the photos",
    "sfm": "placing the cameras",
    "train": "training the model",
    "evaluate": "scoring the model",
    "publish": "publishing the scene",
}
LAST_STAGE = "publish"
# metrics.evaluate.scored_on (stages/evaluate.py), as the site compares them
HELD_OUT_PHOTOS = "held-out photos"
TRAINING_VIEWS = "training views"
PSNR_VERY_GOOD = 25.0  # dB; the bands and their sources: the module's docstring
PSNR_GOOD = 20.0
SSIM_GOOD = 0.8
LPIPS_GOOD = 0.3  # lower is better
HELD_OUT_IMAGE_SIZE = 800  # the long side of the held-out photos and renders at most (the evaluate stage's)
ACTIVE_STATES = frozenset({"waiting", "queued", "running"})
SCENE_STATES = frozenset({"done", "removed"})  # a done job's scene stays viewable once removed, while its page is kept


@dataclass(frozen=True)
class StageTiming:
    name: str
    state: str
    seconds: float | None
    reused_from: str | None = None  # the earlier attempt whose result a retry took over: the stage did not run

    @property
    def words(self) -> str:
        return stage_words(self.name)


@dataclass(frozen=True)
class PhotoNote:
    """A photo of the set that was not used, and why (the person's words)."""

    file: str
    reason: str


@dataclass(frozen=True)
class ScoredPhoto:
    """A scored photo (kept out of training, or a training view), and our render of it from its
    camera: files in the job's folder."""

    name: str
    psnr: float | None
    photo: str
    render: str
    width: int | None  # the images' size as the page reserves it, from the evaluation's resolution
    height: int | None


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
    folder: str  # the job's folder in the outbox: its id, or a private job's <id>.<page_key>
    private: bool  # a private job has its page, and no place in the gallery or jobs.json
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
    scored_on: str | None  # HELD_OUT_PHOTOS or TRAINING_VIEWS; None without scores
    verdict: str | None  # "very good", "good" or "rough" (the held-out PSNR's band); None otherwise
    mean_colour_psnr: float | None  # the flat-colour floor
    score_resolution: str | None  # "199x149": the size the scores were taken at
    photos_scored: int | None  # how many photos the scores are over
    not_scored: str | None  # why a finished job has no scores (evaluate skipped)
    scored_photos: tuple[ScoredPhoto, ...]  # those whose photo and render are in the folder
    gaussians: int | None
    photos_accepted: int | None
    photos_found: int | None
    photos_placed: int | None  # by the sfm stage; None before it ran
    photos_training: int | None
    photos_held_out: int | None
    rejected: tuple[PhotoNote, ...]  # by ingest
    unplaced: tuple[PhotoNote, ...]  # accepted, but sfm could not place them
    iterations: int | None
    stages: tuple[StageTiming, ...]
    warnings: tuple[str, ...]
    error_message: str | None
    error_hint: str | None
    error_stage: str | None
    from_zip: bool  # the set is a .zip: it is run again by replacing it, a RETRY file has nowhere to go
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
    def held_out_scores(self) -> bool:
        """Scores that measure the model on photos it never saw: the only ones the bands judge."""
        return self.scored_on == HELD_OUT_PHOTOS

    @property
    def ssim_band(self) -> str | None:
        if self.ssim is None or not self.held_out_scores:
            return None
        return "good" if self.ssim >= SSIM_GOOD else "rough"

    @property
    def lpips_band(self) -> str | None:
        if self.lpips is None or not self.held_out_scores:
            return None
        return "good" if self.lpips <= LPIPS_GOOD else "rough"

    @property
    def rejected_by_reason(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        return by_reason(self.rejected)

    @property
    def unplaced_by_reason(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        return by_reason(self.unplaced)

    @property
    def error_stage_words(self) -> str | None:
        return stage_words(self.error_stage) if self.error_stage else None

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
    placed = metrics.get("sfm") or {}
    images = status.get("images") or {}
    error = status.get("error") or {}
    present = _files_in(job_folder)
    downloads = tuple(
        Download(file, label, published.get(size_key) if size_key else None)
        for file, label, size_key in DOWNLOADS
        if file in present
    )
    gaussians = published.get("gaussians", trained.get("gaussians"))
    psnr = _number(evaluation.get("psnr"))
    scored_on = None if psnr is None else _scored_on(evaluation)
    return JobView(
        job_id=str(status["job_id"]),
        folder=job_folder.name,
        private=status.get("private") is True,
        name=display_name(str(status["name"])),  # exact, on one line, even if not UTF-8 (inbox_protocol/file_names.py)
        state=str(status["state"]),
        host=status.get("host"),
        stage=status.get("stage"),
        progress=float(status.get("progress") or 0.0),
        message=_shown_message(status),
        created_at=status.get("created_at"),
        finished_at=status.get("finished_at"),
        psnr=psnr,
        ssim=_number(evaluation.get("ssim")),
        lpips=_number(evaluation.get("lpips")),
        scored_on=scored_on,
        verdict=verdict(psnr) if scored_on == HELD_OUT_PHOTOS else None,
        mean_colour_psnr=_number(evaluation.get("mean_colour_psnr")),
        score_resolution=_text(evaluation.get("resolution")),
        photos_scored=_count(evaluation.get("images")) if psnr is not None else None,
        not_scored=_text(evaluation.get("skipped")) if psnr is None else None,
        scored_photos=_scored_photos(evaluation, scored_on, present),
        gaussians=int(gaussians) if isinstance(gaussians, (int, float)) else None,
        photos_accepted=images.get("accepted"),
        photos_found=images.get("found"),
        photos_placed=_count(placed.get("registered")),
        photos_training=_count(placed.get("train")),
        photos_held_out=_count(placed.get("test")),
        rejected=_photo_notes(images.get("rejected")),
        unplaced=_unplaced(placed),
        iterations=trained.get("iterations"),
        stages=tuple(
            StageTiming(name, str(entry.get("state")), _number(entry.get("seconds")), _text(entry.get("reused_from")))
            for name, entry in (status.get("stages") or {}).items()
        ),
        warnings=tuple(str(warning) for warning in status.get("warnings") or ()),
        error_message=error.get("message"),
        error_hint=error.get("hint"),
        error_stage=error.get("stage"),
        from_zip=str(status["name"]).lower().endswith(".zip"),
        log_tail=tuple(str(line) for line in status.get("log_tail") or ()),
        start_camera=_camera_name(published.get("view")),
        downloads=downloads,
        has_scene=SCENE_FILE in present and status.get("state") in SCENE_STATES,
        scene_levels=_scene_levels(published, gaussians, present),
        has_poster=POSTER_FILE in present,
        has_thumbnail=THUMBNAIL_FILE in present,
        has_cover=COVER_FILE in present,
    )


def verdict(psnr: float | None) -> str | None:
    """The held-out PSNR's band in a word (the module's docstring says where the bands come from)."""
    if psnr is None:
        return None
    return "very good" if psnr >= PSNR_VERY_GOOD else "good" if psnr >= PSNR_GOOD else "rough"


def by_reason(notes: tuple[PhotoNote, ...]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The photos of each reason, reasons in the order they first come: nineteen photos that could not
    be placed for the same reason read as one line, not nineteen."""
    groups: dict[str, list[str]] = {}
    for note in notes:
        groups.setdefault(note.reason, []).append(note.file)
    return tuple((reason, tuple(files)) for reason, files in groups.items())


def stage_words(stage: str) -> str:
    return STAGE_WORDS.get(stage, stage)


def in_words(message: str) -> str:
    """A progress message as the daemon writes it ("train: iteration 1400/2000", or "sfm" alone)
    with its stage said in words ("training the model: iteration 1400/2000")."""
    stage, colon, rest = message.partition(": ")
    return f"{STAGE_WORDS[stage]}{colon}{rest}" if stage in STAGE_WORDS else message


def _shown_message(status: Mapping[str, Any]) -> str:
    """What the page says beside the state's badge: nothing more for a job that ran to the end
    (status.json's "done after publish"), the stage it ended at when job.toml stopped it early, the
    stage a failed job failed in (the error itself has a section of its own)."""
    state, stage = status.get("state"), status.get("stage")
    if state == "done" and stage and stage != LAST_STAGE:
        return f"stopped after {stage_words(stage)}, as the set's job.toml asks"
    if state == "done":
        return ""
    failed_in = (status.get("error") or {}).get("stage")
    if state == "failed" and failed_in:
        return f"while {stage_words(failed_in)}"
    return in_words(str(status.get("message") or ""))


def _scored_on(evaluation: Mapping[str, Any]) -> str:
    """What the scores are over: the evaluate stage says it (a document from before it did had only held-out scores)."""
    return TRAINING_VIEWS if evaluation.get("scored_on") == TRAINING_VIEWS else HELD_OUT_PHOTOS


def _scored_photos(evaluation: Mapping[str, Any], scored_on: str | None,
                   present: frozenset[str]) -> tuple[ScoredPhoto, ...]:
    """The scored photos whose photo and render the evaluate stage put into the job's folder."""
    entries = evaluation.get("training_views" if scored_on == TRAINING_VIEWS else "held_out")
    if not isinstance(entries, list):
        return ()
    width, height = _image_size(evaluation.get("resolution"))
    return tuple(
        ScoredPhoto(display_name(str(entry.get("name") or entry["photo"])), _number(entry.get("psnr")),
                     entry["photo"], entry["render"], width, height)
        for entry in entries
        if isinstance(entry, Mapping) and isinstance(entry.get("photo"), str) and isinstance(entry.get("render"), str)
        and entry["photo"] in present and entry["render"] in present
    )


def _image_size(resolution: Any) -> tuple[int | None, int | None]:
    """The scored images' size from the evaluation's "199x149": that, or scaled down to at most
    HELD_OUT_IMAGE_SIZE on the long side, as the evaluate stage writes them."""
    match = re.fullmatch(r"([0-9]+)x([0-9]+)", resolution) if isinstance(resolution, str) else None
    if not match or not all(int(side) > 0 for side in match.groups()):
        return None, None
    width, height = int(match.group(1)), int(match.group(2))
    scale = min(1.0, HELD_OUT_IMAGE_SIZE / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _photo_notes(entries: Any) -> tuple[PhotoNote, ...]:
    if not isinstance(entries, list):
        return ()
    return tuple(
        PhotoNote(display_name(str(entry["file"])), without_surrogates(str(entry.get("reason") or "")))
        for entry in entries
        if isinstance(entry, Mapping) and "file" in entry
    )


def _unplaced(placed: Mapping[str, Any]) -> tuple[PhotoNote, ...]:
    """The photos sfm could not place, with the reason it gives (metrics.sfm.unplaced); a document
    written before it gave reasons names them alone (metrics.sfm.unregistered)."""
    if isinstance(placed.get("unplaced"), list):
        return _photo_notes(placed["unplaced"])
    names = placed.get("unregistered")
    if not isinstance(names, list):
        return ()
    return tuple(PhotoNote(display_name(str(name)), "it could not be placed among the other photos") for name in names)


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


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return without_surrogates(value) if isinstance(value, str) and value else None
