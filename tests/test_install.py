"""deploy/install.sh --root: the service's installation into a folder, run as an operator would
use it. One install (the slow part: a virtual environment with PyTorch, pycolmap, numba, gsplat),
then from the installed environment `instarecon doctor` and a job through the daemon; a second run
changes nothing; an edited configuration survives a third; --uninstall keeps the data.

The installation comes from a copy of the source tree (as a fresh clone), so that edits to the
checkout while the test runs cannot make the second run reinstall. pip picks torch as its own
configuration says (--torch-index ''), which is how the checkout's .venv got its torch: pip's
cache and local indexes answer instead of download.pytorch.org."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from tests.daemon_harness import validate_status
from tests.install_checks import (
    INSTALL_SH,
    copy_source,
    snapshot,
    snapshot_difference,
    unit_settings,
    verify_unit,
)
from tests.photo_sets import small_set


def clean_environment() -> dict[str, str]:
    """The caller's environment without what would make Python look at the checkout."""
    return {key: value for key, value in os.environ.items()
            if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "INSTARECON_CONFIG", "INSTARECON_TORCH_INDEX")}


def install(source: Path, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    result = subprocess.run(["bash", str(source / "deploy" / "install.sh"), *args], capture_output=True, text=True,
                            timeout=timeout, env=clean_environment(), cwd="/")
    assert result.returncode == 0, f"install.sh {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def test_usage_and_unknown_options():
    shown = subprocess.run(["bash", str(INSTALL_SH), "--help"], capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0 and "--uninstall" in shown.stdout and "--root DIR" in shown.stdout
    wrong = subprocess.run(["bash", str(INSTALL_SH), "--frobnicate"], capture_output=True, text=True, timeout=30)
    assert wrong.returncode == 2 and "unknown option: --frobnicate" in wrong.stderr


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_install_run_reinstall_uninstall(tmp_path: Path):
    source = copy_source(tmp_path / "src")
    root = tmp_path / "root"
    # LPIPS's AlexNet from a mirror that is down: a warning, not a failed install, and nothing half-fetched
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        mirror = f"http://127.0.0.1:{probe.getsockname()[1]}/models/"
    args = ("--root", str(root), "--cpu", "--torch-index", "", "--weights-from", mirror)
    venv = root / "opt/instarecon/venv"
    config = root / "etc/instarecon/instarecon.toml"
    inbox, outbox, state = root / "srv/instarecon/inbox", root / "srv/instarecon/outbox", root / "var/lib/instarecon"
    units = [root / "etc/systemd/system/instarecon.service", root / "usr/lib/sysusers.d/instarecon.conf",
             root / "usr/lib/tmpfiles.d/instarecon.conf"]
    # the same unit as the per-GPU template, with its drop-in (not enabled: --cpu, one plain daemon)
    gpu_units = [root / "etc/systemd/system/instarecon@.service", root / "etc/systemd/system/instarecon@.service.d/gpu.conf"]
    enabled = root / "etc/systemd/system/multi-user.target.wants/instarecon.service"
    command = root / "usr/local/bin/instarecon"  # the operators' command: the service's configuration

    # 1. First install.
    started = time.monotonic()
    first = install(source, *args)
    first_seconds = time.monotonic() - started
    assert "nothing changed" not in first.stdout
    assert "LPIPS's weights were not fetched (see above): a warning, not a failed install" in first.stdout
    assert f"cannot fetch alexnet-owt-7be5be79.pth from {mirror}alexnet-owt-7be5be79.pth" in first.stderr
    assert [path.name for path in (root / "var/lib/instarecon/lpips-weights").iterdir()] == ["alex.pth"]  # from lpips
    for unit, name in zip(units, ("instarecon.service", "instarecon.sysusers", "instarecon.tmpfiles")):
        assert unit.read_bytes() == (source / "deploy/systemd" / name).read_bytes()
    assert os.readlink(enabled) == "/etc/systemd/system/instarecon.service"
    assert gpu_units[0].read_bytes() == units[0].read_bytes()
    assert gpu_units[1].read_bytes() == (source / "deploy/systemd/instarecon@.service.d/gpu.conf").read_bytes()
    assert sorted(path.name for path in enabled.parent.iterdir()) == ["instarecon.service"]
    for folder in (inbox, outbox, state):
        assert folder.is_dir()
    if os.geteuid() == 0 and (root / "etc/passwd").exists():
        assert "instarecon:" in (root / "etc/passwd").read_text()
        assert oct(inbox.stat().st_mode & 0o7777) == "0o2770"
    # The configuration: the example with the folders under the root.
    settings = tomllib.loads(config.read_text())
    assert (settings["inbox"], settings["outbox"], settings["state"]) == (str(inbox), str(outbox), str(state))
    example = (source / "deploy/instarecon.example.toml").read_text().splitlines()
    assert [line for line in config.read_text().splitlines() if line not in example] == [
        f'inbox = "{inbox}"', f'outbox = "{outbox}"', f'state = "{state}"']
    default_config = config.read_bytes()

    # The installed unit, as systemd-analyze verify sees it, with ExecStart's program in the tree.
    unit_text = units[0].read_text()
    program = Path(unit_settings(unit_text)["Service"]["ExecStart"][0].split()[0])
    assert (root / program.relative_to("/")).is_file()
    assert verify_unit(unit_text, tmp_path / "verify", root / program.relative_to("/")) == ""

    # 2. The installed environment runs its own copy of the code, the doctor passes, a job ends done.
    run = {"capture_output": True, "text": True, "env": clean_environment(), "cwd": tmp_path}
    where = subprocess.run([venv / "bin/python", "-c", "import daemon, stages, gaussian_splatting as g; "
                            "print(daemon.__file__, stages.__file__, g.__file__)"], timeout=60, **run)
    assert where.returncode == 0 and all(path.startswith(str(venv)) for path in where.stdout.split()), where
    doctor = subprocess.run([venv / "bin/instarecon", "doctor", "--config", config], timeout=120, **run)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    small_set(inbox / "demo", ready=True)  # job.toml: stop_after = "ingest"
    daemon = subprocess.run([venv / "bin/instarecon", "run", "--until-idle", "--config", config], timeout=300, **run)
    assert daemon.returncode == 0, daemon.stderr[-3000:]
    status = validate_status(json.loads((inbox / "demo/status.json").read_text()))
    assert (status["job_id"], status["state"]) == ("demo-1", "done"), status
    validate_status(json.loads((outbox / "demo-1/status.json").read_text()))
    assert (state / "jobs.sqlite3").is_file()
    listed = subprocess.run([command, "status"], timeout=60, **run)
    assert listed.returncode == 0 and "demo-1" in listed.stdout and "done" in listed.stdout, listed

    # 3. A second run changes nothing: no file's content, mode or mtime.
    before = snapshot(root)
    started = time.monotonic()
    second = install(source, *args)
    second_seconds = time.monotonic() - started
    assert "nothing changed" in second.stdout, second.stdout
    assert snapshot_difference(before, snapshot(root)) == []

    # 4. A new version's default replaces a configuration nobody edited...
    example = source / "deploy/instarecon.example.toml"
    example.write_text(example.read_text() + "\n# a comment that a later version adds\n")
    upgrade = install(source, *args)
    assert "updating" in upgrade.stdout and config.read_text().endswith("# a comment that a later version adds\n")
    assert not (config.parent / "instarecon.toml.new").exists()
    default_config = config.read_bytes()

    # 5. ... but an edited one is kept, and the new default is written beside it, once.
    edited = config.read_text().replace("settle_seconds = 60", "settle_seconds = 5")
    assert edited != config.read_text()
    config.write_text(edited)
    before = snapshot(root)
    third = install(source, *args)
    assert config.read_text() == edited
    assert (config.parent / "instarecon.toml.new").read_bytes() == default_config
    assert "instarecon.toml.new" in third.stdout
    difference = snapshot_difference(before, snapshot(root))
    assert difference[0] == "added etc/instarecon/instarecon.toml.new", difference
    assert [line.split(":")[0] for line in difference[1:]] == ["changed etc/instarecon"], difference  # its folder
    fourth = install(source, *args)
    assert "nothing changed" in fourth.stdout and "instarecon.toml.new" in fourth.stdout

    # 6. --uninstall: the service's files go, the configuration and the data stay.
    install(source, "--root", str(root), "--uninstall")
    assert not (root / "opt/instarecon").exists()
    assert not any(path.exists() or path.is_symlink() for path in [*units, *gpu_units, enabled, command])
    assert config.read_text() == edited and (config.parent / "instarecon.toml.new").exists()
    assert (inbox / "demo/status.json").exists() and len(list((inbox / "demo").glob("*.jpg"))) == 4
    assert (outbox / "demo-1/status.json").exists() and (state / "jobs.sqlite3").exists()
    again = install(source, "--root", str(root), "--uninstall")
    assert "nothing changed" in again.stdout

    print(f"\ninstall.sh --root: first run {first_seconds:.1f} s, second run {second_seconds:.1f} s "
          f"(python {sys.version.split()[0]})")
