"""CPU or GPU: the daemon (sizing a job, without torch) and the stages (running it) ask one function."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stages.compute_backend import installed_torch_cuda, training_backend
from tests.daemon_harness import REPO


@pytest.fixture
def driver(tmp_path):
    """A stand-in for /proc/driver/nvidia/version: a GPU machine's kernel module."""
    path = tmp_path / "nvidia-version"
    path.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15\n")
    return path


@pytest.mark.parametrize("setting", ["cpu", "cuda"])
def test_a_backend_the_operator_names_is_taken_as_it_is(setting, tmp_path):
    assert training_backend(setting, driver=tmp_path / "absent", torch_cuda=None) == setting


def test_auto_is_the_gpu_only_with_a_driver_loaded_and_a_pytorch_built_for_cuda(driver, tmp_path):
    assert training_backend("auto", driver=driver, environ={}, torch_cuda="12.8") == "cuda"
    assert training_backend("auto", driver=tmp_path / "absent", environ={}, torch_cuda="12.8") == "cpu"
    assert training_backend("auto", driver=driver, environ={}, torch_cuda=None) == "cpu"  # a CPU build of PyTorch


@pytest.mark.parametrize("hidden", ["", "-1", " "])
def test_auto_is_the_cpu_where_cuda_visible_devices_hides_every_gpu(driver, hidden):
    assert training_backend("auto", driver=driver, environ={"CUDA_VISIBLE_DEVICES": hidden}, torch_cuda="12.8") == "cpu"
    assert training_backend("auto", driver=driver, environ={"CUDA_VISIBLE_DEVICES": "1"}, torch_cuda="12.8") == "cuda"


def test_the_cuda_version_is_read_from_pytorch_without_loading_it():
    probe = ("import sys\nfrom stages.compute_backend import installed_torch_cuda\n"
             "print(repr(installed_torch_cuda()), 'torch' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    import torch

    assert result.stdout.split() == [repr(torch.version.cuda), "False"]
    assert installed_torch_cuda() == torch.version.cuda


def test_auto_agrees_with_pytorch_on_this_machine():
    import torch

    from gaussian_splatting.rasterize import resolve_backend

    assert training_backend("auto") == resolve_backend("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
