"""The names a file takes while the daemon writes it (stages/atomic_files.py): whoever lists a folder
that the daemon writes into (the inbox's walk, its watcher) must not take them for the user's files."""

from __future__ import annotations

import re

TMP_SUFFIX = ".tmp"  # a temporary file its writer has locked: unlocked, it is a leftover
NEW_SUFFIX = ".new"  # one created a moment ago and not locked yet (or on a file system without locks)


def temporary_name_pattern(name_pattern: str) -> str:
    """A regular expression for the temporary names that writes of files whose names match
    ``name_pattern`` (a regular expression) take: for whoever lists a folder and must not count
    them (the inbox's walk, its watcher)."""
    suffixes = "|".join(re.escape(suffix) for suffix in (TMP_SUFFIX, NEW_SUFFIX))
    return rf"^\.{name_pattern}\..+({suffixes})$"
