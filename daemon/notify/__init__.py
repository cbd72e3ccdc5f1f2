"""Job notifications: a webhook (JSON POST) and e-mail (SMTP) when a job ends.

The daemon's loop hands every pass's changed status.json documents to ``Notifications.observe``,
which picks out the events (``events``), drops a repeat of the same event for the same job
within 15 s (``dedup``) and queues each for every channel configured (``webhook``, ``smtp``),
whose threads send them with retries (``dispatcher``). ``observe`` never waits on the network
and never raises; ``close`` at shutdown waits a bounded time.
"""

from __future__ import annotations

import logging
import random
import ssl
import time
from typing import Any, Callable, Collection, Mapping, Sequence

from daemon import __version__
from daemon.config import Settings
from daemon.notify.dedup import DEDUP_SECONDS, RecentEvents
from daemon.notify.dispatcher import JITTER, MAX_PENDING, RETRY_DELAYS, Dispatcher
from daemon.notify.events import Event, EventTracker, payload
from daemon.notify.smtp import EmailChannel
from daemon.notify.webhook import WebhookChannel

log = logging.getLogger("instarecon.notify")

__all__ = ["Notifications", "Event", "payload"]


class Notifications:
    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], float] = time.monotonic,
        *,
        known_jobs: Collection[str] = (),  # ids of the jobs in the store before this run: never announced as new
        sleep: Callable[[float], Any] | None = None,  # between attempts; default: wakes up at close
        random_fraction: Callable[[], float] = random.random,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        jitter: float = JITTER,
        dedup_seconds: float = DEDUP_SECONDS,
        max_pending: int = MAX_PENDING,
        timeout: float = 10.0,  # per attempt: connect and answer
        ssl_context: ssl.SSLContext | None = None,  # default: the system's trusted certificates
    ):
        self._tracker = EventTracker(settings.notify_on, known_jobs)
        self._recent = RecentEvents(dedup_seconds, clock)
        self._dedup_seconds = dedup_seconds
        self._failing = False
        channels: list[Any] = []
        if settings.notify_webhook_url:
            channels.append(WebhookChannel(settings.notify_webhook_url, settings.notify_webhook_headers,
                                           settings.public_url, f"InstaRecon3D/{__version__}", timeout, ssl_context))
        if settings.notify_email_to:
            channels.append(EmailChannel(settings.notify_email_to, settings.notify_email_from, settings.smtp_host,
                                         settings.smtp_port, settings.smtp_security, settings.smtp_username,
                                         settings.smtp_password_file, settings.public_url, timeout, ssl_context))
        if not settings.notify_on:
            channels = []  # nothing would ever be sent: no threads
        self._dispatchers = [
            Dispatcher(channel, retry_delays=retry_delays, jitter=jitter, random_fraction=random_fraction,
                       sleep=sleep, max_pending=max_pending)
            for channel in channels
        ]
        if self._dispatchers:
            log.info("notifications of %s by %s", ", ".join(f"job.{state}" for state in settings.notify_on),
                     ", ".join(f"{d.channel.name} to {d.channel.target}" for d in self._dispatchers))

    @property
    def enabled(self) -> bool:
        return bool(self._dispatchers)

    def observe(self, documents: Sequence[Mapping[str, Any]]) -> None:
        """Queue a notification for each job that has just ended; never waits, never raises."""
        if not self._dispatchers:
            return
        try:
            for event in self._tracker.observe(documents):
                if not self._recent.first(event.key):
                    log.debug("%s: %s for job %s already sent in the last %g s", event.set_name, event.name,
                              event.id, self._dedup_seconds)
                    continue
                for dispatcher in self._dispatchers:
                    dispatcher.submit(event)
            self._failing = False
        except Exception:  # notifications must never stop the daemon's loop
            if not self._failing:
                log.exception("notifications could not look at this pass's jobs")
            self._failing = True

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every queued notification is sent or given up (tests, --until-idle)."""
        deadline = time.monotonic() + timeout
        return all(d.wait_idle(max(0.0, deadline - time.monotonic())) for d in self._dispatchers)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the senders; waits at most ``timeout`` seconds in all."""
        deadline = time.monotonic() + timeout
        for dispatcher in self._dispatchers:  # all stop at once, then each gets what is left of the time
            dispatcher.stop(deadline)
        for dispatcher in self._dispatchers:
            dispatcher.join(deadline)
        self._dispatchers = []
