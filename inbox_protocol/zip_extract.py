"""Unpack a photo set sent as a .zip: its photos and its job.toml, nothing else, refusing
archives that could escape or flood the disk.

Only what ingest would read is written (inbox_protocol/zip_layout.py: photos and job.toml, named below
the archive's one top folder if it has one); litter, files in hidden folders and anything else
are skipped, however large. Every entry is checked before anything is written, so a bad archive
leaves no files. Header sizes are only a first check: bytes are counted again as they come out
of the decompressor, against the same limits, because a zip bomb's headers can lie.
"""

from __future__ import annotations

import logging
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from inbox_protocol.photo_set import JOB_OPTIONS_MAX_BYTES, JOB_OPTIONS_TOO_LARGE, FileRules
from inbox_protocol.refusal import SetRefused
from inbox_protocol.zip_layout import SetEntry, ZipSetLayout, entry_parts, is_symlink, zip_set_layout

log = logging.getLogger("inbox_protocol.zip_extract")

NOT_A_ZIP = "not a valid zip archive (truncated or still being copied?)"
ZIP_HINT = "re-create the archive with a standard zip tool, or drop the photos in as a plain folder"
_JOB_OPTIONS_HINT = 'keep only the options in job.toml: a few lines such as stop_after = "sfm"'
_CHUNK_BYTES = 1024 * 1024
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
_ENCRYPTED_FLAG = 0x1


@dataclass(frozen=True)
class ZipLimits:
    max_files: int  # entries, folders and skipped entries included
    max_bytes: int  # uncompressed bytes, everything extracted together (zip_max_bytes)
    max_file_bytes: int | None = None  # one photo (max_file_mb); None: max_bytes alone
    max_set_bytes: int | None = None  # the photos together (max_set_mb); None: max_bytes alone


def extract_zip(archive: Path, destination: Path, limits: ZipLimits, rules: FileRules = FileRules()) -> None:
    """Extract the set's photos and job.toml from ``archive`` into ``destination``; raise
    SetRefused naming the first bad entry."""
    with open_zip(archive) as opened:
        entries = opened.infolist()
        layout = zip_set_layout(entries, rules)
        _check_entries(entries, layout, limits)
        destination.mkdir(parents=True, exist_ok=True)
        counted = _Counted(limits)
        for folder in layout.folders:
            _make_folder(destination, folder)
        for photo in layout.photos:
            _extract_entry(opened, photo, destination, counted.photo)
        if layout.job_options is not None:
            _extract_entry(opened, layout.job_options, destination, counted.job_options)


def open_zip(archive: Path) -> zipfile.ZipFile:
    """The archive, its central directory read (nothing extracted); SetRefused if it is no zip.

    Each entry's ``file_size`` (declared uncompressed size) bounds what reading it can give:
    ``zipfile`` stops at that many bytes, so an entry holding more fails its CRC check.
    """
    try:
        return zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError) as error:
        raise SetRefused(NOT_A_ZIP, hint=ZIP_HINT) from error


def _check_entries(entries: list[zipfile.ZipInfo], layout: ZipSetLayout, limits: ZipLimits) -> None:
    """Every entry, extracted or not, must be harmless: a link, an encrypted entry or a path
    out of the folder refuses the whole archive. Sizes are those declared, of what is extracted."""
    if len(entries) > limits.max_files:
        raise _refused(
            f"zip archive has {len(entries)} entries, "
            f"over this server's limit of {limits.max_files}", "zip_max_files"
        )
    photos_bytes = sum(photo.entry.file_size for photo in layout.photos)
    job_options = layout.job_options
    declared_bytes = photos_bytes + (job_options.entry.file_size if job_options is not None else 0)
    if declared_bytes > limits.max_bytes:
        raise _refused(
            f"zip archive unpacks to {declared_bytes} bytes, "
            f"over this server's limit of {limits.max_bytes}", "zip_max_bytes"
        )
    if limits.max_file_bytes is not None:
        for photo in layout.photos:
            if photo.entry.file_size > limits.max_file_bytes:
                raise _refused(
                    f"zip entry '{photo.entry.filename}' unpacks to {photo.entry.file_size} bytes; "
                    f"a photo may be at most {limits.max_file_bytes} bytes on this server", "max_file_mb"
                )
    if limits.max_set_bytes is not None and photos_bytes > limits.max_set_bytes:
        raise _refused(
            f"the photos in the zip archive unpack to {photos_bytes} bytes; "
            f"at most {limits.max_set_bytes} bytes are allowed in total on this server", "max_set_mb"
        )
    if job_options is not None and job_options.entry.file_size > JOB_OPTIONS_MAX_BYTES:
        raise SetRefused(JOB_OPTIONS_TOO_LARGE, hint=_JOB_OPTIONS_HINT)
    for entry in entries:
        if is_symlink(entry):
            raise _refused(f"zip entry '{entry.filename}' is a symbolic link; refused")
        if entry.flag_bits & _ENCRYPTED_FLAG:
            raise _refused(f"zip entry '{entry.filename}' is encrypted; refused")
        _check_inside(entry.filename)


class _Counted:
    """Bytes as they come out of the decompressor, against each limit that bounds them: the
    same limits as the declared sizes were checked against, in case the headers lie."""

    def __init__(self, limits: ZipLimits):
        self._limits = limits
        self._all = 0
        self._photos = 0

    def photo(self, item: SetEntry, entry_bytes: int, chunk_bytes: int) -> None:
        """``chunk_bytes`` more of a photo, ``entry_bytes`` of it so far (this chunk included)."""
        limits, name = self._limits, item.entry.filename
        if limits.max_file_bytes is not None and entry_bytes > limits.max_file_bytes:
            raise _refused(
                f"zip entry '{name}' unpacks to more than {limits.max_file_bytes} bytes, more than "
                "its header says; a photo may be at most that on this server", "max_file_mb"
            )
        self._photos += chunk_bytes
        if limits.max_set_bytes is not None and self._photos > limits.max_set_bytes:
            raise _refused(
                f"the photos in the zip archive unpack to more than {limits.max_set_bytes} bytes, "
                f"more than this server allows; stopped at entry '{name}'", "max_set_mb"
            )
        self._add(name, chunk_bytes)

    def job_options(self, item: SetEntry, entry_bytes: int, chunk_bytes: int) -> None:
        if entry_bytes > JOB_OPTIONS_MAX_BYTES:
            raise SetRefused(JOB_OPTIONS_TOO_LARGE, hint=_JOB_OPTIONS_HINT)
        self._add(item.entry.filename, chunk_bytes)

    def _add(self, name: str, chunk_bytes: int) -> None:
        self._all += chunk_bytes
        if self._all > self._limits.max_bytes:
            raise _refused(
                f"zip archive unpacks to more than {self._limits.max_bytes} bytes (zip_max_bytes); "
                f"stopped at entry '{name}'"
            )


def _check_inside(name: str) -> None:
    """The entry's path stays inside the extraction folder, on any operating system."""
    normalised = name.replace("\\", "/")
    absolute = normalised.startswith("/") or _DRIVE_LETTER.match(normalised)
    if absolute or ".." in entry_parts(name):
        raise _refused(
            f"zip entry '{name}' would be written outside the extraction folder; refused"
        )


def _make_folder(destination: Path, folder: SetEntry) -> None:
    try:
        destination.joinpath(*folder.parts).mkdir(parents=True, exist_ok=True)
    except OSError as error:  # a file of the same name
        message = f"zip entry '{folder.entry.filename}' cannot be created: {error.strerror}"
        raise _refused(message) from error


def _extract_entry(
    opened: zipfile.ZipFile, item: SetEntry, destination: Path, count: Callable[[SetEntry, int, int], None]
) -> None:
    """Write one entry, ``count`` told of every chunk before it is written (and raising to stop)."""
    entry = item.entry
    target = destination.joinpath(*item.parts)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        output = open(target, "xb")
    except OSError as error:  # a file and a folder of the same name, a name too long
        message = f"zip entry '{entry.filename}' cannot be created: {error.strerror}"
        raise _refused(message) from error
    with output:
        try:
            with opened.open(entry) as member:
                written = 0
                while chunk := member.read(_CHUNK_BYTES):
                    written += len(chunk)
                    count(item, written, len(chunk))
                    output.write(chunk)
        except NotImplementedError as error:
            message = f"zip entry '{entry.filename}' uses a compression method that cannot be read"
            raise _refused(message) from error
        except (zipfile.BadZipFile, zlib.error, EOFError) as error:
            raise _refused(f"zip entry '{entry.filename}' is corrupt: {error}") from error


def _refused(message: str, setting: str | None = None) -> SetRefused:
    """The refusal for the person; the daemon's ``setting`` behind a limit goes to the journal."""
    if setting is not None:
        log.warning("zip archive refused: over the limit of the setting %s", setting)
    return SetRefused(message, hint=ZIP_HINT)
