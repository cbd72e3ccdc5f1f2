"""The daemon process never imports the heavy libraries its stages use."""

from __future__ import annotations

import subprocess
import sys

from tests.daemon_harness import REPO

HEAVY = ("torch", "PIL", "numpy", "pycolmap", "gsplat", "numba")


def test_daemon_modules_import_no_heavy_library():
    probe = (
        "import sys\n"
        "import daemon.cli, daemon.service, daemon.doctor, daemon.run.runner, daemon.intake.set_intake\n"
        "import stages.registry, stages.child\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
