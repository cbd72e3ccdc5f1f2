"""Which pycolmap this host has: `instarecon doctor` names the build (pycolmap or its CUDA twin
pycolmap-cuda12, which deploy/install.sh installs where nvidia-smi lists a GPU) and whether it
runs SIFT on CUDA, asking a child Python, as the daemon never imports pycolmap."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pycolmap
import pytest

from daemon.doctor import check_pycolmap
from tests.daemon_harness import make_layout, run_cli

BUILD = importlib.metadata.packages_distributions()["pycolmap"][0]
VERSION = importlib.metadata.version(BUILD)


def test_doctor_says_which_pycolmap_build_is_installed(tmp_path):
    doctor = run_cli(make_layout(tmp_path), "doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    lines = [line.split(None, 1) for line in doctor.stdout.splitlines() if "pycolmap build" in line]
    kind = "(CUDA build): SIFT and matching on the GPU" if pycolmap.has_cuda else "(CPU build)"
    assert len(lines) == 1 and lines[0][0] in ("ok", "note"), doctor.stdout
    assert lines[0][1].split("pycolmap build", 1)[1].strip().startswith(f"{BUILD} {VERSION} {kind}")


@pytest.mark.skipif(pycolmap.has_cuda, reason="this pycolmap is the CUDA build")
def test_the_cpu_build_on_a_host_with_an_nvidia_driver_is_a_note(tmp_path):
    driver = tmp_path / "version"  # what /proc/driver/nvidia/version is while the module is loaded
    driver.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15\n")
    finding = check_pycolmap(driver=driver)
    assert (finding.ok, finding.required) == (False, False)
    assert finding.detail == (f"{BUILD} {VERSION} (CPU build): SfM runs on the CPU although an NVIDIA driver is "
                              "loaded; pycolmap-cuda12 (extra sfm-cuda) runs it on the GPU")
    assert check_pycolmap(driver=tmp_path / "absent").ok


def test_a_pycolmap_that_does_not_load_fails_with_its_last_words(tmp_path):
    """A Python that cannot import it (here a bare virtual environment) stands for a broken
    install: the service's Python would fail the same way in the sfm stage."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True, timeout=120)
    finding = check_pycolmap(python=str(tmp_path / "bare" / "bin" / "python"))
    assert (finding.ok, finding.required) == (False, True)
    assert finding.detail == (f"{BUILD} {VERSION} does not load: ModuleNotFoundError: No module named 'pycolmap'")
