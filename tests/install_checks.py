"""Helpers for the service installation tests: systemd's tools (skipped where missing, required
under CI), the unit file read as systemd reads it, and a tree's snapshot (content and mtimes)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

from tests.required_tools import require_program

REPO = Path(__file__).resolve().parents[1]
SYSTEMD = REPO / "deploy" / "systemd"
UNIT = SYSTEMD / "instarecon.service"
SYSUSERS = SYSTEMD / "instarecon.sysusers"
TMPFILES = SYSTEMD / "instarecon.tmpfiles"
GPU_DROPIN = SYSTEMD / "instarecon@.service.d" / "gpu.conf"  # with UNIT as instarecon@.service: one daemon per GPU
GPU_SERVICES_SH = REPO / "deploy" / "gpu-services.sh"
EXAMPLE_CONFIG = REPO / "deploy" / "instarecon.example.toml"
INSTALL_SH = REPO / "deploy" / "install.sh"
EXEC_BINARY = "/opt/instarecon/venv/bin/instarecon"
MAX_EXPOSURE = 2.0


def systemd_tool(name: str) -> str:
    return require_program(name, "systemd", "the unit checks need systemd's tools")


def unit_settings(text: str) -> dict[str, dict[str, list[str]]]:
    """section -> key -> every value in order, as systemd reads a unit (a key may repeat;
    an empty assignment resets the list, which is kept here as an empty string)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"setting outside a section: {raw!r}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def verify_unit(unit_text: str, folder: Path, exec_binary: Path) -> str:
    """`systemd-analyze verify` on the unit with ExecStart's program at ``exec_binary`` (it checks
    that the program exists): returns everything it printed, which must be nothing. It exits 0 on
    many mistakes (an unknown key, a typo in a value), so the output is what counts."""
    analyze = systemd_tool("systemd-analyze")
    assert EXEC_BINARY in unit_text
    folder.mkdir(parents=True, exist_ok=True)
    unit = folder / "instarecon.service"  # verify wants the unit's real name
    unit.write_text(unit_text.replace(EXEC_BINARY, str(exec_binary)))
    result = subprocess.run([analyze, "verify", "--man=no", "--generators=no", str(unit)],
                            capture_output=True, text=True, timeout=120)
    return (result.stdout + result.stderr).strip() + ("" if result.returncode == 0 else f"\n(exit {result.returncode})")


def gpu_template(folder: Path, exec_binary: str = EXEC_BINARY, dropin_text: str | None = None) -> Path:
    """``folder`` holding the unit as the template instarecon@.service with its drop-in, as
    install.sh installs them (ExecStart's program at ``exec_binary``), for SYSTEMD_UNIT_PATH."""
    (folder / "instarecon@.service.d").mkdir(parents=True, exist_ok=True)
    (folder / "instarecon@.service").write_text(UNIT.read_text().replace(EXEC_BINARY, exec_binary))
    text = GPU_DROPIN.read_text() if dropin_text is None else dropin_text
    (folder / "instarecon@.service.d" / "gpu.conf").write_text(text.replace(EXEC_BINARY, exec_binary))
    return folder


def analyze_instance(folder: Path, *command: str) -> subprocess.CompletedProcess:
    """`systemd-analyze COMMAND... instarecon@0.service`, the units looked up in ``folder`` first."""
    analyze = systemd_tool("systemd-analyze")
    return subprocess.run([analyze, *command, "instarecon@0.service"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "SYSTEMD_UNIT_PATH": f"{folder}:"})


def security_exposure(unit: Path) -> tuple[float, str]:
    """The overall exposure `systemd-analyze security --offline=true` gives the unit (0 to 10,
    lower is better), and its whole report."""
    analyze = systemd_tool("systemd-analyze")
    result = subprocess.run([analyze, "security", "--offline=true", "--no-pager", str(unit)],
                            capture_output=True, text=True, timeout=120)
    report = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", report)
    assert match, f"no exposure level in systemd-analyze's report:\n{report}"
    return float(match.group(1)), report


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: files by content hash, mtime, mode and owner; folders by mode,
    owner and mtime (a file added or removed changes it); links by target."""
    entries: dict[str, tuple] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            info = path.lstat()
            key = str(path.relative_to(root))
            if stat.S_ISLNK(info.st_mode):
                entries[key] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                entries[key] = ("dir", info.st_mode, info.st_uid, info.st_gid, info.st_mtime_ns)
            else:
                digest = hashlib.blake2b(digest_size=16)
                with open(path, "rb") as handle:
                    while block := handle.read(1 << 20):
                        digest.update(block)
                entries[key] = ("file", digest.hexdigest(), info.st_mtime_ns, info.st_mode, info.st_uid, info.st_gid)
    return entries


def snapshot_difference(before: dict[str, tuple], after: dict[str, tuple]) -> list[str]:
    """What changed, one line per entry (empty: nothing)."""
    lines = [f"added {key}" for key in sorted(after.keys() - before.keys())]
    lines += [f"removed {key}" for key in sorted(before.keys() - after.keys())]
    lines += [f"changed {key}: {before[key]} -> {after[key]}"
              for key in sorted(before.keys() & after.keys()) if before[key] != after[key]]
    return lines


def copy_source(destination: Path) -> Path:
    """The source tree as a fresh clone has it (no .git, virtual environments, data folders or
    caches), so that the test installs one fixed version while the checkout may change."""
    def ignore(folder: str, names: list[str]) -> set[str]:
        skipped = {n for n in names if n in ("__pycache__", "node_modules", "build") or n.endswith((".egg-info", ".pyc"))}
        if Path(folder) == REPO:
            skipped |= {n for n in names if n.startswith(".") or n in ("inbox", "outbox", "state")}
        return skipped

    shutil.copytree(REPO, destination, ignore=ignore, symlinks=True)
    return destination
