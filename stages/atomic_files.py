"""Writes that a reader never sees half-done: temporary name, fsync, rename."""

from __future__ import annotations

import glob
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never a mix."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
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


def remove_temporaries(path: Path) -> int:
    """Remove the temporary files that writes of ``path`` left when their process was killed
    before the rename (``atomic_write_bytes`` names them ``.<name>.<random>.tmp``); returns how
    many. Call it only where this process is the one writer of ``path``."""
    removed = 0
    for leftover in Path(path).parent.glob(f".{glob.escape(Path(path).name)}.*.tmp"):
        try:
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
