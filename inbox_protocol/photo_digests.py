"""What each photo of a set holds: the SHA-256 of its bytes, by its path in the set.

A retry reuses an earlier attempt's stages only when the photos that attempt read are, byte for
byte, the ones in the inbox now. Sizes and modification times, which tell the daemon when a set
changed, can stay the same over new bytes (a copy that keeps times, a camera that reuses names);
digests cannot. A .zip set is one file whose bytes hold every photo: its digest stands for them.
Files are opened without following links, as everything else in the inbox is.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Mapping

from inbox_protocol.photo_set import FileRules, SetListing, walk_set

DIGESTS_FILE = "photo-digests.json"  # the ingest stage's record of the photos it read
_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(descriptor, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def listing_digests(folder: Path, listing: SetListing) -> dict[str, str]:
    """The digests of the photos of one walk of a set folder."""
    return {entry.path: file_sha256(folder / entry.path) for entry in listing.photos}


def set_digests(source: Path, inbox: Path, rules: FileRules) -> dict[str, str]:
    """The digests of the set as it is now: a folder's photos, or the .zip file itself."""
    if source.is_dir() and not source.is_symlink():
        return listing_digests(source, walk_set(source, inbox, rules))
    return {source.name: file_sha256(source)}


def changed_photos(before: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    """The photos added, removed or changed between two records, in name order."""
    return sorted(name for name in before.keys() | now.keys() if before.get(name) != now.get(name))
