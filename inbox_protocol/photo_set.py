"""What a photo set folder holds: photos, control files, files still being written, junk.

Shared by the daemon (to notice when a set is complete) and by ingest (to read it), so
both sides agree on which files count. Walks never follow symbolic links.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from inbox_protocol.file_names import display_name
from inbox_protocol.temporary_names import temporary_name_pattern

STATUS_FILE = "status.json"
JOB_OPTIONS_FILE = "job.toml"
# A job.toml holds a few lines; it is read only this far, from a folder or a .zip alike.
JOB_OPTIONS_MAX_BYTES = 64 * 1024
JOB_OPTIONS_TOO_LARGE = (
    "job.toml is larger than 64 KB; job options are a few short lines (see the job.toml section of docs/dropping-sets.md)"
)
# Compared case-insensitively. READY.txt: what Windows Explorer's "New Text Document" becomes
# when a user renames it to READY with file extensions hidden.
READY_MARKERS = ("ready", ".ready", "ready.txt")
CANCEL_MARKER = "cancel"
RETRY_MARKER = "retry"

# Photos may sit in subfolders of a set, this many levels down at most.
MAX_FOLDER_DEPTH = 32

# Written by tools that have not finished: they are not photos, but while they change
# the set is not complete.
IN_PROGRESS_PATTERNS = ("*.part", "*.tmp", "*.crdownload", "~$*")
# The daemon writes status.json under a temporary name first (stages/atomic_files.py).
_STATUS_TEMPORARY = re.compile(temporary_name_pattern(re.escape(STATUS_FILE)))
# rsync writes ".<name>.<6 random characters>" and renames it when the file is complete.
_RSYNC_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9]{6}$")

# Operating-system and sync-tool litter; never photos, never activity worth waiting for.
DEFAULT_JUNK_PATTERNS = (
    ".DS_Store",
    "._*",
    "Thumbs.db",
    "desktop.ini",
    "@eaDir",
    ".stfolder",
    ".stversions",
    "#recycle",
    "__MACOSX",  # AppleDouble copies (._IMG_1.jpg) that macOS's "Compress" adds to a zip
)


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the set root, with forward slashes
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class SymlinkEntry:
    path: str
    target: str
    escapes_inbox: bool


@dataclass(frozen=True)
class SetListing:
    """One walk of a set folder, taken at one moment."""

    photos: tuple[FileEntry, ...] = ()  # candidate photos, name order; ingest decides which are good
    in_progress: tuple[FileEntry, ...] = ()
    symlinks: tuple[SymlinkEntry, ...] = ()
    unreadable: tuple[str, ...] = ()  # folders the walk could not list
    too_deep: tuple[str, ...] = ()  # folders below MAX_FOLDER_DEPTH, not looked into
    job_options: FileEntry | None = None
    ready: bool = False
    cancel_mtime_ns: int | None = None
    retry_mtime_ns: int | None = None
    retry_name: str | None = None  # the RETRY file's name as written (any case): its content may name a stage

    @property
    def escaping_symlinks(self) -> tuple[SymlinkEntry, ...]:
        return tuple(link for link in self.symlinks if link.escapes_inbox)

    def escaping_symlink_refusal(self) -> tuple[str, str] | None:
        """(message, hint) when a link leads out of the inbox: such a set is refused whole."""
        if not self.escaping_symlinks:
            return None
        path = display_name(self.escaping_symlinks[0].path)
        return (
            f"the set contains a symbolic link '{path}' that points outside the inbox; refused, "
            "as the link could expose files that were never meant to be sent",
            "replace the link with the file itself, or remove it",
        )

    def content_fingerprint(self) -> str:
        """Identity of what the pipeline would read: a new value means a new attempt."""
        digest = hashlib.sha256()
        for entry in self.photos:
            digest.update(_record("p", entry.path, entry.size, entry.mtime_ns))
        if self.job_options is not None:
            entry = self.job_options
            digest.update(_record("o", entry.path, entry.size, entry.mtime_ns))
        for link in self.symlinks:
            digest.update(_record("l", link.path, link.target))
        return digest.hexdigest()

    def activity_fingerprint(self) -> str:
        """Changes whenever anything is still being written; the settle clock restarts on it."""
        digest = hashlib.sha256(self.content_fingerprint().encode())
        for entry in self.in_progress:
            digest.update(_record("t", entry.path, entry.size, entry.mtime_ns))
        return digest.hexdigest()


def _record(kind: str, *fields: object) -> bytes:
    """One line of a fingerprint; names as the file system's bytes (they need not be UTF-8)."""
    return b"\0".join(os.fsencode(str(field)) for field in (kind, *fields)) + b"\n"


@dataclass(frozen=True)
class FileRules:
    """Which names are junk; user patterns add to the defaults, matched case-insensitively."""

    extra_junk_patterns: tuple[str, ...] = ()
    _patterns: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        patterns = tuple(p.lower() for p in DEFAULT_JUNK_PATTERNS + tuple(self.extra_junk_patterns))
        object.__setattr__(self, "_patterns", patterns)

    def is_junk(self, name: str) -> bool:
        lowered = name.lower()
        return any(fnmatch.fnmatchcase(lowered, pattern) for pattern in self._patterns)

    @staticmethod
    def is_in_progress(name: str) -> bool:
        lowered = name.lower()
        if _RSYNC_TEMPORARY.match(name) and lowered not in READY_MARKERS:
            return True
        return any(fnmatch.fnmatchcase(lowered, pattern) for pattern in IN_PROGRESS_PATTERNS)


def walk_set(set_root: Path, inbox_root: Path, rules: FileRules) -> SetListing:
    """List a set folder without following links; markers count only at its top level. Folders
    are walked breadth-first to ``MAX_FOLDER_DEPTH`` levels: deeper ones are listed in
    ``too_deep``, not entered (a tree nested a thousand deep is an attack or a mistake, and
    recursion through it would fail)."""
    set_root = Path(set_root)
    real_inbox = os.path.realpath(inbox_root)
    photos: list[FileEntry] = []
    in_progress: list[FileEntry] = []
    symlinks: list[SymlinkEntry] = []
    unreadable: list[str] = []
    too_deep: list[str] = []
    markers: dict[str, FileEntry] = {}
    job_options: FileEntry | None = None
    folders: deque[tuple[str, str, int]] = deque([(str(set_root), "", 0)])  # path, relative, depth

    while folders:
        folder, relative, depth = folders.popleft()
        try:
            with os.scandir(folder) as scanned:
                entries = sorted(scanned, key=lambda e: e.name)
        except OSError:
            unreadable.append(relative or ".")
            continue
        for entry in entries:
            rel = f"{relative}/{entry.name}" if relative else entry.name
            if rules.is_junk(entry.name):
                continue
            if entry.is_symlink():
                target = os.readlink(entry.path)
                resolved = os.path.realpath(entry.path)
                inside = os.path.commonpath([real_inbox, resolved]) == real_inbox
                symlinks.append(SymlinkEntry(rel, target, escapes_inbox=not inside))
                continue
            if entry.is_dir(follow_symlinks=False):
                # Hidden folders belong to tools, never hold photos: rsync's .~tmp~ and
                # --partial-dir keep unfinished files there under their real names.
                if entry.name.startswith("."):
                    continue
                if depth + 1 > MAX_FOLDER_DEPTH:
                    too_deep.append(rel)
                else:
                    folders.append((entry.path, rel, depth + 1))
                continue
            if not entry.is_file(follow_symlinks=False):
                continue  # sockets, fifos, devices: never photos
            try:
                stat = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # renamed away between listing and stat (rsync finishing a file)
            item = FileEntry(rel, stat.st_size, stat.st_mtime_ns)
            lowered = entry.name.lower()
            if not relative and lowered in READY_MARKERS + (CANCEL_MARKER, RETRY_MARKER):
                markers[lowered] = item
            elif not relative and (entry.name == STATUS_FILE or _STATUS_TEMPORARY.match(entry.name)):
                continue  # ours: status.json, and its temporary names while it is written
            elif not relative and lowered == JOB_OPTIONS_FILE:
                job_options = item
            elif rules.is_in_progress(entry.name):
                in_progress.append(item)
            else:
                photos.append(item)

    return SetListing(
        photos=tuple(sorted(photos, key=lambda e: e.path)),
        in_progress=tuple(sorted(in_progress, key=lambda e: e.path)),
        symlinks=tuple(sorted(symlinks, key=lambda e: e.path)),
        unreadable=tuple(sorted(unreadable)),
        too_deep=tuple(sorted(too_deep)),
        job_options=job_options,
        ready=any(marker in markers for marker in READY_MARKERS),
        cancel_mtime_ns=markers[CANCEL_MARKER].mtime_ns if CANCEL_MARKER in markers else None,
        retry_mtime_ns=markers[RETRY_MARKER].mtime_ns if RETRY_MARKER in markers else None,
        retry_name=markers[RETRY_MARKER].path if RETRY_MARKER in markers else None,
    )
