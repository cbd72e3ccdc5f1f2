"""When a set counts as complete: nothing in it changed for a while (settle_seconds, or the short
ready_quiet_seconds once it holds READY); and when a set missing from the inbox counts as gone:
missing for settle_seconds.

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
        self._missing: dict[str, float] = {}  # set name -> when it was first found missing

    def remaining(self, name: str, activity_fingerprint: str, quiet_seconds: float | None = None) -> float:
        """Seconds until the set has been unchanged for ``quiet_seconds`` (by default the settle
        time); any change in it starts the wait over."""
        quiet = self._settle_seconds if quiet_seconds is None else quiet_seconds
        now = self._clock()
        seen = self._seen.get(name)
        if seen is None or seen.fingerprint != activity_fingerprint:
            self._seen[name] = _Seen(activity_fingerprint, now)
            return quiet
        return max(0.0, quiet - (now - seen.since))

    def forget(self, name: str) -> None:
        self._seen.pop(name, None)

    def missing_remaining(self, name: str) -> float:
        """Seconds until a set not found in the inbox counts as gone: the same quiet time, counted
        from the first look that missed it, so a folder renamed away and back (an upload tool's
        dance) or one lost event is never taken for a removal."""
        now = self._clock()
        since = self._missing.setdefault(name, now)
        return max(0.0, self._settle_seconds - (now - since))

    def found(self, name: str) -> None:
        """The set is in the inbox (again): its missing time starts over."""
        self._missing.pop(name, None)
