"""``instarecon doctor``: is this machine ready to run the pipeline? Names what to fix."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import subprocess
import sys
from dataclasses import dataclass

from daemon.config import ConfigError, Settings, check_folders
from stages.registry import PIPELINE

MIN_FREE_GB = 2.0

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


def check_folders_and_space(settings: Settings) -> list[Finding]:
    try:
        check_folders(settings)
    except ConfigError as error:
        return [Finding(False, "folders", str(error), "create the folder or fix the setting; see deploy/instarecon.example.toml")]
    findings = [Finding(True, "folders", f"inbox {settings.inbox}, outbox {settings.outbox}, state {settings.state}")]
    for name, folder in (("state", settings.state), ("outbox", settings.outbox)):
        free_gb = shutil.disk_usage(folder).free / 1024**3
        ok = free_gb >= MIN_FREE_GB
        findings.append(Finding(ok, f"free disk ({name})", f"{free_gb:.1f} GB free in {folder}",
                                f"free space: at least {MIN_FREE_GB:g} GB are needed"))
    return findings


def check_gpu() -> Finding:
    """Asks nvidia-smi rather than importing torch: doctor stays as light as the daemon."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return Finding(False, "gpu", "no NVIDIA GPU found (nvidia-smi missing): stages run on the CPU, slowly", required=False)
    try:
        output = subprocess.run(
            [smi, "--query-gpu=name,driver_version,memory.free,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout.strip()
    except (subprocess.SubprocessError, OSError) as error:
        return Finding(False, "gpu", f"nvidia-smi failed: {error}", "check the NVIDIA driver (nvidia-smi)")
    return Finding(bool(output), "gpu", output or "nvidia-smi lists no GPU", "check the NVIDIA driver")


def run_doctor(settings: Settings) -> int:
    findings = [check_python(), *check_modules(), *check_folders_and_space(settings), check_gpu()]
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
