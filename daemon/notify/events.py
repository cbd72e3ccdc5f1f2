"""Which status.json changes are notification events, and what an event says (the JSON payload).

An event is a job's document reaching a state in ``notify_on`` when the document seen before it
for that job, in this run of the daemon, was in another state. The first sighting of a job
only records its state when the job was in the store before this run began (the daemon's first
pass shows every job, finished long ago or not); a job new in this run and first seen already
ended (a set refused on arrival is created and failed in the same pass) is an event.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping, Sequence

from inbox_protocol.file_names import display_name
from site_builder import page_path, page_url

PAYLOAD_VERSION = 1
# metrics.evaluate.scored_on (stages/evaluate.py): which photos the scores are over
HELD_OUT_PHOTOS = "held-out photos"
TRAINING_VIEWS = "training views"


@dataclass(frozen=True)
class Event:
    kind: str  # the job state reached: "done", "failed" or "cancelled"
    document: Mapping[str, Any]  # the job's status.json

    @property
    def name(self) -> str:
        return f"job.{self.kind}"

    @property
    def key(self) -> tuple[str, str]:
        return (self.id, self.kind)

    # what daemon.journal.job_fields reads, so deliveries land under JOB_ID in the journal
    @property
    def id(self) -> str:
        return str(self.document["job_id"])

    @property
    def set_name(self) -> str:
        """On one line and valid text, whatever bytes the set's folder name holds (for mail and logs)."""
        return display_name(str(self.document.get("name") or self.id))

    @property
    def private(self) -> bool:
        return self.document.get("private") is True

    @property
    def page(self) -> str | None:
        """The job's page, relative to the outbox; None for a private job (see ``payload``)."""
        return None if self.private else page_path(self.id)

    @property
    def stage(self) -> str | None:
        stage = self.document.get("stage")
        return stage if isinstance(stage, str) else None


class EventTracker:
    def __init__(self, notify_on: Iterable[str], known_jobs: Iterable[str]):
        self._notify_on = frozenset(notify_on)
        self._known = frozenset(known_jobs)  # in the store before this run: a first sighting is only a baseline
        self._states: dict[str, str] = {}

    def observe(self, documents: Sequence[Mapping[str, Any]]) -> list[Event]:
        events = []
        for document in documents:
            if not isinstance(document, Mapping):
                continue
            job_id, state = document.get("job_id"), document.get("state")
            if not isinstance(job_id, str) or not isinstance(state, str):
                continue
            previous = self._states.get(job_id)
            self._states[job_id] = state
            if state not in self._notify_on or previous == state:
                continue
            if previous is None and job_id in self._known:
                continue  # ended before this run (the first pass brings every job), or still going
            events.append(Event(state, document))
        return events


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def metrics_summary(document: Mapping[str, Any]) -> dict[str, Any]:
    """The scores (metrics.evaluate: on held-out photos, or on the training views of a set too
    small to hold one out, as ``scored_on`` says) and the published model's size (metrics.publish,
    else what training ended with); null where a stage did not run or could not tell."""
    metrics = document.get("metrics") or {}
    evaluate = metrics.get("evaluate") or {}
    publish = metrics.get("publish") or {}
    train = metrics.get("train") or {}
    gaussians = _number(publish.get("gaussians"))
    psnr = _number(evaluate.get("psnr"))
    return {
        "scored_on": None if psnr is None else evaluate.get("scored_on") or HELD_OUT_PHOTOS,
        "psnr": psnr,
        "ssim": _number(evaluate.get("ssim")),
        "lpips": _number(evaluate.get("lpips")),
        "gaussians": gaussians if gaussians is not None else _number(train.get("gaussians")),
    }


def seconds_taken(document: Mapping[str, Any]) -> float | None:
    started = parse_time(document.get("started_at")) or parse_time(document.get("created_at"))
    finished = parse_time(document.get("finished_at"))
    if started is None or finished is None or finished < started:
        return None
    return (finished - started).total_seconds()


def payload(event: Event, public_url: str = "") -> dict[str, Any]:
    """The webhook's JSON body. A private job's has no page or url: its link is the key to its
    page, and a webhook's receiver (a team's chat channel, say) is seldom only the set's owner,
    who has the link in the status.json beside the set."""
    document = event.document
    error = document.get("error")
    return {
        "payload_version": PAYLOAD_VERSION,
        "event": event.name,
        "event_id": f"{event.id}/{event.name}",  # the same for a repeat: lets a receiver drop it
        "job_id": event.id,
        "name": event.set_name,
        "attempt": document.get("attempt"),
        "state": document.get("state"),
        "stage": event.stage,
        "message": document.get("message"),
        "error": dict(error) if isinstance(error, Mapping) else None,
        "warnings": list(document.get("warnings") or []),
        "metrics": metrics_summary(document),
        "created_at": document.get("created_at"),
        "started_at": document.get("started_at"),
        "finished_at": document.get("finished_at"),
        "seconds": seconds_taken(document),
        "host": document.get("host"),
        "private": event.private,
        "page": event.page,
        "url": page_url(event.id, public_url) if event.page else None,
    }
