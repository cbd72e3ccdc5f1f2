"""The public view of a job: the status.json that users read. Built from the stored
record and nothing else, so every writer produces the same document.

What the daemon and its stages wrote for the person (message, warnings, error, the reasons photos
were left out, metrics) is written without server paths in the first place (stages/base.py, "Two
audiences"); should one slip through all the same (an exception's text, a library's message),
the document names the configured folders short, as the log tail does."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from daemon.jobs.folders import JobFolders
from daemon.jobs.log import FolderNames, public_tail
from daemon.jobs.plan import planned_stages
from daemon.jobs.records import NOT_STARTED, JobError, StageRecord, StageState, iso
from daemon.store import JobRecord
from site_builder import page_path, page_url
from stages.registry import StageSpec

SCHEMA_VERSION = 1


def _stage_view(record: StageRecord | None, error: JobError | None, name: str) -> dict[str, Any]:
    if record is None:
        # a set refused before its first stage ran (bad job.toml, a link out of the inbox)
        refused_here = error is not None and error.stage == name
        record = StageRecord(StageState.FAILED) if refused_here else NOT_STARTED
    view = {"state": str(record.state), "started_at": record.started_at, "finished_at": record.finished_at,
            "seconds": record.seconds}
    if record.reused_from is not None:
        view["reused_from"] = record.reused_from
    return view


def _eta(job: JobRecord) -> float | None:
    """Seconds the running stage expects to have left, when it can tell."""
    if str(job.state) != "running" or not job.stage or job.stage not in job.stages:
        return None
    return job.stages[job.stage].eta_seconds


def build_status(job: JobRecord, pipeline: Sequence[StageSpec], folders: JobFolders,
                 folder_names: FolderNames | None = None, public_url: str = "") -> dict[str, Any]:
    """``folder_names`` shortens the configured folders' paths in the log lines (by default only the
    state folder's, which holds the job's work folder); ``public_url``, where the outbox is served,
    gives the job page's full address."""
    if folder_names is None:
        folder_names = FolderNames({"state": folders.work.parent.parent})
    stop_after = (job.options or {}).get("stop_after")
    plan = planned_stages(pipeline, stop_after)
    images = job.images or {"found": None, "accepted": None, "rejected": []}
    return {
        "schema_version": SCHEMA_VERSION,
        "job_id": job.id,
        "name": job.set_name,
        "attempt": job.attempt,
        "state": str(job.state),
        "stage": job.stage,
        "stages": {spec.name: _stage_view(job.stages.get(spec.name), job.error, spec.name) for spec in plan},
        "progress": round(float(job.progress), 1),
        "eta_seconds": _eta(job),
        "message": _public(job.message, folder_names),
        "host": job.host,
        "gpu": job.gpu,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "updated_at": iso(job.updated_at),
        "images": {
            "found": images.get("found"),
            "accepted": images.get("accepted"),
            "rejected": _public(list(images.get("rejected", [])), folder_names),
        },
        "metrics": _public(dict(job.metrics), folder_names),
        "outputs": {name: str(folders.output(path)) for name, path in job.outputs.items()},
        "options": dict(job.options) if job.options is not None else None,
        "warnings": _public(list(job.warnings), folder_names),
        "error": _public(job.error.to_json(), folder_names) if job.error else None,
        "log_tail": public_tail(folders.log, folder_names),
        # a private job's page is in <job_id>.<key>/: only this link (beside the set, and in its own folder) finds it
        "private": job.private,
        "page": page_path(folders.outbox.name),
        "page_url": page_url(folders.outbox.name, public_url),
    }


def _public(value: Any, folder_names: FolderNames) -> Any:
    """``value`` with the configured folders named short in every string in it."""
    if isinstance(value, str):
        return folder_names(value)
    if isinstance(value, list):
        return [_public(item, folder_names) for item in value]
    if isinstance(value, dict):
        return {key: _public(item, folder_names) for key, item in value.items()}
    return value


def outbox_copy(document: Mapping[str, Any], job_outbox: Path) -> dict[str, Any]:
    """The document as the outbox shows it, on a public web server: its outputs are the job's files
    there, named relative to its folder, not paths in the state folder."""
    published = {name: Path(path).name for name, path in document["outputs"].items()
                 if (job_outbox / Path(path).name).is_file()}
    return {**document, "outputs": published}
