"""A running stage's progress, written into the job store at a bounded rate."""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

from daemon.jobs.plan import overall_progress
from daemon.jobs.records import NOT_STARTED, StageRecord
from daemon.store import JobStore
from daemon.store.outage import StoreOutage, is_outage
from stages.registry import StageSpec

PROGRESS_WRITE_SECONDS = 0.5  # at most this often to the store, always at 100 %


class ProgressWriter:
    """Stage progress into the store at a bounded rate; a held-back update is written
    on the next tick, so a slow step never shows the message of the step before it. While the
    store does not answer, the newest update waits for the next tick: the stage never does.

    ``stage_records`` are the job's as the stage starts (the running stage's among them); the writer
    keeps its own copy, in which only the running stage's estimate of the time left changes, and
    writes it whole with that estimate."""

    def __init__(self, store: JobStore, outage: StoreOutage, job_id: str, stage: str, plan: Sequence[StageSpec],
                 stage_records: Mapping[str, StageRecord], start: float, on_change: Callable[[], None]):
        self._store = store
        self._outage = outage
        self._job_id = job_id
        self._stage = stage
        self._plan = plan
        self._records = dict(stage_records)
        self._on_change = on_change
        self._best = start  # overall progress never goes backwards
        self._last_write = 0.0
        self._pending: tuple[float, str, float | None] | None = None
        self._stages_unwritten = False  # an estimate changed in the records but not yet in the store

    def update(self, percent: float, message: str, eta_seconds: float | None = None) -> None:
        overall = max(self._best, overall_progress(self._plan, self._records, self._stage, percent))
        self._best = overall
        self._pending = (overall, f"{self._stage}: {message}" if message else self._stage, eta_seconds)
        if percent >= 100.0 or time.monotonic() - self._last_write >= PROGRESS_WRITE_SECONDS:
            self._write()

    def flush(self) -> None:
        """Called at every poll of the child: write what was held back once its time has come."""
        if self._pending is not None and time.monotonic() - self._last_write >= PROGRESS_WRITE_SECONDS:
            self._write()

    def _write(self) -> None:
        pending = self._pending
        overall, message, eta_seconds = pending
        self._pending = None
        self._last_write = time.monotonic()
        fields: dict[str, Any] = {"progress": overall, "message": message}
        record = self._records.get(self._stage, NOT_STARTED)
        if record.eta_seconds != eta_seconds:
            # the estimate lives in the running stage's record: it ends with the stage
            self._records[self._stage] = record.with_eta(eta_seconds)
            self._stages_unwritten = True
        if self._stages_unwritten:
            fields["stages"] = dict(self._records)
        try:
            self._store.update_fields(self._job_id, owner_only=True, **fields)
        except Exception as error:
            if not is_outage(error):
                raise
            self._outage.failed(error, "recording a stage's progress")
            self._pending = pending  # tried again at the next tick
            return
        self._stages_unwritten = False
        self._outage.answered(wrote=True)
        self._on_change()
