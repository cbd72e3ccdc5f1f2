"""Which entries of a .zip set are its photos and its job.toml, named as in a folder set.

"Compress" on macOS and Windows puts everything under one top folder (garden/IMG_1.jpg,
garden/job.toml), and macOS adds __MACOSX/ litter beside it. Such an archive is read as that
folder, as if the folder itself had been dropped: its job.toml counts, and photos are named
relative to it. The size limits, extraction and job.toml's reader all take the set from here,
so that they agree on what the set is. Nothing is read but the names in the central directory.
"""

from __future__ import annotations

import stat
import zipfile
from dataclasses import dataclass
from typing import Sequence

from inbox_protocol.photo_set import (
    CANCEL_MARKER,
    JOB_OPTIONS_FILE,
    MAX_FOLDER_DEPTH,
    READY_MARKERS,
    RETRY_MARKER,
    STATUS_FILE,
    FileRules,
)

_TOP_LEVEL_CONTROL_FILES = READY_MARKERS + (CANCEL_MARKER, RETRY_MARKER, JOB_OPTIONS_FILE)


@dataclass(frozen=True)
class SetEntry:
    entry: zipfile.ZipInfo
    parts: tuple[str, ...]  # path components below the set's root

    @property
    def name(self) -> str:
        return "/".join(self.parts)


@dataclass(frozen=True)
class ZipSetLayout:
    root: tuple[str, ...]  # () or the one top folder every entry (litter aside) sits in
    photos: tuple[SetEntry, ...]  # the entries ingest takes as photos, in archive order
    folders: tuple[SetEntry, ...]  # folder entries that a walk of the set would look into
    job_options: SetEntry | None  # the set's job.toml
    job_options_is_folder: bool  # a folder named job.toml where the file belongs


def entry_parts(name: str) -> tuple[str, ...]:
    """The path components an entry's name extracts to: 'a\\b//./c.jpg' -> ('a', 'b', 'c.jpg')."""
    normalised = name.replace("\\", "/")  # some Windows tools write backslashes
    return tuple(part for part in normalised.split("/") if part not in ("", "."))


def is_symlink(entry: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(entry.external_attr >> 16)


def zip_set_layout(entries: Sequence[zipfile.ZipInfo], rules: FileRules) -> ZipSetLayout:
    """The set in an archive's entries. Links are neither photos nor job.toml (extraction
    refuses them); entries outside the root are litter and are left out."""
    named = [(entry, entry_parts(entry.filename)) for entry in entries]
    root = _root(named, rules)
    photos, folders = [], []
    job_options = None
    job_options_is_folder = False
    for entry, parts in named:
        if parts[: len(root)] != root or len(parts) == len(root) or is_symlink(entry):
            continue
        item = SetEntry(entry, parts[len(root):])
        if item.parts[0].lower() == JOB_OPTIONS_FILE and (entry.is_dir() or len(item.parts) > 1):
            job_options_is_folder = True
        if entry.is_dir():
            if _looked_into(item.parts, rules):
                folders.append(item)
        elif len(item.parts) == 1 and item.parts[0].lower() == JOB_OPTIONS_FILE:
            job_options = job_options or item
        elif taken_as_photo(item.parts, rules):
            photos.append(item)
    return ZipSetLayout(root, tuple(photos), tuple(folders), job_options, job_options_is_folder)


def taken_as_photo(parts: tuple[str, ...], rules: FileRules) -> bool:
    """walk_set's rules (inbox_protocol/photo_set.py) for a file at ``parts`` below the set's root."""
    if not parts:
        return False
    *folders, name = parts
    if not _looked_into(tuple(folders), rules) or rules.is_junk(name):
        return False
    if not folders and (name.lower() in _TOP_LEVEL_CONTROL_FILES or name == STATUS_FILE):
        return False
    return not rules.is_in_progress(name)


def _looked_into(folders: tuple[str, ...], rules: FileRules) -> bool:
    """walk_set skips junk folders, never looks into hidden ones, nor below MAX_FOLDER_DEPTH."""
    return len(folders) <= MAX_FOLDER_DEPTH and not any(rules.is_junk(folder) or folder.startswith(".")
                                                        for folder in folders)


def _root(named: list[tuple[zipfile.ZipInfo, tuple[str, ...]]], rules: FileRules) -> tuple[str, ...]:
    """The one top folder holding every entry but litter (__MACOSX/, .DS_Store), or ()."""
    tops = set()
    for entry, parts in named:
        if not parts or rules.is_junk(parts[0]):
            continue
        if len(parts) == 1 and not entry.is_dir():
            return ()  # a file at the top: the archive is the set's folder itself
        tops.add(parts[0])
    if len(tops) != 1:
        return ()
    (top,) = tops
    return () if top.startswith(".") else (top,)  # a hidden folder is never looked into
