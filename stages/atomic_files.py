"""Writes that a reader never sees half-done: temporary name, fsync, rename."""

from __future__ import annotations

import fcntl
import glob
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable

from inbox_protocol.temporary_names import NEW_SUFFIX, TMP_SUFFIX


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never a mix."""
    _replace(Path(path), lambda handle: handle.write(data), mode)


def atomic_write_with(path: Path, write: Callable[[BinaryIO], Any], mode: int = 0o644) -> None:
    """Replace ``path`` with what ``write`` writes into the handle it is given; should ``write``
    raise (a download found wrong before its rename), nothing is left and ``path`` stays as it was."""
    _replace(Path(path), write, mode)


def atomic_copy(source: Path, destination: Path, mode: int = 0o644) -> None:
    """Copy ``source`` over ``destination`` so that readers (a web server) see the old file or the
    whole new one; streamed, so a model of gigabytes never sits in memory."""

    def copy(handle: BinaryIO) -> None:
        with open(source, "rb") as original:
            shutil.copyfileobj(original, handle, 1 << 20)

    _replace(Path(destination), copy, mode)


def _replace(path: Path, write: Callable[[BinaryIO], Any], mode: int) -> None:
    """``write`` into a temporary file beside ``path``, fsync, rename over ``path``.

    The temporary file is named ``.<name>.<random>.tmp`` only once it is locked (flock), and the
    lock holds until it has been renamed to ``path``: so a ``.tmp`` file that nobody holds the lock
    of is provably one whose writer died, which any process may remove (``remove_temporaries``),
    while a write under way, in any process, is never touched. Should the temporary file vanish
    all the same (a sweeper of an older version, without the lock), the write is made once more."""
    try:
        _replace_once(path, write, mode)
    except FileNotFoundError:
        if not path.parent.is_dir():
            raise
        _replace_once(path, write, mode)
    _fsync_directory(path.parent)


def _replace_once(path: Path, write: Callable[[BinaryIO], Any], mode: int) -> None:
    fd, new_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=NEW_SUFFIX, dir=path.parent)
    tmp_name = new_name.removesuffix(NEW_SUFFIX) + TMP_SUFFIX
    try:
        with os.fdopen(fd, "wb") as handle:
            locked = _lock(handle.fileno(), blocking=True)
            if locked:  # a file system without locks keeps the .new name: only age makes it a leftover
                os.rename(new_name, tmp_name)
            else:
                tmp_name = new_name
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
            os.fchmod(handle.fileno(), mode)
            os.replace(tmp_name, path)  # before the file is closed: the lock holds until it has its name
    except BaseException:
        for name in (new_name, tmp_name):
            try:
                os.unlink(name)
            except FileNotFoundError:
                pass
        raise


# A .new file is a leftover only when unlocked and older than this: its writer locks and renames it
# within microseconds, so only a writer killed in that very moment, or a file system without
# locks, leaves one.
STALE_AFTER_SECONDS = 3600.0


def remove_temporaries(path: Path) -> int:
    """Remove the temporary files that writes of ``path`` left when their process was killed
    before the rename (see ``_replace``); returns how many. Only what is provably abandoned goes:
    a ``.tmp`` file no process holds the lock of (a live writer holds it, even one stopped by
    SIGSTOP), or a ``.new`` file unlocked and an hour old. So any process may sweep, whoever else
    writes ``path`` at the same moment."""
    removed = 0
    folder, name = Path(path).parent, glob.escape(Path(path).name)
    for leftover in [*folder.glob(f".{name}.*{TMP_SUFFIX}"), *folder.glob(f".{name}.*{NEW_SUFFIX}")]:
        try:
            fd = os.open(leftover, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:  # gone (renamed into place, or swept by another), or not ours to open
            continue
        try:
            young = time.time() - os.fstat(fd).st_mtime < STALE_AFTER_SECONDS
            if (leftover.name.endswith(NEW_SUFFIX) and young) or not _lock(fd, blocking=False):
                continue  # another writer's, under way
            os.unlink(leftover)
            removed += 1
        except FileNotFoundError:
            pass  # its writer renamed it into place just now
        finally:
            os.close(fd)
    return removed


def _lock(fd: int, blocking: bool) -> bool:
    """An exclusive flock; False if another process holds one, or if the file system cannot lock
    (as some network file systems cannot): then nothing is taken for abandoned on its word."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except OSError:
        return False
    return True


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
