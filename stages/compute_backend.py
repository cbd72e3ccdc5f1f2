"""Whether training runs on the GPU or on the CPU: one answer for the daemon and the stages.

The daemon sizes a job before it runs (the Gaussian cap, so the disk estimate) and the train,
evaluate and publish stages run it; they must agree, and the daemon never imports torch. So
"auto" is decided from what can be read without loading it: an NVIDIA driver loaded in the
kernel, a PyTorch built with CUDA (its ``torch/version.py``), and devices not hidden by
``CUDA_VISIBLE_DEVICES``. PyTorch itself says the same (``torch.cuda.is_available()``) wherever
the driver works; where it does not, training on "cuda" fails with the trainer's own words
instead of quietly taking the CPU's hours.
"""

from __future__ import annotations

import ast
import importlib.util
import os
from pathlib import Path
from typing import Literal, Mapping

Backend = Literal["cpu", "cuda"]
NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")  # present while the kernel module is loaded


def training_backend(setting: str, *, driver: Path = NVIDIA_DRIVER, environ: Mapping[str, str] | None = None,
                     torch_cuda: str | None | bool = False) -> Backend:
    """``setting`` is train_backend: "cpu", "cuda" or "auto". ``torch_cuda``: the CUDA version PyTorch
    was built for (None: a CPU build); by default read from the installed PyTorch."""
    if setting in ("cpu", "cuda"):
        return setting  # type: ignore[return-value]
    environ = os.environ if environ is None else environ
    if not driver.exists() or environ.get("CUDA_VISIBLE_DEVICES", "unset").strip() in ("", "-1"):
        return "cpu"
    built_for = installed_torch_cuda() if torch_cuda is False else torch_cuda
    return "cuda" if built_for else "cpu"


def installed_torch_cuda() -> str | None:
    """The CUDA version the installed PyTorch was built for, None for a CPU build or no PyTorch;
    read from its version.py, which PyTorch's build writes, without importing PyTorch."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    try:
        source = (Path(next(iter(spec.submodule_search_locations))) / "version.py").read_text()
    except OSError:
        return None
    for statement in ast.parse(source).body:
        target = statement.target if isinstance(statement, ast.AnnAssign) else (
            statement.targets[0] if isinstance(statement, ast.Assign) and len(statement.targets) == 1 else None)
        if isinstance(target, ast.Name) and target.id == "cuda" and statement.value is not None:
            value = ast.literal_eval(statement.value)
            return value if isinstance(value, str) and value else None
    return None

