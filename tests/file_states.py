"""What "untouched" means for the user's folders and the published ones: every file with its size,
mtime and content hash (and, when asked, every folder with its size and mtime, which a file added
or removed changes). Compare two of them before and after."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_states(root: Path, folders: bool = False) -> dict[str, tuple]:
    states: dict[str, tuple] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            info = path.stat()
            states[str(path.relative_to(root))] = (info.st_size, info.st_mtime_ns,
                                                   hashlib.sha256(path.read_bytes()).hexdigest())
        elif folders:
            info = path.stat()
            states[str(path.relative_to(root))] = (info.st_size, info.st_mtime_ns)
    return states
