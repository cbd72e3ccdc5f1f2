"""``instarecon doctor``: is this machine ready to run the pipeline? Names what to fix."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from daemon.config import ConfigError, Settings, check_folders
from daemon.run.disk_guard import GB, free_bytes
from stages import lpips_weights
from stages.compute_backend import NVIDIA_DRIVER
from stages.gpu_watch import NvmlUnavailable, describe_error, find_device, initialise, load_nvml, text
from stages.registry import PIPELINE

# import name -> distribution name, for the version shown
_CORE_MODULES = {
    "watchdog": "watchdog",
    "PIL": "pillow",
    "numpy": "numpy",
    "sqlalchemy": "sqlalchemy",
    "alembic": "alembic",
    "apscheduler": "apscheduler",
    "jsonschema": "jsonschema",
}
_OPTIONAL_MODULES = {
    "systemd": ("systemd-python", "journal fields JOB_ID/SET_NAME/STAGE (pip install 'instarecon3d[systemd]')"),
    "pillow_heif": ("pillow-heif", "HEIC photos from phones (pip install 'instarecon3d[heic]')"),
}


@dataclass(frozen=True)
class Finding:
    ok: bool
    what: str
    detail: str
    fix: str = ""
    required: bool = True


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def check_python() -> Finding:
    ok = sys.version_info >= (3, 11)
    return Finding(ok, "python", sys.version.split()[0], "" if ok else "install Python 3.11 or newer")


def check_modules() -> list[Finding]:
    findings = []
    stage_needs = {module: spec.name for spec in PIPELINE for module in spec.requires}
    for module, distribution in _CORE_MODULES.items():
        present = importlib.util.find_spec(module) is not None
        findings.append(Finding(present, f"package {distribution}", _version(distribution) if present else "missing",
                                f"pip install {distribution}"))
    for module, stage in stage_needs.items():
        if module in _CORE_MODULES:
            continue
        present = importlib.util.find_spec(module) is not None
        findings.append(Finding(present, f"module {module} (stage {stage})", "present" if present else "missing",
                                f"install the package that provides {module}"))
    for module, (distribution, purpose) in _OPTIONAL_MODULES.items():
        present = importlib.util.find_spec(module) is not None
        findings.append(Finding(present, f"optional {distribution}", _version(distribution) if present else f"missing: {purpose}",
                                required=False))
    return findings


# the two builds of the module pycolmap (pyproject.toml's sfm and sfm-cuda extras)
PYCOLMAP_BUILDS = ("pycolmap", "pycolmap-cuda12")
_ASK_PYCOLMAP = "import pycolmap; print(int(pycolmap.has_cuda))"


def check_pycolmap(python: str = sys.executable, driver: Path = NVIDIA_DRIVER) -> Finding | None:
    """Which build of pycolmap is installed, and whether it has CUDA (asked of a child Python:
    the doctor does not import pycolmap, as the daemon does not). None when there is none: the
    module check says so."""
    installed = sorted(set(importlib.metadata.packages_distributions().get("pycolmap", ())))
    if not installed:
        return None
    builds = ", ".join(f"{name} {_version(name)}" for name in installed)
    if len(installed) > 1:
        return Finding(False, "pycolmap build", f"{builds}: both write the module pycolmap, so one has overwritten "
                                                "the other's files",
                       "pip uninstall both, then deploy/install.sh installs the one for this host")
    try:
        child = subprocess.run([python, "-c", _ASK_PYCOLMAP], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        child = None
    if child is None or child.returncode != 0:
        words = "no answer in 120 s" if child is None else (child.stderr.strip().splitlines() or ["?"])[-1]
        return Finding(False, "pycolmap build", f"{builds} does not load: {words}",
                       "reinstall it (deploy/install.sh), or the CPU build pycolmap where there is no NVIDIA driver")
    if child.stdout.strip() == "1":
        return Finding(True, "pycolmap build", f"{builds} (CUDA build): SIFT and matching on the GPU")
    detail = f"{builds} (CPU build)"
    if driver.exists():  # a GPU host with the CPU build: it works, at CPU speed
        return Finding(False, "pycolmap build", f"{detail}: SfM runs on the CPU although an NVIDIA driver is loaded; "
                                                "pycolmap-cuda12 (extra sfm-cuda) runs it on the GPU", required=False)
    return Finding(True, "pycolmap build", detail)


def check_folders_and_space(settings: Settings) -> list[Finding]:
    try:
        check_folders(settings)
    except ConfigError as error:
        return [Finding(False, "folders", str(error), "create the folder or fix the setting; see deploy/instarecon.example.toml")]
    findings = [Finding(True, "folders", f"inbox {settings.inbox}, outbox {settings.outbox}, state {settings.state}")]
    for name, folder in (("state", settings.state), ("outbox", settings.outbox)):
        free_gb = free_bytes(folder) / GB  # as the daemon's disk guard counts it
        ok = free_gb >= settings.min_free_gb
        findings.append(Finding(ok, f"free disk ({name})", f"{free_gb:.1f} GB free in {folder}",
                                f"free space: no stage starts below min_free_gb = {settings.min_free_gb:g} GB"))
    return findings


def check_lpips_weights(settings: Settings) -> Finding:
    """Both files in the folder, each of the pinned SHA-256. Not required: without them only LPIPS is off."""
    folder = settings.lpips_weights_dir
    found = lpips_weights.problems(folder)
    if not found:
        return Finding(True, "lpips weights", f"{lpips_weights.ALEXNET.name} and {lpips_weights.LINEAR.name} in {folder}, "
                                              "checksums match")
    return Finding(False, "lpips weights", f"{'; '.join(found)}: LPIPS is off; `{lpips_weights.FETCH_COMMAND}` "
                                           "fetches them", required=False)


def check_gpu(train_backend: str, nvml: Any = None, environ: Mapping[str, str] | None = None) -> list[Finding]:
    """The NVIDIA driver and each GPU, through NVML (never torch: doctor stays as light as the
    daemon). Required only where ``train_backend = "cuda"``; otherwise a missing GPU is a note.
    ``nvml`` stands in for pynvml in the tests."""
    needed = train_backend == "cuda"
    fix = 'install the NVIDIA driver (nvidia-smi must list the GPU), or set train_backend = "auto"'
    try:
        if nvml is None:
            nvml = load_nvml()
        else:
            initialise(nvml)
    except NvmlUnavailable as error:
        if needed:
            return [Finding(False, "gpu", f'{error}: train_backend = "cuda" needs an NVIDIA GPU', fix)]
        return [Finding(False, "gpu", f"{error}: training runs on the CPU", required=False)]
    try:
        return _gpu_findings(nvml, train_backend, fix, environ)
    except nvml.NVMLError as error:
        return [Finding(False, "gpu", describe_error(error), fix, required=needed)]
    finally:
        try:
            nvml.nvmlShutdown()
        except nvml.NVMLError:
            pass


def _gpu_findings(nvml: Any, train_backend: str, fix: str, environ: Mapping[str, str] | None) -> list[Finding]:
    needed = train_backend == "cuda"
    outcome = 'train_backend = "cuda" cannot train' if needed else "training runs on the CPU"
    cuda = nvml.nvmlSystemGetCudaDriverVersion()  # 12040 is CUDA 12.4
    findings = [Finding(True, "gpu driver", f"NVIDIA {text(nvml.nvmlSystemGetDriverVersion())}, "
                                            f"CUDA {cuda // 1000}.{cuda % 1000 // 10}")]
    count = nvml.nvmlDeviceGetCount()
    if count == 0:
        return [*findings, Finding(False, "gpu", f"the NVIDIA driver lists no GPU: {outcome}", fix,
                                   required=needed)]
    for index in range(count):
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            detail = (f"{text(nvml.nvmlDeviceGetName(handle))}, {memory.free / 1024**3:.1f} GiB free of "
                      f"{memory.total / 1024**3:.1f} GiB, {text(nvml.nvmlDeviceGetUUID(handle))}")
            findings.append(Finding(True, f"gpu {index}", detail))
        except nvml.NVMLError as error:
            findings.append(Finding(False, f"gpu {index}", describe_error(error), "check the GPU with nvidia-smi",
                                    required=needed))
    if train_backend == "cpu":
        return [*findings, Finding(True, "gpu for training", 'none: train_backend = "cpu"')]
    try:
        device = find_device(nvml, environ)
    except LookupError as error:
        findings.append(Finding(False, "gpu for training", f"{error}: {outcome}",
                                "fix CUDA_VISIBLE_DEVICES in the service's environment", required=needed))
    else:
        which = "gpu" if device.index is None else f"gpu {device.index}"
        findings.append(Finding(True, "gpu for training", f"{which} ({device.name})"))
    return findings


def run_doctor(settings: Settings) -> int:
    pycolmap_build = check_pycolmap()
    findings = [check_python(), *check_modules(), *([pycolmap_build] if pycolmap_build else []),
                *check_folders_and_space(settings),
                *check_gpu(settings.train_backend), check_lpips_weights(settings)]
    problems = [f for f in findings if f.required and not f.ok]
    width = max(len(f.what) for f in findings)
    for finding in findings:
        mark = "ok  " if finding.ok else ("FAIL" if finding.required else "note")
        print(f"{mark}  {finding.what.ljust(width)}  {finding.detail}")
    if problems:
        print()
        print("to fix:")
        for finding in problems:
            print(f"- {finding.what}: {finding.fix or finding.detail}")
        return 1
    print()
    print(f"all required checks passed; database {settings.resolved_database_url}")
    return 0
