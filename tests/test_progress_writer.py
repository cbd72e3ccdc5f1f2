"""Progress reaches the store at a bounded rate, never goes backwards, and loses no step."""

from __future__ import annotations

import time
from pathlib import Path

from daemon.jobs.records import StageRecord, StageState
from daemon.run.progress_writer import PROGRESS_WRITE_SECONDS, ProgressWriter
from daemon.store import JobState, open_store
from daemon.store.outage import StoreOutage
from stages.registry import StageSpec

PLAN = (StageSpec("ingest", "x:Y", (), 60, progress_weight=1.0), StageSpec("sfm", "x:Z", (), 60, progress_weight=3.0))


def test_held_back_update_is_written_at_the_next_tick_and_progress_only_grows(tmp_path: Path):
    store = open_store(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    job = store.create_job(set_name="s", source_path=tmp_path, source_kind="folder", fingerprint="f",
                           state=JobState.QUEUED, message="")
    store.claim_next()  # progress is the running job's, written only by the process that runs it
    changes = []
    writer = ProgressWriter(store, StoreOutage(), job.id, "sfm", PLAN, {"ingest": StageRecord(StageState.DONE)}, 25.0, lambda: changes.append(1))

    writer.update(40.0, "features 2/5")
    assert (store.get(job.id).progress, store.get(job.id).message) == (55.0, "sfm: features 2/5")
    writer.update(50.0, "matching")  # too soon after the last write: held back
    writer.update(10.0, "matching")  # a stage restarting its count must not move the job backwards
    assert store.get(job.id).message == "sfm: features 2/5"
    writer.flush()
    assert store.get(job.id).message == "sfm: features 2/5"
    time.sleep(PROGRESS_WRITE_SECONDS + 0.05)
    writer.flush()
    assert (store.get(job.id).progress, store.get(job.id).message) == (62.5, "sfm: matching")
    writer.update(100.0, "done")  # 100 % is always written at once
    assert (store.get(job.id).progress, store.get(job.id).message) == (100.0, "sfm: done")
    assert len(changes) == 3
