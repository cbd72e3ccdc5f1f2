"""Free space before work: a job whose stages would not fit on the disk waits in the queue instead
of failing hours later with a half-written model, and no stage starts while the state or outbox
folder has less than ``min_free_gb`` free.

Before each stage the job runner asks for what the stages still ahead will write (an estimate,
from the set's size and photo count and the job's Gaussian cap) plus ``min_free_gb`` of headroom,
in the state folder and in the outbox (together, when they share a file system). Short: the job
goes back to the queue, keeping its place, with the reason in status.json, and runs once space
is freed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from stages.photo_set import FileRules, walk_set
from stages.set_limits import listed_photos, zip_photos

GB = 1_000_000_000
MB = 1_000_000

# What each stage writes, roughly and on the generous side (the demo's 24 photos: sfm 13 MB; its
# last checkpoint 36.0 MB for 49,946 Gaussians, 720 bytes each; 79 MB in all, estimated 160 MB).
SFM_BYTES_PER_PHOTO = 2 * MB  # COLMAP's database (features, matches) and the sparse model
PLY_BYTES_PER_GAUSSIAN = 248
SPLAT_BYTES_PER_GAUSSIAN = 32
CHECKPOINT_BYTES_PER_GAUSSIAN = 750  # parameters and Adam's two moments (gaussian_splatting.checkpoint)
# training keeps one checkpoint, but the next is written before the last goes; then the .ply
TRAIN_BYTES_PER_GAUSSIAN = 2 * CHECKPOINT_BYTES_PER_GAUSSIAN + PLY_BYTES_PER_GAUSSIAN
EVALUATE_BYTES_PER_PHOTO = MB // 4  # renders of the held-out eighth, side by side with the photos
PUBLISH_EXTRA_BYTES = 5 * MB  # poster, thumbnails, cameras.json


@dataclass(frozen=True)
class SetSize:
    photos: int
    bytes: int


@dataclass(frozen=True)
class DiskNeed:
    state_bytes: int
    outbox_bytes: int


def estimate_writes(stages: Iterable[str], size: SetSize, max_gaussians: int) -> DiskNeed:
    """What ``stages`` will write, at most, into the state folder and the outbox."""
    scene = max_gaussians * (PLY_BYTES_PER_GAUSSIAN + SPLAT_BYTES_PER_GAUSSIAN) + PUBLISH_EXTRA_BYTES
    state = outbox = 0
    for stage in stages:
        if stage == "ingest":
            state += size.bytes  # downsized, stripped JPEG copies: no larger than the photos
        elif stage == "sfm":
            state += SFM_BYTES_PER_PHOTO * size.photos
        elif stage == "train":
            state += TRAIN_BYTES_PER_GAUSSIAN * max_gaussians
        elif stage == "evaluate":
            state += EVALUATE_BYTES_PER_PHOTO * size.photos
        elif stage == "publish":
            state += scene
            outbox += scene
    return DiskNeed(state, outbox)


def free_bytes(folder: Path) -> int:
    """Space an unprivileged writer may still use (statvfs's f_bavail: root's reserve excluded)."""
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


class DiskGuard:
    def __init__(self, state: Path, outbox: Path, min_free_gb: float,
                 free_space: Callable[[Path], int] = free_bytes):
        self._folders = {"state": state, "outbox": outbox}
        self._headroom = int(min_free_gb * GB)
        self._free_space = free_space

    def shortage(self, need: DiskNeed) -> str | None:
        """None if ``need`` fits with ``min_free_gb`` to spare in every folder; else why not."""
        wanted = {"state": need.state_bytes, "outbox": need.outbox_bytes}
        by_device: dict[int, list[str]] = {}
        for name, folder in self._folders.items():
            by_device.setdefault(_device(folder), []).append(name)
        for names in by_device.values():
            folder = self._folders[names[0]]
            try:
                free = self._free_space(folder)
            except OSError as error:
                return f"cannot tell the free space in the {' and '.join(names)} folder ({error.strerror})"
            bytes_wanted = sum(wanted[name] for name in names)
            if free < bytes_wanted + self._headroom:
                where = " and ".join(f"{name} folder" for name in names)
                return (f"not enough free space in the {where}: {_gb(free)} free, the job needs about "
                        f"{_gb(bytes_wanted)} more and min_free_gb keeps {_gb(self._headroom)} free")
        return None


def measure_set(source: Path, inbox: Path, rules: FileRules) -> SetSize:
    """The photos ingest will take from the set (a folder or a .zip); an empty size if the set
    cannot be read (ingest says why, when it runs)."""
    try:
        if source.is_dir():
            photos = listed_photos(walk_set(source, inbox, rules))
        else:
            photos = zip_photos(source, rules)
    except Exception:
        return SetSize(0, 0)
    return SetSize(len(photos), sum(photo.size for photo in photos))


def _device(folder: Path) -> int:
    try:
        return os.stat(folder).st_dev
    except OSError:
        return -id(folder)  # a folder not there: judged on its own (and free_space says why)


def _gb(size: int) -> str:
    return f"{size / GB:.2f} GB" if size >= GB else f"{size / MB:.1f} MB"
