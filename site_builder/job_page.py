"""One job's page, ``<outbox>/<job_id>/index.html``: the viewer with the job's facts over it, or,
before the scene exists, the job's progress, read live from its status.json."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from site_builder.asset_release import assets_url
from site_builder.job_view import JobView
from site_builder.site_files import write_if_changed
from site_builder.templates import render

PAGE_FILE = "index.html"


def page_path(job_id: str) -> str:
    """The job's page, relative to the outbox: what a link from anywhere in the outbox needs."""
    return f"{quote(job_id)}/{PAGE_FILE}"


def page_url(job_id: str, public_url: str) -> str | None:
    """The page's full address where the outbox is served at ``public_url``; None without one."""
    if not public_url:
        return None
    return (public_url if public_url.endswith("/") else public_url + "/") + page_path(job_id)


def job_folder(outbox: Path, job_id: str) -> Path:
    """The job's folder in the outbox; refuses ids that could name anything else."""
    if not job_id or "/" in job_id or "\\" in job_id or job_id.startswith("."):
        raise ValueError(f"not a job id: {job_id!r}")
    return outbox / job_id


def write_job_page(outbox: Path, job: JobView, generator_version: str) -> bool:
    """Write the page unless it is already up to date; True if written."""
    page = render("job.html", job=job, version=generator_version, assets=assets_url("../"))
    return write_if_changed(job_folder(outbox, job.job_id) / PAGE_FILE, page)
