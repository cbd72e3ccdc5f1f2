"""Keeps the outbox's website (site_builder) in step with the jobs' status.json documents.

It gets the documents the status publisher has just written; that publisher's first pass
writes every job, so the gallery starts complete. A job's page and the gallery are rebuilt
only when something they show changed, not at every progress tick: while a job runs, its page
and the gallery read its progress from status.json themselves. Where several daemons share the
outbox, each writes the pages of its own jobs, and the shared files under ``lock``, so two
writers never interleave.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, ContextManager, Mapping, Sequence

from site_builder import JobView, build_site, job_view, write_gallery, write_job_page

log = logging.getLogger("instarecon.site")


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
            view = job_view(document, self._outbox / str(document["job_id"]))
            before = self._views.get(view.job_id)
            self._views[view.job_id] = view
            if before is None or before.settled() != view.settled():
                changed.append(view)
        if not changed and not self._rebuild_all:
            return
        changed_pages = [view for view in changed if view.host in (None, self._host)]
        try:
            with self._lock():
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
