"""Every path of one job, asked here and built nowhere else.

A job lives in three places: its work folder in the state folder (one folder per finished stage
with its ``result.json``, the job's log, and ``claims/<epoch>/`` where each claim of the job runs
its stages: their contexts, folders and ``error.json``), its folder in the outbox (what the site
publishes, which the site builder lays out; a private job's is named with a random key, so that
only its link finds it), and its status.json beside the set in the inbox (inside a folder set;
beside a .zip set, named after it).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from daemon.jobs.log import JOB_LOG_FILE
from inbox_protocol.photo_set import STATUS_FILE
from site_builder.job_page import job_folder
from stages.base import ERROR_FILE, RESULT_FILE

CLAIMS_DIR = "claims"


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

    def claim(self, epoch: int) -> Path:
        """Where the stages of one claim of the job work (daemon/run/claim_folder.py): a folder laid
        out as the job's own, whose finished stages are moved into the job's folder only while the
        claim holds."""
        return self.work / CLAIMS_DIR / str(epoch)

    @property
    def claims(self) -> Path:
        return self.work / CLAIMS_DIR

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


def link_tree(source: Path, destination: Path) -> None:
    """``source``'s tree at ``destination``, its files hard-linked (copied where a link cannot be
    made: another file system). Safe to share because every file in a job's folders is written once,
    by rename, and never changed in place."""
    shutil.copytree(source, destination, symlinks=True, copy_function=_link_or_copy)


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination, follow_symlinks=False)
    except OSError:
        shutil.copy2(source, destination)
