"""Unpack a photo set sent as a .zip, refusing archives that could escape or flood the disk.

Every entry is checked before anything is written, so a bad archive leaves no files.
Header sizes are only a first check: bytes are counted again as they are written, because
a zip bomb's headers can lie.
"""

from __future__ import annotations

import re
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from stages.base import StageFailed

NOT_A_ZIP = "not a valid zip archive (truncated or still being copied?)"
_HINT = "re-create the archive with a standard zip tool, or drop the photos in as a plain folder"
_CHUNK_BYTES = 1024 * 1024
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
_ENCRYPTED_FLAG = 0x1


@dataclass(frozen=True)
class ZipLimits:
    max_files: int  # entries, folders included
    max_bytes: int  # uncompressed bytes, all entries together


def extract_zip(archive: Path, destination: Path, limits: ZipLimits) -> None:
    """Extract ``archive`` into ``destination``; raise StageFailed naming the first bad entry."""
    with open_zip(archive) as opened:
        entries = opened.infolist()
        targets = _checked_targets(entries, destination, limits)
        destination.mkdir(parents=True, exist_ok=True)
        written = 0
        for entry, target in zip(entries, targets):
            written = _extract_entry(opened, entry, target, written, limits.max_bytes)


def open_zip(archive: Path) -> zipfile.ZipFile:
    """The archive, its central directory read (nothing extracted); StageFailed if it is no zip.

    Each entry's ``file_size`` (declared uncompressed size) bounds what reading it can give:
    ``zipfile`` stops at that many bytes, so an entry holding more fails its CRC check.
    """
    try:
        return zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, EOFError) as error:
        raise StageFailed(NOT_A_ZIP, hint=_HINT) from error


def entry_parts(name: str) -> tuple[str, ...]:
    """The path components an entry's name extracts to: 'a\\b//./c.jpg' -> ('a', 'b', 'c.jpg')."""
    normalised = name.replace("\\", "/")  # some Windows tools write backslashes
    return tuple(part for part in normalised.split("/") if part not in ("", "."))


def _checked_targets(
    entries: list[zipfile.ZipInfo], destination: Path, limits: ZipLimits
) -> list[Path]:
    if len(entries) > limits.max_files:
        raise _refused(
            f"zip archive has {len(entries)} entries, "
            f"over the limit of {limits.max_files} (zip_max_files)"
        )
    declared_bytes = sum(entry.file_size for entry in entries)
    if declared_bytes > limits.max_bytes:
        raise _refused(
            f"zip archive unpacks to {declared_bytes} bytes, "
            f"over the limit of {limits.max_bytes} (zip_max_bytes)"
        )
    targets = []
    for entry in entries:
        if stat.S_ISLNK(entry.external_attr >> 16):
            raise _refused(f"zip entry '{entry.filename}' is a symbolic link; refused")
        if entry.flag_bits & _ENCRYPTED_FLAG:
            raise _refused(f"zip entry '{entry.filename}' is encrypted; refused")
        targets.append(destination.joinpath(*_safe_parts(entry.filename)))
    return targets


def _safe_parts(name: str) -> tuple[str, ...]:
    """Path components that stay inside the extraction folder, on any operating system."""
    normalised = name.replace("\\", "/")
    parts = entry_parts(name)
    absolute = normalised.startswith("/") or _DRIVE_LETTER.match(normalised)
    if absolute or ".." in parts:
        raise _refused(
            f"zip entry '{name}' would be written outside the extraction folder; refused"
        )
    return parts


def _extract_entry(
    opened: zipfile.ZipFile, entry: zipfile.ZipInfo, target: Path, written: int, max_bytes: int
) -> int:
    """Write one entry and return the running total of bytes written."""
    try:
        if entry.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            return written
        target.parent.mkdir(parents=True, exist_ok=True)
        output = open(target, "xb")
    except OSError as error:  # a file and a folder of the same name, a name too long
        message = f"zip entry '{entry.filename}' cannot be created: {error.strerror}"
        raise _refused(message) from error
    with output:
        try:
            with opened.open(entry) as member:
                while chunk := member.read(_CHUNK_BYTES):
                    written += len(chunk)
                    if written > max_bytes:
                        raise _refused(
                            f"zip archive unpacks to more than {max_bytes} bytes (zip_max_bytes); "
                            f"stopped at entry '{entry.filename}'"
                        )
                    output.write(chunk)
        except NotImplementedError as error:
            message = f"zip entry '{entry.filename}' uses a compression method that cannot be read"
            raise _refused(message) from error
        except (zipfile.BadZipFile, zlib.error, EOFError) as error:
            raise _refused(f"zip entry '{entry.filename}' is corrupt: {error}") from error
    return written


def _refused(message: str) -> StageFailed:
    return StageFailed(message, hint=_HINT)
