"""The same event for the same job is sent once within a window (15 s): a job's document can
come back through the daemon's passes, and a receiver should not hear of it twice."""

from __future__ import annotations

import time
from typing import Callable, Hashable

DEDUP_SECONDS = 15.0


class RecentEvents:
    def __init__(self, window_seconds: float = DEDUP_SECONDS, clock: Callable[[], float] = time.monotonic):
        self._window = window_seconds
        self._clock = clock
        self._seen: dict[Hashable, float] = {}  # key -> when last let through; only the last window's

    def first(self, key: Hashable) -> bool:
        """True (and remembered) unless the key was let through less than the window ago."""
        now = self._clock()
        for old in [k for k, at in self._seen.items() if now - at >= self._window]:
            del self._seen[old]
        if key in self._seen:
            return False
        self._seen[key] = now
        return True
