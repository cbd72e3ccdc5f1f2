"""Every path of one job, asked here and built nowhere else.

A job lives in three places: its work folder in the state folder (one folder per stage, each
stage's context, ``result.json`` or ``error.json``, the job's log), its folder in the outbox (what
the site publishes, which the site builder lays out; a private job's is named with a random key, so
that only its link finds it), and its status.json beside the set in the inbox (inside a folder set;
beside a .zip set, named after it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from daemon.jobs.log import JOB_LOG_FILE
from inbox_protocol.photo_set import STATUS_FILE
from site_builder.job_page import job_folder
from stages.base import ERROR_FILE, RESULT_FILE


class _Places(Protocol):
    inbox: Path
    outbox: Path

    @property
    def jobs_dir(self) -> Path: ...


class _Job(Protocol):
    id: str
    set_name: str
    source_kind: str

    @property
    def outbox_name(self) -> str: ...  # the id, or a private job's <id>.<page_key>


def work_folder(jobs_dir: Path, job_id: str) -> Path:
    """The job's folder under ``<state>/jobs``; refuses ids that could name anything else."""
    if not job_id or "/" in job_id or "\\" in job_id or job_id.startswith("."):
        raise ValueError(f"not a job id: {job_id!r}")
    return jobs_dir / job_id


def status_beside_set(inbox: Path, set_name: str, source_kind: str) -> Path:
    if source_kind == "zip":
        return inbox / f"{set_name}.{STATUS_FILE}"
    return inbox / set_name / STATUS_FILE


@dataclass(frozen=True)
class JobFolders:
    work: Path  # <state>/jobs/<job_id>
    outbox: Path  # <outbox>/<job_id>, or for a private job <outbox>/<job_id>.<page_key>
    status_beside_set: Path  # <inbox>/<set>/status.json, or <inbox>/<set>.zip.status.json

    @classmethod
    def of(cls, places: _Places, job: _Job) -> JobFolders:
        """``places``: the daemon's Settings (or anything with its inbox, outbox and jobs_dir)."""
        return cls(work_folder(places.jobs_dir, job.id), job_folder(places.outbox, job.outbox_name),
                   status_beside_set(places.inbox, job.set_name, job.source_kind))

    def stage(self, name: str) -> Path:
        """The stage's output folder; a later stage reads an earlier one's here."""
        return self.work / name

    def context(self, name: str) -> Path:
        """What the stage's child process is handed (stages.base.StageContext as JSON)."""
        return self.work / f"{name}.context.json"

    def result(self, name: str) -> Path:
        """Written by the stage's child as it finishes: the stage is done once this exists."""
        return self.stage(name) / RESULT_FILE

    def error(self, name: str) -> Path:
        """Written by the stage's child when it fails for a reason the person can act on."""
        return self.stage(name) / ERROR_FILE

    def output(self, relative: str) -> Path:
        """A file a stage's result names (its ``outputs`` are relative to the work folder)."""
        return self.work / relative

    @property
    def log(self) -> Path:
        return self.work / JOB_LOG_FILE

    @property
    def outbox_status(self) -> Path:
        """The outbox's copy of status.json, which the job's page and the gallery read."""
        return self.outbox / STATUS_FILE
