"""status.json as the public reads it: the job's page as a link, and, in the outbox copy, the job's
files named relative to its folder there rather than by their paths on the server."""

from __future__ import annotations

from pathlib import Path

from daemon.jobs.log import FolderNames
from daemon.jobs.records import StageRecord, StageState
from daemon.report.status_document import build_status, outbox_copy
from daemon.store import JobState
from stages.registry import PIPELINE
from tests.daemon_harness import validate_status, work_folders


def finished_job(store, tmp_path: Path):
    job = store.create_job(set_name="garden", source_path=tmp_path / "inbox" / "garden", source_kind="folder",
                           fingerprint="f" * 64, state=JobState.QUEUED, message="queued")
    store.claim_next()
    outputs = {"ingest.manifest": "ingest/manifest.json", "publish.scene_ply": "publish/scene.ply",
               "publish.poster": "publish/poster.jpg"}
    store.set_stage(job.id, "publish", StageRecord(StageState.DONE), "publish: done", outputs=outputs)
    store.transition(job.id, JobState.DONE, "done after publish", from_states=(JobState.RUNNING,))
    return store.get(job.id)


def test_the_page_is_linked_relative_to_the_outbox_and_in_full_where_the_outbox_is_served(opened, tmp_path):
    job = finished_job(opened(), tmp_path)
    served = validate_status(build_status(job, PIPELINE, work_folders(job, tmp_path / "state" / "jobs"),
                                          public_url="https://splats.example.org/"))
    assert served["page"] == "garden-1/index.html"
    assert served["page_url"] == "https://splats.example.org/garden-1/index.html"
    unserved = validate_status(build_status(job, PIPELINE, work_folders(job, tmp_path / "state" / "jobs")))
    assert (unserved["page"], unserved["page_url"]) == ("garden-1/index.html", None)


def test_the_outbox_copy_names_only_the_published_files_relative_to_the_jobs_folder(opened, tmp_path):
    job = finished_job(opened(), tmp_path)
    jobs_dir = tmp_path / "state" / "jobs"
    document = validate_status(build_status(job, PIPELINE, work_folders(job, jobs_dir)))
    assert document["outputs"]["publish.scene_ply"] == str(jobs_dir / "garden-1" / "publish" / "scene.ply")
    job_outbox = tmp_path / "outbox" / "garden-1"
    job_outbox.mkdir(parents=True)
    (job_outbox / "scene.ply").write_bytes(b"ply\n")  # copied; the poster is not (yet)
    public = validate_status(outbox_copy(document, job_outbox))
    assert public["outputs"] == {"publish.scene_ply": "scene.ply"}
    assert str(tmp_path) not in str(public["outputs"])
    assert document["outputs"]["ingest.manifest"].startswith(str(jobs_dir))  # the copy beside the set keeps paths


def test_a_server_path_that_slips_into_what_the_person_reads_is_named_short(opened, tmp_path):
    """An exception's text in a message, a library's in a warning: the folders come out short, as in
    the log tail; the copy beside the set still names its files by their paths in the state folder."""
    store = opened()
    job = store.create_job(set_name="garden", source_path=tmp_path / "inbox" / "garden", source_kind="folder",
                           fingerprint="f" * 64, state=JobState.QUEUED, message="queued")
    store.claim_next()
    state, home = tmp_path / "state", tmp_path / "home"
    store.set_stage(job.id, "publish", StageRecord(StageState.DONE), "publish: done",
                    outputs={"publish.scene_ply": "publish/scene.ply"},
                    warnings=[f"cannot read {home}/.cache/torch/hub/checkpoints/alex.pth"],
                    metrics={"sfm": {"unplaced": [{"file": "a.jpg", "reason": f"{tmp_path}/inbox/garden/a.jpg: odd"}]}})
    store.transition(job.id, JobState.FAILED, f"internal error: {state}/jobs/garden-1/x is gone",
                     from_states=(JobState.RUNNING,),
                     error={"stage": "publish", "message": f"{state}/jobs/garden-1/x is gone", "hint": f"see {state}"})
    names = FolderNames.of(tmp_path / "inbox", tmp_path / "outbox", state, home=home)
    document = validate_status(build_status(store.get(job.id), PIPELINE, work_folders(store.get(job.id), state / "jobs"), names))
    assert document["message"] == "internal error: state/jobs/garden-1/x is gone"
    assert document["error"] == {"stage": "publish", "message": "state/jobs/garden-1/x is gone", "hint": "see state"}
    assert document["warnings"] == ["cannot read ~/.cache/torch/hub/checkpoints/alex.pth"]
    assert document["metrics"]["sfm"]["unplaced"] == [{"file": "a.jpg", "reason": "inbox/garden/a.jpg: odd"}]
    assert document["outputs"]["publish.scene_ply"] == str(state / "jobs" / "garden-1" / "publish" / "scene.ply")
    # the packaged service's home is its state folder: named as that
    assert FolderNames.of(tmp_path / "inbox", tmp_path / "outbox", state, home=state)(f"{state}/.cache") == "state/.cache"
