"""This daemon process, named so that another process can later tell whether it is still alive.

A running job is held by a process, not by a host name: two daemons that share a name (an
operator's ``instarecon run --until-idle`` beside the service) must never take each other's job
for their own. The key is ``<host name>/<boot id>/<pid namespace>/<pid>/<start time>``: the boot id
and the pid namespace say whether a pid can be looked up from here at all, and the start time
(in clock ticks since boot, /proc/<pid>/stat) tells a live process from a later one that was given
the same pid. A process of an earlier boot of this machine (same host name) is gone. Anything else
that cannot be checked from here (another machine or container) may be running: its jobs wait for
their lease to run out.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from enum import StrEnum
from functools import cache


@dataclass(frozen=True)
class ProcessKey:
    host: str
    boot: str
    pid_namespace: str
    pid: int
    start_ticks: str

    def __str__(self) -> str:
        return "/".join((self.host, self.boot, self.pid_namespace, str(self.pid), self.start_ticks))

    @classmethod
    def parse(cls, text: str | None) -> "ProcessKey | None":
        parts = (text or "").rsplit("/", 4)
        if len(parts) != 5 or not parts[3].isdigit():
            return None
        return cls(parts[0], parts[1], parts[2], int(parts[3]), parts[4])


@cache
def this_process() -> ProcessKey:
    pid = os.getpid()
    boot = _read("/proc/sys/kernel/random/boot_id") or f"unknown-{uuid.uuid4()}"  # unknown: never checkable
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = "unknown"
    return ProcessKey(socket.gethostname(), boot, namespace, pid, _start_ticks(pid) or "unknown")


class Liveness(StrEnum):
    RUNNING = "running"
    GONE = "gone"
    UNKNOWN = "unknown"  # another machine, container, or no key: it may be running


def liveness(key: str | None) -> Liveness:
    """Whether the process ``key`` names still runs, as far as can be told from here: GONE when it
    ran in this boot and pid namespace and its pid is free or belongs to a process started later,
    or when it ran on this machine (same host name) in an earlier boot."""
    process = ProcessKey.parse(key)
    here = this_process()
    if process is None or "unknown" in (process.boot, here.boot, process.start_ticks):
        return Liveness.UNKNOWN
    if process.boot != here.boot:
        return Liveness.GONE if process.host == here.host else Liveness.UNKNOWN
    if process.pid_namespace != here.pid_namespace:
        return Liveness.UNKNOWN
    try:
        os.kill(process.pid, 0)
    except ProcessLookupError:
        return Liveness.GONE
    except PermissionError:
        return Liveness.RUNNING  # another user's process has that pid; /proc may hide it (ProtectProc=invisible)
    started = _start_ticks(process.pid)
    return Liveness.GONE if started is not None and started != process.start_ticks else Liveness.RUNNING


def _start_ticks(pid: int) -> str | None:
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    # the command name (field 2) may hold spaces and parentheses: count from the last ')'
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def _read(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return None
