"""deploy/samba/instarecon-inbox.conf as Samba reads it: testparm on an smb.conf that includes it, as the
file's own instructions say, must load it without a warning and give the share the settings the comments
promise; the share must agree with the daemon's configuration (the inbox folder, the daemon's group), and
what it vetoes must be names the daemon ignores anyway (a veto never hides a photo).

Needs testparm (apt-get install samba-common-bin); without it the test skips, except under CI (the CI
variable set), where it fails.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from inbox_protocol.photo_set import FileRules
from tests.required_tools import require_program

ROOT = Path(__file__).resolve().parents[1]
SHARE_FILE = ROOT / "deploy" / "samba" / "instarecon-inbox.conf"
SHARE = "instarecon-inbox"


def find_testparm() -> str:
    return require_program("testparm", "samba-common-bin", "the Samba example's test runs it")


@pytest.fixture
def smb_conf(tmp_path) -> Path:
    """An smb.conf as Debian's, reduced to a standalone server whose run-time folders are in tmp_path, with the
    include line the share file asks for."""
    folders = {name: tmp_path / name for name in ("lock", "state", "cache", "pid", "private")}
    for folder in folders.values():
        folder.mkdir()
    conf = tmp_path / "smb.conf"
    conf.write_text(
        "[global]\n"
        "   server role = standalone server\n"
        f"   lock directory = {folders['lock']}\n   state directory = {folders['state']}\n"
        f"   cache directory = {folders['cache']}\n   pid directory = {folders['pid']}\n"
        f"   private dir = {folders['private']}\n   log file = {tmp_path / 'log.%m'}\n"
        f"include = {SHARE_FILE}\n"
    )
    return conf


def share_value(testparm: str, conf: Path, name: str) -> str:
    done = subprocess.run([testparm, "-s", "--section-name", SHARE, "--parameter-name", name, str(conf)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_samba_loads_the_share_without_warnings(smb_conf):
    testparm = find_testparm()
    done = subprocess.run([testparm, "-s", str(smb_conf)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "Loaded services file OK." in done.stderr
    complaints = [line for line in done.stderr.splitlines()
                  if re.search(r"unknown parameter|ignoring|warning|error|not boolean|invalid", line, re.I)]
    assert not complaints, done.stderr
    assert f"[{SHARE}]" in done.stdout

    effective = {name: share_value(testparm, smb_conf, name) for name in (
        "path", "read only", "guest ok", "valid users", "force group", "create mask", "force create mode",
        "directory mask", "force directory mode", "oplocks", "level2 oplocks", "strict sync", "sync always",
        "veto files", "delete veto files", "vfs objects",
    )}
    assert effective == {
        "path": "/srv/instarecon/inbox", "read only": "No", "guest ok": "No", "valid users": "@instarecon",
        "force group": "instarecon", "create mask": "0660", "force create mode": "0040",
        "directory mask": "02770", "force directory mode": "02770",
        "oplocks": "No", "level2 oplocks": "No", "strict sync": "Yes", "sync always": "No",
        "veto files": "/.DS_Store/._*/Thumbs.db/desktop.ini/", "delete veto files": "Yes",
        "vfs objects": "catia fruit streams_xattr",
    }


def test_the_share_matches_the_daemons_configuration():
    text = SHARE_FILE.read_text()
    settings = dict(re.findall(r"^[ \t]*([a-z][a-z0-9: ]*?)[ \t]*=[ \t]*(.*?)[ \t]*$", text, flags=re.M))
    example = tomllib.loads((ROOT / "deploy" / "instarecon.example.toml").read_text())
    assert settings["path"] == example["inbox"]
    unit = (ROOT / "deploy" / "systemd" / "instarecon.service").read_text()
    group = re.search(r"^Group=(\S+)$", unit, flags=re.M).group(1)
    assert settings["force group"] == group and settings["valid users"] == f"@{group}"

    # Every vetoed name is one the daemon ignores: a veto hides litter, never a photo.
    rules = FileRules()
    vetoed = [entry for entry in settings["veto files"].split("/") if entry]
    assert vetoed
    for entry in vetoed:
        sample = entry.replace("*", "IMG_0001.jpg")
        assert rules.is_junk(sample), entry
