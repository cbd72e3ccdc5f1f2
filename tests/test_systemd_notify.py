"""READY, STATUS, WATCHDOG and STOPPING datagrams reach the socket named in NOTIFY_SOCKET."""

from __future__ import annotations

import socket
import time

import pytest

from tests.daemon_harness import DaemonProcess, make_layout, state_is, wait_for
from tests.photo_sets import small_set

pytestmark = pytest.mark.slow  # whole-daemon runs


def test_daemon_speaks_sd_notify(tmp_path):
    layout = make_layout(tmp_path)
    address = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(0.2)
    received: list[dict[str, str]] = []

    def drain(until: float) -> None:
        while time.monotonic() < until:
            try:
                datagram = listener.recv(4096).decode()
            except socket.timeout:
                continue
            received.append(dict(line.split("=", 1) for line in datagram.splitlines()))

    daemon = DaemonProcess(layout, env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000"}).start()
    drain(time.monotonic() + 2.5)
    small_set(layout.inbox / "kermit", ready=True)
    wait_for(state_is(layout, "kermit", "done"), 30, "the job to finish")
    drain(time.monotonic() + 1.5)
    assert daemon.stop() == 0
    drain(time.monotonic() + 0.5)
    listener.close()

    ready = [m for m in received if m.get("READY") == "1"]
    assert len(ready) == 1 and ready[0]["STATUS"].startswith("idle, 0 queued")
    assert int(ready[0]["MAINPID"]) == daemon.process.pid
    # watchdog at 1 s: pinged about every 0.5 s
    assert sum(1 for m in received if m.get("WATCHDOG") == "1") >= 4
    statuses = [m["STATUS"] for m in received if "STATUS" in m]
    assert any(s.startswith("running kermit: ") for s in statuses), statuses
    assert received[-1].get("STOPPING") == "1"
