"""Programs the tests take from Debian's packages. A test without one skips, naming the package;
under CI ($CI set) it fails instead, because CI installs them all and must run every test."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn, Sequence

import pytest


def missing(message: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must install it", pytrace=False)
    pytest.skip(message)


def require_program(name: str, package: str, purpose: str, also_look_in: Sequence[str] = ()) -> str:
    """The program's path (``name`` on PATH, or one of ``also_look_in``: /usr/sbin is not on every PATH)."""
    path = shutil.which(name) or next((p for p in also_look_in if os.access(p, os.X_OK)), None)
    if path is None:
        missing(f"{name} is missing: {purpose} (apt-get install {package})")
    return path
