"""The daemon's heartbeat: its row in the job store's daemons table (for `instarecon status` on
any host) and ``<outbox>/health.json`` (for the health page and anyone's monitor).

Written every ``heartbeat_seconds`` and at once when what it says changes (a job starts or
ends, the queue grows); a reader that sees ``heartbeat_at`` older than a few intervals knows
the daemon is down or stuck, which no file written only on change could tell it.

Several daemons sharing one outbox each write the whole of health.json: every daemon known to
the job store, this one as it is now and the others as the store last heard from them, with
the overall state on top (running if any daemon runs a job, stopped when none is left). Each
write replaces the file whole, so the last writer's view is always complete. When the store
does not answer, the others are shown as last read, and the problem says so.

health.json is public: a private job running is shown there as ``{"private": true}`` with its stage
and progress, without its id or name (the job store's row, which only `instarecon status` reads,
keeps them).
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

from daemon.jobs.records import iso
from daemon.store import DaemonRecord, DaemonRegistry
from daemon.store.outage import describe, is_disk_full, is_outage
from stages.atomic_files import atomic_write_json, remove_temporaries

log = logging.getLogger("instarecon")

HEALTH_FILE = "health.json"
SCHEMA_VERSION = 2


class Heartbeat:
    def __init__(
        self,
        outbox: Path,
        interval_seconds: float,
        version: str,
        host: str,
        registry: DaemonRegistry,
        clock: Callable[[], float] = time.monotonic,
        process: str | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        gpu: str | None = None,
    ):
        self.path = outbox / HEALTH_FILE
        self._interval = interval_seconds
        self._version = version
        self._host = host
        self._registry = registry
        self._clock = clock
        self._now = now
        self._started_at = now()
        self._last_beat: float | None = None
        self._last_facts: dict[str, Any] | None = None
        self._others: list[dict[str, Any]] = []  # the other daemons, as last read from the store
        self._failing = False
        self._registry_failing = False
        self._name_lost = False
        self._process = process
        self._gpu = gpu
        # of a daemon killed mid-write; other daemons may be writing theirs this very moment
        remove_temporaries(self.path)

    def beat(
        self,
        state: Literal["idle", "running", "stopped"],
        queue: Mapping[str, int],
        current_job: Mapping[str, Any] | None,
        problems: tuple[str, ...] = (),
    ) -> bool:
        """Write health.json (and the store's row) if an interval has passed or the facts changed;
        True if written."""
        facts = {
            "state": state,
            "queue": dict(queue),
            "current_job": dict(current_job) if current_job else None,
            "problems": list(problems),
        }
        due = self._last_beat is None or self._clock() - self._last_beat >= self._interval
        if not due and _without_progress(facts) == _without_progress(self._last_facts):
            return False
        now = self._now()
        own = {
            "host": self._host,
            "gpu": self._gpu,
            "version": self._version,
            "state": state,
            "alive": state != "stopped",
            "started_at": iso(self._started_at),
            "heartbeat_at": iso(now),
            "seconds_since_heartbeat": 0.0,
            "interval_seconds": self._interval,
            "current_job": facts["current_job"],
            "problems": facts["problems"],
        }
        self._tell_store(own)
        shown, others = _without_private_jobs(own), [_without_private_jobs(entry) for entry in self._others]
        daemons = sorted([shown, *others], key=lambda entry: entry["host"])
        document = {
            "schema_version": SCHEMA_VERSION,
            "version": self._version,
            "host": self._host,  # the daemon that wrote this file
            "started_at": own["started_at"],
            "heartbeat_at": own["heartbeat_at"],
            "interval_seconds": self._interval,
            **overall(shown, others),
            "queue": facts["queue"],
            "daemons": daemons,
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

    def _tell_store(self, own: Mapping[str, Any]) -> None:
        """Our row in, the others' out; a store that does not answer leaves the others as last read."""
        try:
            written = self._registry.beat(
                host=self._host, version=self._version, pid=os.getpid(), started_at=self._started_at,
                interval_seconds=self._interval, state=own["state"], current_job=own["current_job"],
                problems=own["problems"], process=self._process, gpu=self._gpu,
            )
            if not written and not self._name_lost:
                log.warning("the daemon name %s was taken by another daemon while this one was silent; this one's "
                            "row is no longer written (its jobs are safe: each lease is held by one process)", self._host)
            self._name_lost = not written
            self._others = [_entry(record) for record in self._registry.daemons() if record.host != self._host]
        except Exception as error:
            if not is_outage(error):
                raise
            if not self._registry_failing:  # the outage itself is told by whoever met it first
                trouble = "cannot write, its disk is full" if is_disk_full(error) else "does not answer"
                log.info("heartbeat: the job store %s (%s); health.json shows the other daemons as last heard",
                         trouble, describe(error))
            self._registry_failing = True
            return
        self._registry_failing = False


def overall(own: Mapping[str, Any], others: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The top of health.json: one daemon's view for one daemon; for several, running if any runs
    a job, idle if any is alive, stopped when none is."""
    alive = [entry for entry in [own, *others] if entry["alive"]]
    running = [entry for entry in alive if entry["state"] == "running"]
    state = "running" if running else "idle" if alive else "stopped"
    current = own["current_job"] if own["state"] == "running" else running[0]["current_job"] if running else None
    told = [own, *(entry for entry in others if entry["alive"])]  # a silent daemon's problems are stale
    problems = [f"{entry['host']}: {text}" if others else text for entry in told for text in entry["problems"]]
    return {"state": state, "current_job": current, "problems": problems}


def _without_private_jobs(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A daemon's entry as health.json shows it: a private job it runs without its id and name."""
    job = entry["current_job"]
    if not job or not job.get("private"):
        return dict(entry)
    return {**entry, "current_job": {"private": True, "job_id": None, "name": None, "stage": job.get("stage"),
                                     "progress": job.get("progress")}}


def _entry(record: DaemonRecord) -> dict[str, Any]:
    return {
        "host": record.host,
        "gpu": record.gpu,
        "version": record.version,
        "state": record.state,
        "alive": record.alive,
        "started_at": iso(record.started_at),
        "heartbeat_at": iso(record.seen_at),
        "seconds_since_heartbeat": round(record.seconds_since_seen, 1),
        "interval_seconds": record.interval_seconds,
        "current_job": dict(record.current_job) if record.current_job else None,
        "problems": list(record.problems),
    }


def _without_progress(facts: Mapping[str, Any] | None) -> Any:
    """What must reach the page at once; progress alone waits for the next interval."""
    if not facts or not facts.get("current_job"):
        return facts
    return {**facts, "current_job": {**facts["current_job"], "progress": None}}
