"""Writing the site's files: each one atomically, and only when its bytes change.

Unchanged pages are left alone so that rebuilding after every job change costs reads, not
writes, and a web server's caches (ETag, Last-Modified) stay valid.
"""

from __future__ import annotations

from pathlib import Path

# A leaf module of the standard library only: the one place temporary-name-fsync-rename lives.
from stages.atomic_files import atomic_write_bytes


def write_if_changed(path: Path, content: bytes) -> bool:
    """Replace ``path`` with ``content`` unless it already holds exactly that; True if written."""
    try:
        if path.read_bytes() == content:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, content)
    return True
