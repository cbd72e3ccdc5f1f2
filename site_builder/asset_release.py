"""The site's static files (style, scripts, the viewer), copied from the package into
``<outbox>/assets/<version>/``, where version is a hash of their content: a browser or proxy
may cache them for ever, and never mixes modules of two releases (the viewer's modules import
each other by relative URL, which a ``?v=`` on the page's link would not reach)."""

from __future__ import annotations

import hashlib
import shutil
from functools import cache
from pathlib import Path

from site_builder.site_files import write_if_changed

PACKAGE_ASSETS = Path(__file__).resolve().parent / "assets"
ASSETS_FOLDER = "assets"


def asset_files() -> list[Path]:
    return sorted(path for path in PACKAGE_ASSETS.rglob("*") if path.is_file() and "__pycache__" not in path.parts)


@cache
def asset_version() -> str:
    """Short hash of every asset's name and bytes."""
    digest = hashlib.sha256()
    for path in asset_files():
        digest.update(path.relative_to(PACKAGE_ASSETS).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def assets_url(root: str) -> str:
    """The assets' folder as a page ``root`` ("" or "../") sees it, without a trailing slash."""
    return f"{root}{ASSETS_FOLDER}/{asset_version()}"


def install_assets(outbox: Path) -> int:
    """Copy this release's assets into the outbox, leaving files already there alone; returns how
    many were written."""
    target = outbox / ASSETS_FOLDER / asset_version()
    return sum(write_if_changed(target / path.relative_to(PACKAGE_ASSETS), path.read_bytes()) for path in asset_files())


def remove_other_releases(outbox: Path) -> int:
    """Remove the asset folders of other releases (once every page names this one's); returns how many."""
    removed = 0
    root = outbox / ASSETS_FOLDER
    for folder in root.iterdir() if root.is_dir() else ():
        if folder.name != asset_version() and not folder.name.startswith("."):
            shutil.rmtree(folder) if folder.is_dir() and not folder.is_symlink() else folder.unlink()
            removed += 1
    return removed
