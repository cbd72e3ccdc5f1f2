"""sd_notify(3) over the datagram socket in $NOTIFY_SOCKET: READY, STATUS, WATCHDOG, STOPPING,
EXTEND_TIMEOUT_USEC.

The protocol is one datagram of KEY=VALUE lines; speaking it directly keeps the
daemon free of a compiled dependency for it, and outside systemd it does nothing.
"""

from __future__ import annotations

import os
import socket
from typing import Mapping


class SystemdNotifier:
    def __init__(self, environ: Mapping[str, str] | None = None):
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._watchdog_seconds = self._watchdog_interval(environ)
        self._socket: socket.socket | None = None
        self._last_status: str | None = None

    @staticmethod
    def _watchdog_interval(environ: Mapping[str, str]) -> float | None:
        usec = environ.get("WATCHDOG_USEC")
        pid = environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        try:
            return int(usec) / 1_000_000
        except ValueError:
            return None

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    @property
    def watchdog_ping_seconds(self) -> float | None:
        """How often to ping: half the watchdog timeout, as sd_watchdog_enabled(3) advises."""
        return None if self._watchdog_seconds is None else self._watchdog_seconds / 2

    def notify(self, **fields: str) -> None:
        if not self._address:
            return
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.sendto(message, self._address)
        except OSError:
            pass  # systemd going away must not take the daemon with it

    def ready(self, status: str) -> None:
        self._last_status = status
        self.notify(READY="1", STATUS=status, MAINPID=str(os.getpid()))

    def status(self, status: str) -> None:
        if status != self._last_status:
            self._last_status = status
            self.notify(STATUS=status)

    def starting(self, status: str, seconds: float) -> None:
        """Still starting, and waiting for something: systemd allows ``seconds`` more
        (EXTEND_TIMEOUT_USEC) before its start timeout would kill the daemon."""
        self._last_status = status
        self.notify(STATUS=status, EXTEND_TIMEOUT_USEC=str(int(seconds * 1_000_000)))

    def watchdog(self) -> None:
        if self._watchdog_seconds is not None:
            self.notify(WATCHDOG="1")

    def stopping(self) -> None:
        self.notify(STOPPING="1", STATUS="stopping")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
