"""This daemon's hold on the job it runs. The lease is renewed a few times per lease period while
the job's stages run; when a renewal finds the job taken over (our lease ran out: the database
was away too long, or this host was paused), the runner stops at once and writes nothing more,
because the job is now another daemon's. A database that does not answer is tried again at the
next tick: the lease leaves room for several misses."""

from __future__ import annotations

import logging
import time
from typing import Callable

from daemon.store import JobRecord, JobStore

log = logging.getLogger("instarecon.job")

RENEWALS_PER_LEASE = 4


class JobLease:
    def __init__(self, store: JobStore, job: JobRecord, clock: Callable[[], float] = time.monotonic):
        self._store = store
        self._job = job
        self._clock = clock
        self._every = store.lease.total_seconds() / RENEWALS_PER_LEASE
        self._last = clock()  # claiming the job took the lease
        self._failing = False
        self.lost = False

    def keep(self) -> None:
        if self.lost or self._clock() - self._last < self._every:
            return
        try:
            renewed = self._store.renew_lease(self._job.id)
        except Exception as error:  # the database is away: keep the stage running, try again
            if not self._failing:
                log.warning("%s: cannot renew the lease on job %s (%s); trying again", self._job.set_name, self._job.id,
                            type(error).__name__)
            self._failing = True
            return
        if self._failing:
            log.info("%s: lease on job %s renewed again", self._job.set_name, self._job.id)
        self._failing = False
        if renewed:
            self._last = self._clock()
        else:
            self.lost = True
            log.warning("%s: job %s was taken over by another daemon after our lease ran out; stopping it here",
                        self._job.set_name, self._job.id)
