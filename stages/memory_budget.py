"""Memory for decoding photos, shared by ingest's threads: a photo waits until its share is free.

A photo costs far more memory decoded than on disk: 0.5 MB of PNG can hold 13000 x 13000
pixels, 0.7 GB decoded. Each of ingest's threads decodes a photo of its own, so the pixel limit
of one photo (``max_image_pixels``) says nothing of what all of them take together: four such
PNGs on four threads took 11.6 GB. Before a photo is decoded, its peak
(``photo_checks.decode_memory_bytes``, from its header) is reserved here; the thread waits until
the others' reservations leave room, and hands it back once the photo's copy is written.

The budget is ``ingest_memory_mb``, or when that is 0 a quarter of the memory the service may
use: the ``memory.max`` of its cgroup or of one above it (systemd's ``MemoryMax=``; cgroup v2,
as Debian 12 and Ubuntu 24.04 run), else the machine's ``MemTotal``. A quarter leaves the rest to
the daemon, to the ingest process's own libraries, and to whatever else runs beside it.
"""

from __future__ import annotations

import ctypes
import threading
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

MB = 1_000_000  # decimal, as the other *_mb settings
AUTOMATIC_SHARE = 0.25  # ingest_memory_mb = 0: this share of the service's memory
_M_MMAP_THRESHOLD = -3  # glibc's malloc.h
_MMAP_THRESHOLD_BYTES = 1024 * 1024


class MemoryBudget:
    """Bytes that threads reserve and hand back, first come first served, so that a large photo
    is not passed over by a stream of smaller ones."""

    def __init__(self, total_bytes: int):
        if total_bytes <= 0:
            raise ValueError(f"a memory budget needs some bytes, got {total_bytes}")
        self.total_bytes = total_bytes
        self._free = total_bytes
        self._queue: deque[object] = deque()
        self._changed = threading.Condition()

    @property
    def free_bytes(self) -> int:
        with self._changed:
            return self._free

    @property
    def waiting(self) -> int:
        """Threads that asked and are not yet served."""
        with self._changed:
            return len(self._queue)

    @contextmanager
    def reserved(self, nbytes: int) -> Iterator[None]:
        """Hold ``nbytes`` of the budget for the block, waiting for them first if need be."""
        if not 0 <= nbytes <= self.total_bytes:
            raise ValueError(f"cannot reserve {nbytes} bytes of a budget of {self.total_bytes}")
        turn = object()
        with self._changed:
            self._queue.append(turn)
            try:
                self._changed.wait_for(lambda: self._queue[0] is turn and nbytes <= self._free)
                self._free -= nbytes
            finally:
                self._queue.remove(turn)
                self._changed.notify_all()  # the next in line may fit as well
        try:
            yield
        finally:
            with self._changed:
                self._free += nbytes
                self._changed.notify_all()


def return_freed_memory_promptly() -> None:
    """Have glibc hand large blocks back to the system as soon as they are freed.

    Otherwise it serves them, once a few have been freed, from per-thread arenas that keep what
    is freed for that thread alone: photos decoded one after another on four threads then held
    the memory of three (bench/decode_memory.py: 0.87 GB where 0.37 GB were ever in use at once),
    and the budget would bound what is in use but not what the process holds. Blocks of 1 MiB
    and more (Pillow's come in 16 MiB) are mapped on their own and unmapped when freed.
    Process-wide: call it in a stage's own process only. Does nothing without glibc.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)


def decoding_budget_bytes(ingest_memory_mb: float, proc: Path = Path("/proc"),
                          cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """``ingest_memory_mb`` in bytes; 0: a quarter of what the service may use."""
    if ingest_memory_mb:
        return round(ingest_memory_mb * MB)
    return int(service_memory_bytes(proc, cgroup_root) * AUTOMATIC_SHARE)


def service_memory_bytes(proc: Path = Path("/proc"), cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """The smallest ``memory.max`` on the way from this process's cgroup to the root, or MemTotal
    when none is set (or cgroup v2 is not mounted there)."""
    total = _mem_total(proc / "meminfo")
    limit = _cgroup_memory_max(proc / "self" / "cgroup", cgroup_root)
    return total if limit is None else min(total, limit)


def _mem_total(meminfo: Path) -> int:
    for line in meminfo.read_text().splitlines():
        name, _, value = line.partition(":")
        if name == "MemTotal":
            return int(value.split()[0]) * 1024  # "MemTotal:  24683520 kB"
    raise ValueError(f"{meminfo} has no MemTotal line")


def _cgroup_memory_max(cgroup_file: Path, cgroup_root: Path) -> int | None:
    try:
        lines = cgroup_file.read_text().splitlines()
    except OSError:
        return None
    # cgroup v2's line is "0::/system.slice/instarecon.service"; v1's name their controllers
    path = next((line[3:] for line in lines if line.startswith("0::")), None)
    if path is None:
        return None
    folder = cgroup_root / path.strip("/")
    limits = []
    while True:
        try:
            text = (folder / "memory.max").read_text().strip()
        except OSError:
            text = "max"  # the root cgroup has none; nor does a folder outside a cgroup v2 mount
        if text != "max":
            limits.append(int(text))
        if folder == cgroup_root or cgroup_root not in folder.parents:
            break
        folder = folder.parent
    return min(limits) if limits else None
