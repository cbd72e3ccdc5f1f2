"""Job ids: readable, URL- and file-name-safe, one per set and attempt, never two sets' alike.

``<slug>-<attempt>``. The slug is the set's name where that is already safe; otherwise the name
cleaned, a dash and a hash of the exact name (bytes that are not UTF-8 included). A safe name that
itself ends in a dash and six (or sixteen) hex digits (``my-set-35db3f``) could pass for the cleaned
form of another name (``my set``), so it is hashed as well: a slug ending so always carries its own
name's hash. Two names can then share a slug only if their hashes collide; the job store
notices that and asks for a longer hash (``digits``).

A private job's outbox folder is not its id, which anyone can guess from a set's name, but the id,
a dot and a page key of ``PAGE_KEY_BYTES`` random bytes from ``secrets`` (32 hex digits): its link is
as hard to guess as a 128-bit key. No job id can take that form (an id ends in a dash and the
attempt number; after its last dash, a private folder's name has a dot).
"""

from __future__ import annotations

import hashlib
import re
import secrets

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
SHORT_HASH_DIGITS = 6
LONG_HASH_DIGITS = 16
PAGE_KEY_BYTES = 16  # 128 bits
_LOOKS_HASHED = re.compile(rf"-([0-9a-f]{{{SHORT_HASH_DIGITS}}}|[0-9a-f]{{{LONG_HASH_DIGITS}}})$")


def set_slug(set_name: str, digits: int = SHORT_HASH_DIGITS) -> str:
    cleaned = _UNSAFE.sub("-", set_name).strip("-.") or "set"
    cleaned = cleaned[:80]
    if cleaned == set_name and not _LOOKS_HASHED.search(set_name) and digits == SHORT_HASH_DIGITS:
        return cleaned
    digest = hashlib.sha256(set_name.encode("utf-8", "surrogateescape")).hexdigest()[:digits]
    return f"{cleaned}-{digest}"


def job_id_for(set_name: str, attempt: int, digits: int = SHORT_HASH_DIGITS) -> str:
    return f"{set_slug(set_name, digits)}-{attempt}"


def new_page_key() -> str:
    return secrets.token_hex(PAGE_KEY_BYTES)


def outbox_folder_name(job_id: str, page_key: str | None) -> str:
    """A job's folder in the outbox: its id, or with a page key (a private job) ``<id>.<page_key>``."""
    return job_id if page_key is None else f"{job_id}.{page_key}"
