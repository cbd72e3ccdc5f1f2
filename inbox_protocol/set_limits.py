"""A set measured against the size limits (max_photos, max_file_mb, max_set_mb), before any
photo is read: how many photos, how large each one, how large all of them together.

It counts exactly the files ingest would take as photos. For a folder, the photos of
``walk_set``'s listing (junk, markers, job.toml, status.json, files still being written,
hidden folders and links are not photos). For a .zip, the same rules applied to the entries'
names as extraction lays them out (inbox_protocol/zip_layout.py: below the one top folder, if the
archive has one), with the uncompressed sizes the archive declares, read from its central
directory: a set over the limits is refused before anything is extracted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from inbox_protocol.file_names import display_name
from inbox_protocol.photo_set import FileRules, SetListing
from inbox_protocol.zip_extract import open_zip
from inbox_protocol.zip_layout import zip_set_layout

# Decimal megabytes, as Finder, GNOME Files and camera specifications count them.
MEGABYTE = 1_000_000
# status.json is public: the person reads the limit and whom to ask; the journal names the setting
_ASK = "or ask the server's operator to raise the limit"


@dataclass(frozen=True)
class SetLimits:
    max_photos: int = 500
    max_file_mb: float = 50.0
    max_set_mb: float = 5000.0

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> "SetLimits":
        """From a stage's settings; a key that is missing (a job whose context was written
        before these limits existed) keeps its default, the same as daemon/config.py's."""
        defaults = cls()
        return cls(
            max_photos=int(settings.get("max_photos", defaults.max_photos)),
            max_file_mb=float(settings.get("max_file_mb", defaults.max_file_mb)),
            max_set_mb=float(settings.get("max_set_mb", defaults.max_set_mb)),
        )

    @property
    def max_file_bytes(self) -> int:
        return _bytes(self.max_file_mb)

    @property
    def max_set_bytes(self) -> int:
        return _bytes(self.max_set_mb)


@dataclass(frozen=True)
class PhotoSize:
    name: str  # relative to the set (or the archive), for people
    size: int  # bytes; for a zip entry, its declared uncompressed size


@dataclass(frozen=True)
class LimitViolation:
    message: str  # what is over which limit, by how much
    hint: str  # what the user can do about it (or ask the operator to)
    setting: str  # the daemon's setting that sets the limit, for the journal


def listed_photos(listing: SetListing) -> tuple[PhotoSize, ...]:
    """The photos of a folder set's listing, with the sizes the walk saw."""
    return tuple(PhotoSize(display_name(entry.path), entry.size) for entry in listing.photos)


def zip_photos(archive: Path, rules: FileRules) -> tuple[PhotoSize, ...]:
    """The entries of a .zip set that ingest would take as photos once extracted; reads only
    the central directory. SetRefused if the file is not a zip archive."""
    with open_zip(archive) as opened:
        layout = zip_set_layout(opened.infolist(), rules)
    photos = (PhotoSize(photo.name, photo.entry.file_size) for photo in layout.photos)
    return tuple(sorted(photos, key=lambda photo: photo.name))


def first_violation(photos: Sequence[PhotoSize], limits: SetLimits) -> LimitViolation | None:
    """The first limit the set breaks, in this order: number of photos, size of one photo
    (the first in name order, with a count of the others), size of all together."""
    if len(photos) > limits.max_photos:
        return LimitViolation(
            f"the set has {len(photos)} photos; at most {limits.max_photos} are allowed on this server",
            f"split the photos into sets of at most {limits.max_photos}, {_ASK}",
            "max_photos",
        )
    too_large = sorted((photo for photo in photos if photo.size > limits.max_file_bytes), key=lambda p: p.name)
    if too_large:
        first = too_large[0]
        message = (
            f"{first.name} is {_megabytes(first.size, limits.max_file_mb)} MB; photos may be at most "
            f"{_number(limits.max_file_mb)} MB on this server"
        )
        if len(too_large) > 1:
            others = len(too_large) - 1
            message += f"; {others} other {'photo is' if others == 1 else 'photos are'} over it too"
        return LimitViolation(
            message,
            "export or save the photos over the limit again at a smaller size (a few thousand "
            f"pixels on the long side are plenty), {_ASK}",
            "max_file_mb",
        )
    total = sum(photo.size for photo in photos)
    if total > limits.max_set_bytes:
        return LimitViolation(
            f"the set's {len(photos)} photos come to {_megabytes(total, limits.max_set_mb)} MB; at most "
            f"{_number(limits.max_set_mb)} MB in total are allowed on this server",
            f"split the photos into smaller sets, save them at a smaller size, {_ASK}",
            "max_set_mb",
        )
    return None


def _bytes(megabytes: float) -> int:
    return round(megabytes * MEGABYTE)


def _megabytes(size: int, limit_mb: float) -> str:
    """As precise as the limit, and more where needed, so that a size just over the limit
    never reads as the limit: 73.4 (limit 50), 0.027 (limit 0.025), 50.000001 (limit 50)."""
    value = size / MEGABYTE
    for decimals in range(max(1, len(_number(limit_mb).partition(".")[2])), 7):
        text = f"{value:.{decimals}f}"
        if float(text) > limit_mb:
            return text
    return f"{value:.6f}"


def _number(megabytes: float) -> str:
    """As it would be written in the configuration: 50, 0.5."""
    return str(int(megabytes)) if float(megabytes).is_integer() else repr(float(megabytes))
