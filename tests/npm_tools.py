"""Test helper: third-party JavaScript tools from npm, installed on first use into a cache outside
the git tree (never committed), once per pinned version.

``splat_transform()`` gives the command line of PlayCanvas's ``splat-transform`` CLI, the parser
behind SuperSplat, which the interoperability tests run on our scene.ply and scene.splat.

Where the packages go: ``$INSTARECON3D_NPM_CACHE`` if set, else
``${XDG_CACHE_HOME:-~/.cache}/instarecon3d/npm/<package>@<version>``. A version is installed by
``npm install`` into a temporary folder beside that one, marked as complete, then renamed into
place; two test processes that race both install and one rename wins, so a reader never sees a
half-installed folder. Install scripts are not run (``--ignore-scripts``: the only one in the
tree, webgpu's postinstall, just clears macOS's quarantine flag) and peer dependencies are left
out (``--omit=peer``: the CLI bundles the playcanvas engine it declares as a peer).

No npm or node: the test is skipped with the apt command that installs them, except under CI
(``$CI`` set), where a missing tool fails the run instead of hiding the test. npm failing (no
network, no such version) fails the test with the tail of npm's stderr.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.required_tools import require_program

SPLAT_TRANSFORM = "@playcanvas/splat-transform"
# The newest release whose package.json still allows Node 18 (engines: node >=18.0.0), the nodejs
# of Debian 12, which CI installs with apt; 3.x requires Node >= 22.
SPLAT_TRANSFORM_VERSION = "2.7.1"

APT_HINT = "apt-get install nodejs npm"
MARKER = ".instarecon3d-installed.json"  # written last, inside the folder, before the rename
INSTALL_TIMEOUT_S = 600
PARTIAL_PREFIX = ".partial-"
STALE_PARTIAL_S = 24 * 3600  # a partial folder this old was left by a killed run


def cache_root() -> Path:
    override = os.environ.get("INSTARECON3D_NPM_CACHE")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "instarecon3d" / "npm"


def require_tool(name: str) -> str:
    return require_program(name, "nodejs npm", "the interoperability test installs splat-transform with npm")


def npm_package(package: str, version: str) -> Path:
    """The folder of ``package`` at exactly ``version`` (node_modules/<package>), installing it
    into the cache on first use."""
    folder = cache_root() / f"{package.replace('/', '+')}@{version}"
    if not _complete(folder, package, version):
        _install(folder, package, version)
    return folder / "node_modules" / package


def package_bin(package_dir: Path, name: str | None = None) -> Path:
    """The script a package's ``bin`` field names (the only one, or the one called ``name``)."""
    manifest = json.loads((package_dir / "package.json").read_text())
    bins = manifest.get("bin")
    if isinstance(bins, str):
        bins = {manifest["name"].split("/")[-1]: bins}
    if not bins:
        raise RuntimeError(f"{manifest['name']} declares no CLI (no bin field)")
    script = bins[name] if name else next(iter(bins.values()))
    return package_dir / script


def splat_transform() -> list[str]:
    """argv prefix that runs the pinned ``splat-transform`` CLI: [node, .../bin/cli.mjs]."""
    node = require_tool("node")
    package_dir = npm_package(SPLAT_TRANSFORM, SPLAT_TRANSFORM_VERSION)
    return [node, str(package_bin(package_dir, "splat-transform"))]


def _complete(folder: Path, package: str, version: str) -> bool:
    marker = folder / MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get(package) == version
    except (OSError, ValueError):
        return False


def _install(folder: Path, package: str, version: str) -> None:
    npm = require_tool("npm")
    require_tool("node")
    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(folder.parent)
    partial = Path(tempfile.mkdtemp(prefix=f"{PARTIAL_PREFIX}{folder.name}-", dir=folder.parent))
    os.chmod(partial, 0o755)  # mkdtemp makes it private; the cache is readable like any other
    try:
        command = [
            npm, "install", "--no-save", "--no-audit", "--no-fund", "--ignore-scripts", "--omit=peer",
            "--prefix", str(partial), f"{package}@{version}",
        ]  # fmt: skip
        env = dict(os.environ, npm_config_update_notifier="false")
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, env=env, timeout=INSTALL_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as error:
            stderr = error.stderr.decode(errors="replace") if isinstance(error.stderr, bytes) else error.stderr
            pytest.fail(
                f"`{' '.join(command)}` did not finish in {INSTALL_TIMEOUT_S} s:\n{_tail(stderr or '')}",
                pytrace=False,
            )
        if result.returncode != 0:
            pytest.fail(
                f"`{' '.join(command)}` failed (exit {result.returncode}); npm's stderr ends:\n"
                f"{_tail(result.stderr)}",
                pytrace=False,
            )
        installed = _installed_versions(partial / "node_modules")
        if installed.get(package) != version:
            pytest.fail(f"npm installed {package}@{installed.get(package)}, not {version}", pytrace=False)
        (partial / MARKER).write_text(json.dumps(installed, indent=1, sort_keys=True) + "\n")
        _move_into_place(partial, folder, package, version)
    finally:
        shutil.rmtree(partial, ignore_errors=True)  # gone already when the rename succeeded


def _move_into_place(partial: Path, folder: Path, package: str, version: str) -> None:
    for _ in range(2):
        try:
            os.rename(partial, folder)
            return
        except OSError:
            if _complete(folder, package, version):
                return  # another process got there first; its copy is as good as ours
            if folder.exists():  # left incomplete (no marker) by hand or an old helper: replace it
                stale = folder.with_name(f"{PARTIAL_PREFIX}stale-{folder.name}-{os.getpid()}")
                try:
                    os.rename(folder, stale)
                except OSError:
                    pass
                shutil.rmtree(stale, ignore_errors=True)
    raise RuntimeError(f"could not move the npm install {partial} to {folder}")


def _installed_versions(node_modules: Path) -> dict[str, str]:
    """name -> version of every package npm put in node_modules (scoped ones included)."""
    versions = {}
    for manifest in list(node_modules.glob("*/package.json")) + list(node_modules.glob("@*/*/package.json")):
        data = json.loads(manifest.read_text())
        versions[data["name"]] = data["version"]
    return versions


def _remove_stale_partials(parent: Path) -> None:
    for path in parent.glob(f"{PARTIAL_PREFIX}*"):
        try:
            if time.time() - path.stat().st_mtime > STALE_PARTIAL_S:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass  # removed by a racing process


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
