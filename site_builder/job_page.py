"""One job's page, ``<outbox>/<job_id>/index.html``: the viewer with the job's facts over it, or,
before the scene exists, the job's progress, read live from its status.json. A private job's folder
is named ``<job_id>.<key>`` by the daemon; the page is the same."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, unquote

from site_builder.asset_release import assets_url
from site_builder.job_view import JobView
from site_builder.site_files import write_if_changed
from site_builder.templates import render

PAGE_FILE = "index.html"


def page_path(folder: str) -> str:
    """The page of the job whose outbox folder is ``folder``, relative to the outbox: what a link
    from anywhere in the outbox needs."""
    return f"{quote(folder)}/{PAGE_FILE}"


def folder_of_page(page: str) -> str:
    """The outbox folder that ``page_path`` made ``page`` for (status.json's ``page``)."""
    return unquote(page.removesuffix(f"/{PAGE_FILE}"))


def page_url(folder: str, public_url: str) -> str | None:
    """The page's full address where the outbox is served at ``public_url``; None without one."""
    if not public_url:
        return None
    return (public_url if public_url.endswith("/") else public_url + "/") + page_path(folder)


def job_folder(outbox: Path, folder: str) -> Path:
    """The job's folder in the outbox (``folder``: its id, or a private job's id and key); refuses
    names that could name anything else."""
    if not folder or "/" in folder or "\\" in folder or folder.startswith("."):
        raise ValueError(f"not a job id: {folder!r}")
    return outbox / folder


def write_job_page(outbox: Path, job: JobView, generator_version: str) -> bool:
    """Write the page unless it is already up to date; True if written."""
    page = render("job.html", job=job, version=generator_version, assets=assets_url("../"))
    return write_if_changed(job_folder(outbox, job.folder) / PAGE_FILE, page)
