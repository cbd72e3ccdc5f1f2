"""Free space before work: a job whose stages would not fit on the disk waits in the queue instead
of failing hours later with a half-written model, and no stage starts while the state or outbox
folder has less than ``min_free_gb`` free.

Before each stage the job runner asks for what the stages still ahead will write (an estimate,
from the set's size and photo count and the job's Gaussian cap) plus ``min_free_gb`` of headroom,
in the state folder and in the outbox (together, when they share a file system). Short: the job
goes back to the queue, keeping its place, with the reason in status.json, and runs once space
is freed. More than the whole file system holds: no freeing will ever make room, so the job
fails at once with the numbers instead of waiting forever.

After a stage dies, ``filled`` tells whether the disk is what killed it: the guard left at least
``min_free_gb`` free when the stage started, so less than that now means the stage filled it.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from inbox_protocol.photo_set import FileRules, walk_set
from inbox_protocol.refusal import SetRefused
from inbox_protocol.set_limits import listed_photos, zip_photos

GB = 1_000_000_000
MB = 1_000_000

# What each stage writes, roughly and on the generous side (the demo's 24 photos: sfm 13 MB; its
# last checkpoint 36.0 MB for 49,946 Gaussians, 720 bytes each; 79 MB in all, estimated 160 MB).
SFM_BYTES_PER_PHOTO = 2 * MB  # COLMAP's database (features, matches) and the sparse model
PLY_BYTES_PER_GAUSSIAN = 248
SPLAT_BYTES_PER_GAUSSIAN = 32
SOG_BYTES_PER_GAUSSIAN = 32  # 14-18 measured (bench/sog_export.py); 6 textures of 4 bytes a pixel at most
CHECKPOINT_BYTES_PER_GAUSSIAN = 750  # parameters and Adam's two moments (gaussian_splatting.checkpoint)
# training keeps one checkpoint, but the next is written before the last goes; then the .ply
TRAIN_BYTES_PER_GAUSSIAN = 2 * CHECKPOINT_BYTES_PER_GAUSSIAN + PLY_BYTES_PER_GAUSSIAN
EVALUATE_BYTES_PER_PHOTO = MB // 4  # renders of the held-out eighth, side by side with the photos
# the held-out strip: two JPEGs of at most 800 px (150 kB each, generously) for every 8th photo,
# in the state folder and again in the outbox
STRIP_BYTES_PER_PHOTO = MB // 16
COVER_BYTES = MB // 2  # ingest's cover.jpg (640 px), in the state folder and the outbox
PUBLISH_EXTRA_BYTES = 5 * MB  # poster, thumbnails, cameras.json


@dataclass(frozen=True)
class SetSize:
    photos: int
    bytes: int


@dataclass(frozen=True)
class DiskNeed:
    state_bytes: int
    outbox_bytes: int

    def at_least(self, floor: "DiskNeed") -> "DiskNeed":
        return DiskNeed(max(self.state_bytes, floor.state_bytes), max(self.outbox_bytes, floor.outbox_bytes))


@dataclass(frozen=True)
class Shortage:
    """Why a need does not fit now, on one file system (the state folder's, the outbox's, or
    both when they share one)."""

    where: str  # "state folder", "outbox folder" or "state folder and outbox folder"
    free: int
    need: int  # what the job will write there
    headroom: int  # min_free_gb
    capacity: int  # the whole file system
    unreadable: str | None = None  # the free space could not be read: why

    @property
    def more(self) -> int:
        """How much more must be freed before the job fits."""
        return max(0, self.need + self.headroom - self.free)

    @property
    def never_fits(self) -> bool:
        """Not even the whole file system, emptied, would hold it (with the headroom)."""
        return self.unreadable is None and self.need + self.headroom > self.capacity

    @property
    def reason(self) -> str:
        if self.unreadable is not None:
            return f"cannot tell the free space in the {self.where} ({self.unreadable})"
        if self.never_fits:
            whose = "their" if " and " in self.where else "its"
            needs = f"the job needs about {size_text(self.need)} in the {self.where}"
            if self.need <= self.capacity:
                needs += f" and the server keeps {size_text(self.headroom)} free"
            return f"{needs}, more than {whose} whole file system holds ({size_text(self.capacity)})"
        return (f"not enough free space in the {self.where}: {size_text(self.free)} free, the job needs about "
                f"{size_text(self.need)} more and the server keeps {size_text(self.headroom)} free")


def estimate_writes(stages: Iterable[str], size: SetSize, max_gaussians: int, levels: Iterable[int] = ()) -> DiskNeed:
    """What ``stages`` will write, at most, into the state folder and the outbox; ``levels`` are the
    splat budgets publish writes a coarser .sog for (publish_levels), where the scene may exceed them."""
    per_gaussian = PLY_BYTES_PER_GAUSSIAN + SPLAT_BYTES_PER_GAUSSIAN + SOG_BYTES_PER_GAUSSIAN
    coarser = sum(level for level in levels if level < max_gaussians) * SOG_BYTES_PER_GAUSSIAN
    scene = max_gaussians * per_gaussian + coarser + PUBLISH_EXTRA_BYTES
    state = outbox = 0
    for stage in stages:
        if stage == "ingest":
            state += size.bytes + COVER_BYTES  # downsized, stripped JPEG copies: no larger than the photos
            outbox += COVER_BYTES
        elif stage == "sfm":
            state += SFM_BYTES_PER_PHOTO * size.photos
        elif stage == "train":
            state += TRAIN_BYTES_PER_GAUSSIAN * max_gaussians
        elif stage == "evaluate":
            state += (EVALUATE_BYTES_PER_PHOTO + STRIP_BYTES_PER_PHOTO) * size.photos
            outbox += STRIP_BYTES_PER_PHOTO * size.photos
        elif stage == "publish":
            state += scene
            outbox += scene
    return DiskNeed(state, outbox)


def free_bytes(folder: Path) -> int:
    """Space an unprivileged writer may still use (statvfs's f_bavail: root's reserve excluded)."""
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


def total_bytes(folder: Path) -> int:
    """The size of the file system holding ``folder`` (statvfs's f_blocks): what no freeing goes past."""
    stats = os.statvfs(folder)
    return stats.f_blocks * stats.f_frsize


# With min_free_gb = 0 a disk counts as filled below this; a stage that died with more free died of something else.
FILLED_FLOOR_BYTES = MB


class DiskGuard:
    def __init__(self, state: Path, outbox: Path, min_free_gb: float,
                 free_space: Callable[[Path], int] = free_bytes, total_space: Callable[[Path], int] = total_bytes):
        self._folders = {"state": state, "outbox": outbox}
        self._headroom = int(min_free_gb * GB)
        self._free_space = free_space
        self._total_space = total_space

    def shortage(self, need: DiskNeed) -> Shortage | None:
        """None if ``need`` fits with ``min_free_gb`` to spare in every folder; else why not (a need
        that no file system here could ever hold first)."""
        wanted = {"state": need.state_bytes, "outbox": need.outbox_bytes}
        short = []
        for names in self._by_device():
            folder = self._folders[names[0]]
            where = " and ".join(f"{name} folder" for name in names)
            bytes_wanted = sum(wanted[name] for name in names)
            try:
                free, capacity = self._free_space(folder), self._total_space(folder)
            except OSError as error:
                return Shortage(where, 0, bytes_wanted, self._headroom, 0, unreadable=error.strerror)
            if free < bytes_wanted + self._headroom:
                short.append(Shortage(where, free, bytes_wanted, self._headroom, capacity))
        return next((s for s in short if s.never_fits), short[0] if short else None)

    def filled(self) -> tuple[str, int] | None:
        """The folder(s) whose file system is full now (below ``min_free_gb``, which the guard left
        free before the stage started), with the bytes still free; None when none is."""
        for names in self._by_device():
            try:
                free = self._free_space(self._folders[names[0]])
            except OSError:
                continue
            if free < max(self._headroom, FILLED_FLOOR_BYTES):
                return " and ".join(f"{name} folder" for name in names), free
        return None

    def _by_device(self) -> list[list[str]]:
        """The folders grouped by file system, the state folder's first."""
        by_device: dict[int, list[str]] = {}
        for name, folder in self._folders.items():
            by_device.setdefault(_device(folder), []).append(name)
        return list(by_device.values())


def measure_set(source: Path, inbox: Path, rules: FileRules) -> SetSize:
    """The photos ingest will take from the set (a folder or a .zip); an empty size if the set
    cannot be read (ingest says why, when it runs)."""
    try:
        if source.is_dir():
            photos = listed_photos(walk_set(source, inbox, rules))
        else:
            photos = zip_photos(source, rules)
    except (SetRefused, OSError):
        return SetSize(0, 0)
    return SetSize(len(photos), sum(photo.size for photo in photos))


def _device(folder: Path) -> int:
    try:
        return os.stat(folder).st_dev
    except OSError:
        return -id(folder)  # a folder not there: judged on its own (and free_space says why)


def disk_usage(folder: Path) -> int:
    """Bytes the tree takes on disk, as du counts them (each hard-linked file once); links never
    followed, unreadable parts left out."""
    total, seen = 0, set()
    for root, dirs, files in os.walk(folder):  # links are listed, never entered
        links = [name for name in dirs if os.path.islink(os.path.join(root, name))]
        for path in (root, *(os.path.join(root, name) for name in (*files, *links))):
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if info.st_nlink > 1 and not stat.S_ISDIR(info.st_mode):
                if (info.st_dev, info.st_ino) in seen:
                    continue
                seen.add((info.st_dev, info.st_ino))
            total += info.st_blocks * 512
    return total


# What a writer (Python's OSError, SQLite, a C++ library) says when it finds the disk full, in the
# order they are looked for, and the words a message repeats
DISK_FULL_WORDS = (
    ("no space left on device", "No space left on device"),
    ("database or disk is full", "database or disk is full"),
    ("disk full", "disk full"),
    ("[errno 28]", "No space left on device"),
    ("enospc", "No space left on device"),
)


def disk_full_words(text: str) -> str | None:
    """The words in ``text`` (an error, a stage's last lines) that say a write found the disk full."""
    lowered = text.lower()
    return next((shown for sought, shown in DISK_FULL_WORDS if sought in lowered), None)


def size_text(size: int) -> str:
    """Decimal units, as the rest of the messages count them: "1.20 GB", "740.0 MB"."""
    return f"{size / GB:.2f} GB" if size >= GB else f"{size / MB:.1f} MB"
