"""Where a job's files are (the layout of the README's three folders), and what the store keeps of its stages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from daemon.config import Settings
from daemon.jobs.folders import JobFolders, work_folder
from daemon.jobs.records import JobError, StageRecord, StageState


@dataclass(frozen=True)
class Job:
    id: str
    set_name: str
    source_kind: str

    @property
    def outbox_name(self) -> str:
        return self.id


def test_a_folder_sets_job_lives_in_the_state_folder_the_outbox_and_beside_its_photos():
    settings = Settings(inbox=Path("/srv/in"), outbox=Path("/srv/out"), state=Path("/var/lib/ir"))
    folders = JobFolders.of(settings, Job("garden-2", "garden", "folder"))
    assert folders.work == Path("/var/lib/ir/jobs/garden-2")
    assert (folders.stage("sfm"), folders.context("sfm")) == (
        Path("/var/lib/ir/jobs/garden-2/sfm"), Path("/var/lib/ir/jobs/garden-2/sfm.context.json"))
    assert (folders.result("train"), folders.error("train")) == (
        Path("/var/lib/ir/jobs/garden-2/train/result.json"), Path("/var/lib/ir/jobs/garden-2/train/error.json"))
    assert folders.output("publish/scene.ply") == Path("/var/lib/ir/jobs/garden-2/publish/scene.ply")
    assert folders.log == Path("/var/lib/ir/jobs/garden-2/job.log")
    assert (folders.outbox, folders.outbox_status) == (Path("/srv/out/garden-2"), Path("/srv/out/garden-2/status.json"))
    assert folders.status_beside_set == Path("/srv/in/garden/status.json")


def test_a_zip_sets_status_lies_beside_the_zip():
    folders = JobFolders.of(Settings(inbox=Path("/srv/in")), Job("trip-1", "trip.zip", "zip"))
    assert folders.status_beside_set == Path("/srv/in/trip.zip.status.json")


@pytest.mark.parametrize("job_id", ["", "../garden-1", "a/b", ".hidden", "a\\b"])
def test_an_id_that_could_name_another_folder_is_refused(job_id):
    with pytest.raises(ValueError):
        work_folder(Path("/var/lib/ir/jobs"), job_id)
    with pytest.raises(ValueError):
        JobFolders.of(Settings(), Job(job_id, "garden", "folder"))


def test_a_stage_record_ends_keeping_its_start_and_dropping_its_estimate():
    start = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)
    running = StageRecord.started(start).with_eta(90.0)
    assert running.to_json() == {"state": "running", "started_at": "2026-12-04T12:00:00Z", "finished_at": None,
                                 "seconds": None, "eta_seconds": 90.0}
    done = running.ended(StageState.DONE, 61.5, start + timedelta(seconds=62))
    assert done.to_json() == {"state": "done", "started_at": "2026-12-04T12:00:00Z",
                              "finished_at": "2026-12-04T12:01:02Z", "seconds": 61.5}
    assert StageRecord.from_json(done.to_json()) == done and StageRecord.from_json(running.to_json()) == running


def test_a_failure_round_trips_through_its_stored_form():
    error = JobError("sfm", "only 2 of 30 photos could be placed", "take more overlapping photos")
    assert JobError.from_json(error.to_json()) == error
    assert error.to_json() == {"stage": "sfm", "message": "only 2 of 30 photos could be placed",
                               "hint": "take more overlapping photos"}
