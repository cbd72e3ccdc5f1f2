"""The static website in the outbox: a gallery of every job, a page per job with the WebGL
viewer, and a health page. Plain data in (the jobs' status.json documents, as ``JobView``),
files out, each written atomically; it imports neither the job store nor torch.

Entry points: ``build_site`` for everything at once, ``write_job_page`` and ``write_gallery``
when one job changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from site_builder.asset_release import install_assets, remove_other_releases
from site_builder.gallery import write_gallery
from site_builder.health_page import HEALTH_JSON, write_health_page
from site_builder.job_page import page_path, page_url, write_job_page
from site_builder.job_view import JobView, job_view

__all__ = ["HEALTH_JSON", "JobView", "build_site", "job_view", "page_path", "page_url", "write_gallery", "write_job_page"]


def build_site(outbox: Path, jobs: Sequence[JobView], generator_version: str, pages_of: str | None = None) -> int:
    """Bring the whole site up to date; returns how many files changed. ``pages_of``: write the
    pages only of the jobs this host runs or ran (and of those no host has taken yet), where
    several daemons share the outbox and each writes its own jobs' pages."""
    outbox.mkdir(parents=True, exist_ok=True)
    changed = install_assets(outbox) + write_health_page(outbox, generator_version)
    mine = [job for job in jobs if pages_of is None or job.host in (None, pages_of)]
    changed += sum(write_job_page(outbox, job, generator_version) for job in mine)
    changed += write_gallery(outbox, jobs, generator_version)
    return changed + remove_other_releases(outbox)
