"""Read-only places: a read-only set folder (a share), and an outbox the daemon cannot write."""

from __future__ import annotations

from tests.daemon_harness import DaemonProcess, make_layout, run_cli
from tests.photo_sets import small_set
from tests.read_only_mount import read_only_bind

import pytest


@pytest.mark.slow
def test_read_only_set_folder_is_reported_once_and_the_job_carries_on(tmp_path):
    layout = make_layout(tmp_path / "site")
    small_set(tmp_path / "share", ready=True)
    with read_only_bind(tmp_path / "share", layout.inbox / "museum"):
        with DaemonProcess(layout, until_idle=True) as daemon:
            assert daemon.wait(60) == 0, daemon.log()
        assert not (layout.inbox / "museum" / "status.json").exists()
    document = layout.outbox_status("museum-1")
    assert document["state"] == "done"
    assert any("cannot be written into the set folder" in w for w in document["warnings"])
    assert daemon.log().count("cannot be written into the set folder") == 1


def test_read_only_outbox_stops_the_daemon_at_start(tmp_path):
    layout = make_layout(tmp_path / "site")
    (tmp_path / "empty").mkdir()
    with read_only_bind(tmp_path / "empty", tmp_path / "ro-outbox"):
        result = run_cli(layout, "run", "--until-idle", "--outbox", str(tmp_path / "ro-outbox"))
    assert result.returncode == 78
    assert result.stderr.strip() == f"instarecon: outbox folder {tmp_path / 'ro-outbox'} is not writable: Read-only file system"
