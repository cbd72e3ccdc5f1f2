"""The gallery, ``<outbox>/index.html``: every job, newest first, in static pages of
``PAGE_SIZE`` (index.html, page-2.html, ...), so thousands of jobs cost the browser one page;
and ``jobs.json``, the same list for scripts. Private jobs are not in either, nor counted: their
pages are found by their links alone."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from site_builder.asset_release import assets_url
from site_builder.job_page import page_path
from site_builder.job_view import COVER_FILE, STAGE_WORDS, THUMBNAIL_FILE, JobView
from site_builder.site_files import write_if_changed
from site_builder.templates import render

PAGE_SIZE = 60
INDEX_JSON = "jobs.json"
_EXTRA_PAGE = re.compile(r"page-(\d+)\.html")


@dataclass(frozen=True)
class GalleryPage:
    number: int
    count: int

    @property
    def file(self) -> str:
        return page_file(self.number)

    @property
    def previous(self) -> str | None:
        return page_file(self.number - 1) if self.number > 1 else None

    @property
    def next(self) -> str | None:
        return page_file(self.number + 1) if self.number < self.count else None


def page_file(number: int) -> str:
    return "index.html" if number == 1 else f"page-{number}.html"


def newest_first(jobs: Sequence[JobView]) -> list[JobView]:
    return sorted(jobs, key=lambda job: (job.created_at or "", job.job_id), reverse=True)


def write_gallery(outbox: Path, jobs: Sequence[JobView], generator_version: str, page_size: int = PAGE_SIZE) -> int:
    """Write the gallery pages and jobs.json, remove pages there are no longer jobs for; returns
    how many files changed. Private jobs are left out."""
    ordered = newest_first([job for job in jobs if not job.private])
    counts = sorted(Counter(job.state for job in ordered).items(), key=lambda item: (-item[1], item[0]))
    page_count = max(1, -(-len(ordered) // page_size))
    # jobs.json first: the pages' search reads it, so a reader who sees a new page finds its list
    index = [_index_entry(job, page_size, position) for position, job in enumerate(ordered)]
    changed = write_if_changed(outbox / INDEX_JSON, (json.dumps(index, indent=1, ensure_ascii=False) + "\n").encode())
    for number in range(1, page_count + 1):
        page = GalleryPage(number, page_count)
        content = render(
            "gallery.html",
            jobs=ordered[(number - 1) * page_size : number * page_size],
            page=page,
            total=len(ordered),
            counts=counts,
            stage_words=STAGE_WORDS,
            version=generator_version,
            assets=assets_url(""),
        )
        changed += write_if_changed(outbox / page.file, content)
    for stale in outbox.glob("page-*.html"):
        match = _EXTRA_PAGE.fullmatch(stale.name)
        if match and int(match.group(1)) > page_count:
            stale.unlink()
            changed += 1
    return changed


def _index_entry(job: JobView, page_size: int, position: int) -> dict:
    return {
        "job_id": job.job_id,
        "name": job.name,
        "state": job.state,
        "stage": job.stage,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "verdict": job.verdict,  # the held-out PSNR's band in a word ("very good", "good", "rough"), or None
        "error": job.error_message,  # a failed job's reason
        "scored_on": job.scored_on,  # "held-out photos", or "training views" for a set too small to hold one out
        "psnr": job.psnr,
        "ssim": job.ssim,
        "lpips": job.lpips,
        "gaussians": job.gaussians,
        "page": page_path(job.folder),
        "status": f"{job.folder}/status.json",  # progress, live
        "thumbnail": f"{job.folder}/{THUMBNAIL_FILE}" if job.has_thumbnail else None,
        "cover": f"{job.folder}/{COVER_FILE}" if job.has_cover else None,  # one of the set's photos
        "gallery_page": page_file(position // page_size + 1),
    }
