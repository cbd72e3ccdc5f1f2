"""One job's page, ``<outbox>/<job_id>/index.html``: the viewer with the job's facts over it, or,
before the scene exists, the job's progress, read live from its status.json."""

from __future__ import annotations

from pathlib import Path

from site_builder.assets import assets_url
from site_builder.job_view import JobView
from site_builder.site_files import write_if_changed
from site_builder.templates import render

PAGE_FILE = "index.html"


def job_folder(outbox: Path, job_id: str) -> Path:
    """The job's folder in the outbox; refuses ids that could name anything else."""
    if not job_id or "/" in job_id or "\\" in job_id or job_id.startswith("."):
        raise ValueError(f"not a job id: {job_id!r}")
    return outbox / job_id


def write_job_page(outbox: Path, job: JobView, generator_version: str) -> bool:
    """Write the page unless it is already up to date; True if written."""
    page = render("job.html", job=job, version=generator_version, assets=assets_url("../"))
    return write_if_changed(job_folder(outbox, job.job_id) / PAGE_FILE, page)
