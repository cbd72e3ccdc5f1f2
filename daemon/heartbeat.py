"""``<outbox>/health.json``: the daemon's heartbeat, for the health page and for anyone's monitor.

Rewritten every ``heartbeat_seconds`` and at once when what it says changes (a job starts or
ends, the queue grows); a reader that sees ``heartbeat_at`` older than a few intervals knows
the daemon is down or stuck, which no file written only on change could tell it.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

from daemon.status_document import iso
from stages.atomic_files import atomic_write_json, remove_temporaries

log = logging.getLogger("instarecon")

HEALTH_FILE = "health.json"
SCHEMA_VERSION = 1


class Heartbeat:
    def __init__(
        self,
        outbox: Path,
        interval_seconds: float,
        version: str,
        host: str,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ):
        self.path = outbox / HEALTH_FILE
        self._interval = interval_seconds
        self._version = version
        self._host = host
        self._clock = clock
        self._now = now
        self._started_at = iso(now())
        self._last_beat: float | None = None
        self._last_facts: dict[str, Any] | None = None
        self._failing = False
        remove_temporaries(self.path)  # of a daemon killed mid-write; this daemon is the one writer

    def beat(
        self,
        state: Literal["idle", "running", "stopped"],
        queue: Mapping[str, int],
        current_job: Mapping[str, Any] | None,
        problems: tuple[str, ...] = (),
    ) -> bool:
        """Write health.json if an interval has passed or the facts changed; True if written."""
        facts = {
            "state": state,
            "queue": dict(queue),
            "current_job": dict(current_job) if current_job else None,
            "problems": list(problems),
        }
        due = self._last_beat is None or self._clock() - self._last_beat >= self._interval
        if not due and _without_progress(facts) == _without_progress(self._last_facts):
            return False
        document = {
            "schema_version": SCHEMA_VERSION,
            "version": self._version,
            "host": self._host,
            "started_at": self._started_at,
            "heartbeat_at": iso(self._now()),
            "interval_seconds": self._interval,
            **facts,
        }
        try:
            atomic_write_json(self.path, document)
        except OSError as error:
            if not self._failing:
                log.warning("cannot write %s (%s); the health page will show the daemon as down", self.path, error.strerror)
            self._failing = True
            return False
        self._failing = False
        self._last_beat = self._clock()
        self._last_facts = facts
        return True


def _without_progress(facts: Mapping[str, Any] | None) -> Any:
    """What must reach the page at once; progress alone waits for the next interval."""
    if not facts or not facts.get("current_job"):
        return facts
    return {**facts, "current_job": {**facts["current_job"], "progress": None}}
