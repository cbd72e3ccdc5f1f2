"""Writes that a reader never sees half-done: temporary name, fsync, rename."""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never a mix."""
    _replace(Path(path), lambda handle: handle.write(data), mode)


def atomic_copy(source: Path, destination: Path, mode: int = 0o644) -> None:
    """Copy ``source`` over ``destination`` so that readers (a web server) see the old file or the
    whole new one; streamed, so a model of gigabytes never sits in memory."""

    def copy(handle: BinaryIO) -> None:
        with open(source, "rb") as original:
            shutil.copyfileobj(original, handle, 1 << 20)

    _replace(Path(destination), copy, mode)


def _replace(path: Path, write: Callable[[BinaryIO], Any], mode: int) -> None:
    """``write`` into a temporary file beside ``path``, fsync, rename over ``path``."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(path.parent)


def remove_temporaries(path: Path, older_than_seconds: float = 0.0) -> int:
    """Remove the temporary files that writes of ``path`` left when their process was killed
    before the rename (``atomic_write_bytes`` names them ``.<name>.<random>.tmp``); returns how
    many. Call it only where this process is the one writer of ``path``, or, where other
    processes write it too, with ``older_than_seconds`` well beyond the time one write takes."""
    removed = 0
    for leftover in Path(path).parent.glob(f".{glob.escape(Path(path).name)}.*.tmp"):
        try:
            if older_than_seconds and time.time() - leftover.stat().st_mtime < older_than_seconds:
                continue  # another writer's, under way
            leftover.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def atomic_write_json(path: Path, document: Any) -> None:
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    # File names that are not valid UTF-8 reach us as lone surrogates; backslashreplace
    # turns them into \udcXX escapes, which are valid JSON and read back the same.
    atomic_write_bytes(path, text.encode("utf-8", "backslashreplace"))


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable; some filesystems (SMB, FUSE) refuse and that is fine."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
