"""Job ids: readable, URL- and file-name-safe, one per set and attempt."""

from __future__ import annotations

import hashlib
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def set_slug(set_name: str) -> str:
    """The set name where it is already safe; otherwise a cleaned name plus a short hash,
    so that two names that clean to the same text still get different ids."""
    cleaned = _UNSAFE.sub("-", set_name).strip("-.") or "set"
    cleaned = cleaned[:80]
    if cleaned == set_name:
        return cleaned
    digest = hashlib.sha256(set_name.encode("utf-8", "surrogateescape")).hexdigest()[:6]
    return f"{cleaned}-{digest}"


def job_id_for(set_name: str, attempt: int) -> str:
    return f"{set_slug(set_name)}-{attempt}"
