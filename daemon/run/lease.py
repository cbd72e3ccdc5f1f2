"""This daemon's hold on the job it runs.

The lease is renewed a few times per lease period while the job's stages run. It is lost in
two ways, and either way the runner stops the stage at once and writes nothing more:
- a renewal finds the job taken over: our lease ran out (this host was paused, or cut off from
  the database while the others were not) and another daemon has the job now;
- renewals fail (the database does not answer) for most of a lease period: past that point
  another daemon may take the job over the moment the database is back, so this one stops
  first rather than run the same stage twice over the same work folder. The job resumes from
  its last finished stage wherever it is claimed next, here included.
A database outage shorter than that costs nothing: the stage keeps going and the next renewal
succeeds."""

from __future__ import annotations

import logging
import time
from typing import Callable

from daemon.store import JobRecord, JobStore
from daemon.store.outage import StoreOutage, is_outage

log = logging.getLogger("instarecon.job")

RENEWALS_PER_LEASE = 4
SAFE_FRACTION = 0.8  # without a renewal for this much of a lease, stop: the rest is the margin


class JobLease:
    def __init__(self, store: JobStore, job: JobRecord, outage: StoreOutage, clock: Callable[[], float] = time.monotonic):
        self._store = store
        self._job = job
        self._outage = outage
        self._clock = clock
        self._lease_seconds = store.lease.total_seconds()
        self._every = self._lease_seconds / RENEWALS_PER_LEASE
        self._last = clock()  # claiming the job took the lease
        self.lost = False

    def keep(self) -> None:
        self._renew(due=False)

    def confirm(self) -> None:
        """Renew now, whenever the last renewal was: before the runner records what a stage did,
        which a daemon that was paused meanwhile may no longer do."""
        self._renew(due=True)

    def _renew(self, due: bool) -> None:
        if self.lost:
            return
        asked = self._clock()  # the database counts the new lease from no earlier than this
        since = asked - self._last
        if since < self._every and not due:
            return
        try:
            renewed = self._store.renew_lease(self._job.id)
        except Exception as error:
            if not is_outage(error):
                raise
            self._outage.failed(error, f"renewing the lease on job {self._job.id}")
            if since >= SAFE_FRACTION * self._lease_seconds:
                self.lost = True
                log.warning("%s: job %s: the lease could not be renewed for %.0f s of its %.0f s; stopping the stage "
                            "so that no other daemon runs it at the same time; the job resumes from its last "
                            "finished stage once the job store answers", self._job.set_name, self._job.id, since,
                            self._lease_seconds)
            return
        self._outage.answered(wrote=True)
        if not renewed:
            self.lost = True
            log.warning("%s: job %s was taken over by another daemon after our lease ran out; stopping it here",
                        self._job.set_name, self._job.id)
            return
        if since >= self._lease_seconds / 2:
            log.warning("%s: job %s: lease renewed %.0f s after the last (every %.0f s is the plan); a longer pause "
                        "would let another daemon take the job over", self._job.set_name, self._job.id, since, self._every)
        self._last = asked
