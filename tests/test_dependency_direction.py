"""Dependencies point one way: daemon -> stages -> trainer, daemon -> site_builder, and the daemon and
the stages -> inbox_protocol. The site builder turns plain data into files and knows nothing of the
daemon, the job store or torch; the trainer runs alone, without the daemon or the stages; the inbox
protocol (what a set is) is read by the daemon and by ingest alike, so it knows neither. Checked on what a fresh interpreter has loaded after
importing every module of the package (so an import hidden in a helper module counts too)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon_harness import REPO

PACKAGES = {
    # package: (its folder, the top-level packages it must never load)
    "site_builder": (REPO / "site_builder", ("daemon", "torch", "sqlalchemy")),
    "gaussian_splatting": (REPO / "gaussian-splatting" / "gaussian_splatting", ("daemon", "stages", "site_builder")),
    "inbox_protocol": (REPO / "inbox_protocol",
                       ("daemon", "stages", "site_builder", "gaussian_splatting", "torch", "sqlalchemy")),
}


def _modules(package: str, folder: Path) -> list[str]:
    return [package] + [f"{package}.{path.stem}" for path in sorted(folder.glob("*.py"))
                        if path.stem not in ("__init__", "__main__")]


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_never_loads_what_depends_on_it(package):
    folder, forbidden = PACKAGES[package]
    probe = (
        "import importlib, sys\n"
        f"for name in {_modules(package, folder)!r}: importlib.import_module(name)\n"
        f"print(','.join(sorted({{m.split('.')[0] for m in sys.modules}} & {set(forbidden)!r})))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True,
                            env={"PYTHONPATH": f"{REPO}:{REPO / 'gaussian-splatting'}", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "", f"{package} loads {result.stdout.strip()}"
