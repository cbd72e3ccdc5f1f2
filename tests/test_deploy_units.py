"""The systemd files in deploy/systemd/: the service's settings, what systemd's own checkers say
about it (`systemd-analyze verify` prints nothing, `systemd-analyze security` rates its exposure at
2.0 or lower), and that the sysusers and tmpfiles files apply cleanly and agree with the unit and
the example configuration. The systemd tools are skipped where missing, except under CI."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.install_checks import (
    EXAMPLE_CONFIG,
    EXEC_BINARY,
    GPU_DROPIN,
    GPU_SERVICES_SH,
    MAX_EXPOSURE,
    SYSUSERS,
    TMPFILES,
    UNIT,
    analyze_instance,
    gpu_template,
    security_exposure,
    systemd_tool,
    unit_settings,
    verify_unit,
)


def service() -> dict[str, list[str]]:
    return unit_settings(UNIT.read_text())["Service"]


def tmpfiles_folders() -> dict[str, tuple[str, str, str]]:
    """path -> (mode, user, group) of the tmpfiles file's 'd' lines."""
    folders = {}
    for line in TMPFILES.read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == "d":
            folders[fields[1]] = (fields[2], fields[3], fields[4])
    return folders


def test_service_settings_the_issue_asks_for():
    settings = service()
    one = {key: values[-1] for key, values in settings.items()}
    assert one["Type"] == "notify"
    assert one["NotifyAccess"] == "main"
    assert int(one["WatchdogSec"]) > 0
    assert one["Restart"] == "on-failure"
    assert one["User"] == one["Group"] == "instarecon"
    assert one["ExecStart"].split() == [EXEC_BINARY, "run", "--config", "/etc/instarecon/instarecon.toml"]
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "DevicePolicy": "closed"}.items():
        assert one[key] == value, key
    assert settings["CapabilityBoundingSet"] == [""], "no capabilities at all"
    assert "@system-service" in settings["SystemCallFilter"]
    assert set(" ".join(settings["RestrictAddressFamilies"]).split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    # CUDA: the control device and the GPUs (nvidia-frontend), unified memory (nvidia-uvm)
    assert {"char-nvidia-frontend rw", "char-nvidia-uvm rw"} <= set(settings["DeviceAllow"])
    # numba's JIT and CUDA need writable-then-executable memory; PrivateDevices= hides the GPU;
    # ProcSubset=pid hides /proc/driver/nvidia
    assert one.get("MemoryDenyWriteExecute", "no") == "no"
    assert one.get("PrivateDevices", "no") == "no"
    assert one.get("ProcSubset", "all") == "all"


def test_memory_runs_out_inside_the_service_and_the_daemon_lives_on():
    one = {key: values[-1] for key, values in service().items()}
    # a share of the machine's memory, so that the kernel's OOM killer acts inside this service
    assert one["MemoryMax"].endswith("%") and 50 <= int(one["MemoryMax"].removesuffix("%")) < 100
    # systemd's default, stop, would stop the whole service for a killed stage, and restart it
    # into the same job; the daemon itself fails the job with the memory hint
    assert one["OOMPolicy"] == "continue"
    assert "MemoryHigh" not in one, "without swap it only slows a growing stage to a crawl"


def test_writable_folders_match_the_configuration_the_tmpfiles_and_the_user():
    config = tomllib.loads(EXAMPLE_CONFIG.read_text())
    folders = [config["inbox"], config["outbox"], config["state"]]
    writable = [path.removeprefix("-") for value in service()["ReadWritePaths"] for path in value.split()]
    assert writable == folders, "ReadWritePaths= is exactly the inbox, outbox and state of the configuration"

    made = tmpfiles_folders()
    for folder in folders:
        assert made[folder][1:] == ("instarecon", "instarecon"), folder
    assert made[config["inbox"]][0] == "2770", "inbox: group-writable for the share's users, setgid"
    assert made[config["state"]][0] == "0750"
    assert service()["StateDirectory"] == [Path(config["state"]).name]

    users = [line.split() for line in SYSUSERS.read_text().splitlines() if line.startswith("u ")]
    assert len(users) == 1
    # u NAME ID "GECOS words" HOME SHELL: the home (the caches' place) is the state folder
    assert users[0][1] == "instarecon" and users[0][-2:] == [config["state"], "/usr/sbin/nologin"]


def test_systemd_analyze_verify_prints_nothing(tmp_path: Path):
    program = tmp_path / "venv" / "bin" / "instarecon"
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    assert verify_unit(UNIT.read_text(), tmp_path / "units", program) == ""


def test_systemd_analyze_verify_catches_a_typo(tmp_path: Path):
    """The check above can fail: a misspelt key is reported (while verify still exits 0)."""
    program = tmp_path / "venv" / "bin" / "instarecon"
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    text = UNIT.read_text().replace("ProtectHome=yes", "ProtectHomes=yes")
    assert "ProtectHomes" in verify_unit(text, tmp_path / "units", program)


def test_security_exposure_is_at_most_2(record_property):
    exposure, report = security_exposure(UNIT)
    record_property("exposure", exposure)
    print(f"systemd-analyze security: exposure {exposure}")
    assert exposure <= MAX_EXPOSURE, report


def test_sysusers_and_tmpfiles_apply_cleanly(tmp_path: Path):
    sysusers = systemd_tool("systemd-sysusers")
    tmpfiles = systemd_tool("systemd-tmpfiles")
    if os.geteuid() != 0:
        pytest.skip("giving the folders to the instarecon user needs root")
    (tmp_path / "etc").mkdir()
    # "-": the file from standard input (systemd 252 reads a named file on the host, later ones under --root)
    users = subprocess.run([sysusers, f"--root={tmp_path}", "-"], stdin=SYSUSERS.open(),
                           capture_output=True, text=True, timeout=60)
    assert users.returncode == 0, users.stderr
    passwd = {line.split(":")[0]: line.split(":") for line in (tmp_path / "etc/passwd").read_text().splitlines()}
    uid, gid, home, shell = int(passwd["instarecon"][2]), int(passwd["instarecon"][3]), passwd["instarecon"][5], passwd["instarecon"][6]
    assert uid < 1000 and (home, shell) == ("/var/lib/instarecon", "/usr/sbin/nologin")
    assert any(line.startswith(f"instarecon:x:{gid}:") for line in (tmp_path / "etc/group").read_text().splitlines())

    folders = subprocess.run([tmpfiles, "--create", f"--root={tmp_path}", "-"], stdin=TMPFILES.open(),
                             capture_output=True, text=True, timeout=60)
    assert folders.returncode == 0 and folders.stderr == "", folders.stderr
    for path, (mode, user, _) in tmpfiles_folders().items():
        info = (tmp_path / path.lstrip("/")).stat()
        assert oct(info.st_mode & 0o7777) == oct(int(mode, 8)), path
        assert info.st_uid == (uid if user == "instarecon" else 0), path


# ---- one daemon per GPU: instarecon@N.service, the unit as a template with deploy/systemd/instarecon@.service.d/gpu.conf


def test_each_gpu_instance_sees_its_gpu_alone_under_a_name_of_its_own():
    dropin = unit_settings(GPU_DROPIN.read_text())["Service"]
    assert dropin["Environment"] == ["CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES=%i"]
    plain = service()["ExecStart"][0]
    assert dropin["ExecStart"] == ["", f"{plain} --host-name %H-gpu%i"]  # reset, then the plain one's, named


def test_systemd_analyze_verify_prints_nothing_for_an_instance_and_reads_its_dropin(tmp_path: Path):
    program = tmp_path / "venv" / "bin" / "instarecon"
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    units = gpu_template(tmp_path / "units", str(program))
    result = analyze_instance(units, "verify", "--man=no", "--generators=no")
    assert (result.returncode, (result.stdout + result.stderr).strip()) == (0, "")
    typo = GPU_DROPIN.read_text().replace("Environment=", "Enviroment=")
    result = analyze_instance(gpu_template(tmp_path / "typo", str(program), typo), "verify", "--man=no",
                              "--generators=no")
    assert "Unknown key 'Enviroment'" in result.stdout + result.stderr  # the drop-in is read


def test_security_exposure_of_an_instance_is_at_most_2(tmp_path: Path):
    result = analyze_instance(gpu_template(tmp_path / "units"), "security", "--offline=true", "--no-pager")
    match = re.search(r"Overall exposure level for instarecon@0\.service: (\d+(?:\.\d+)?)", result.stdout)
    assert match and float(match.group(1)) <= MAX_EXPOSURE, result.stdout + result.stderr


@pytest.mark.parametrize("listed, flavour, services", [
    ("GPU 0: NVIDIA H200 (UUID: GPU-1)\nGPU 1: NVIDIA H200 (UUID: GPU-2)\n", "cuda",
     ["instarecon@0.service", "instarecon@1.service"]),
    ("GPU 0: NVIDIA L4 (UUID: GPU-1)\n", "cuda", ["instarecon@0.service"]),
    ("GPU 0: NVIDIA L4 (UUID: GPU-1)\n", "cpu", ["instarecon.service"]),  # --cpu on a GPU host: one plain daemon
    (None, "cuda", ["instarecon.service"]),  # nvidia-smi fails (no driver loaded)
])
def test_install_sh_enables_one_daemon_per_gpu_nvidia_smi_lists(tmp_path: Path, listed, flavour, services):
    """deploy/gpu-services.sh, which install.sh sources, with an nvidia-smi of the test's own on PATH
    (the one boundary faked: there is no GPU here)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nvidia-smi"
    fake.write_text("#!/bin/sh\n" + (f"printf '{listed}'\n" if listed else "echo 'NVIDIA-SMI has failed' >&2; exit 9\n"))
    fake.chmod(0o755)
    result = subprocess.run(["bash", "-c", f'. "{GPU_SERVICES_SH}"; service_names {flavour}'], capture_output=True,
                            text=True, timeout=30, env={**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == services
