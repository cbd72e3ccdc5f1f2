"""Keeps the outbox's website (site_builder) in step with the jobs' status.json documents.

It gets the documents the status publisher has just written; that publisher's first pass
writes every job, so the gallery starts complete. A job's page and the gallery are rebuilt
only when something they show changed, not at every progress tick: while a job runs, its page
and the gallery read its progress from status.json themselves. Where several daemons share the
outbox, each writes the pages of its own jobs, and the shared files under ``lock``, so two
writers never interleave.

A removed job stays on the site (its page says removed) while its folder is in the outbox:
``unpublish`` deletes that folder (with ``unpublish_removed``, or by ``instarecon remove``, under
the same lock), and the next gallery written, by the daemon or by the command, leaves it out.

A private job has its page, in the folder its status.json's ``page`` names (``<job_id>.<key>``),
and no place in the gallery or jobs.json (site_builder.gallery leaves it out).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable, Mapping, Sequence

from site_builder import JobView, build_site, job_view, write_gallery, write_job_page
from site_builder.job_page import folder_of_page, job_folder

log = logging.getLogger("instarecon.site")

REMOVED = "removed"  # the job state (daemon.store.JobState.REMOVED) as status.json spells it


class SitePublisher:
    def __init__(self, outbox: Path, version: str, host: str, lock: Callable[[], ContextManager[Any]]):
        self._outbox = outbox
        self._version = version
        self._host = host
        self._lock = lock
        self._views: dict[str, JobView] = {}
        self._rebuild_all = True  # at start, and after a failed write: the next update does it all
        self._failing = False

    def update(self, documents: Sequence[Mapping[str, Any]]) -> None:
        changed: list[JobView] = []
        for document in documents:
            view = job_view(document, job_folder(self._outbox, outbox_name(document)))
            before = self._views.get(view.job_id)
            self._views[view.job_id] = view
            if before is None or before.settled() != view.settled():
                changed.append(view)
        if not changed and not self._rebuild_all:
            return
        try:
            with self._lock():
                self._forget_unpublished()  # under the lock: `instarecon remove` deletes under it too
                changed_pages = [view for view in changed
                                 if view.job_id in self._views and view.host in (None, self._host)]
                if self._rebuild_all:
                    written = build_site(self._outbox, list(self._views.values()), self._version, pages_of=self._host)
                    log.info("site in %s brought up to date: %d jobs, %d files written", self._outbox,
                             len(self._views), written)
                else:
                    for view in changed_pages:
                        write_job_page(self._outbox, view, self._version)
                    write_gallery(self._outbox, list(self._views.values()), self._version)
        except OSError as error:
            if not self._failing:
                log.warning("the site in %s cannot be written (%s: %s); trying again at every pass",
                            self._outbox, error.filename, error.strerror)
            self._rebuild_all = self._failing = True
            return
        if self._failing:
            log.info("the site in %s is written again", self._outbox)
        self._rebuild_all = self._failing = False

    def _forget_unpublished(self) -> None:
        """Leave out the removed jobs whose folder is gone from the outbox (unpublished here, or by
        ``instarecon remove`` in another process), so that neither their page is made again nor
        the gallery lists them."""
        for view in [view for view in self._views.values() if not is_listed(self._outbox, view.folder, view.state)]:
            del self._views[view.job_id]


def outbox_name(document: Mapping[str, Any]) -> str:
    """The job's folder in the outbox, as its status.json's ``page`` names it: the job id, or a
    private job's ``<job_id>.<key>``."""
    return folder_of_page(str(document["page"]))


def is_listed(outbox: Path, folder_name: str, state: str) -> bool:
    """Whether the site shows the job (its page; the gallery too unless it is private): every job
    but a removed one whose folder is gone."""
    if state != REMOVED:
        return True
    folder = job_folder(outbox, folder_name)
    return folder.is_dir() and not folder.is_symlink()


def listed_views(outbox: Path, documents: Iterable[Mapping[str, Any]]) -> list[JobView]:
    """The views of the jobs the site shows, from their status.json documents."""
    return [job_view(document, job_folder(outbox, outbox_name(document))) for document in documents
            if is_listed(outbox, outbox_name(document), str(document["state"]))]


def unpublish(outbox: Path, folder_name: str) -> int:
    """Delete the job's folder ``folder_name`` in the outbox (JobRecord.outbox_name): its page, its
    results, its status.json; returns how many files it held. Call it under the site lock. Nothing
    else is ever touched: the name must name one folder right in the outbox (``job_folder``
    refuses anything else), a link in its place is removed as a link, and links inside are not
    followed (``shutil.rmtree`` removes them as links)."""
    folder = job_folder(outbox, folder_name)
    if folder.is_symlink():
        folder.unlink()
        return 0
    if not folder.is_dir():
        return 0
    files = sum(1 for path in folder.rglob("*") if not path.is_dir() or path.is_symlink())
    shutil.rmtree(folder)
    return files
