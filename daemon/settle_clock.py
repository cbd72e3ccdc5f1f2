"""When a set counts as complete without a READY marker: nothing changed for a while.

Pure bookkeeping over an injected clock, so tests need no sleeping.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class _Seen:
    fingerprint: str
    since: float


class SettleClock:
    def __init__(self, settle_seconds: float, clock: Callable[[], float] = time.monotonic):
        self._settle_seconds = settle_seconds
        self._clock = clock
        self._seen: dict[str, _Seen] = {}

    def remaining(self, name: str, activity_fingerprint: str) -> float:
        """Seconds until the set is settled; any change in it starts the wait over."""
        now = self._clock()
        seen = self._seen.get(name)
        if seen is None or seen.fingerprint != activity_fingerprint:
            self._seen[name] = _Seen(activity_fingerprint, now)
            return self._settle_seconds
        return max(0.0, self._settle_seconds - (now - seen.since))

    def forget(self, name: str) -> None:
        self._seen.pop(name, None)
