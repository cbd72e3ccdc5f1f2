"""Delivery in the background: one thread and one bounded queue per channel, so the daemon's
loop only ever puts an event in a queue, and a slow or dead receiver holds up nobody else.

A failed attempt that may succeed later is tried again after 2, 4, 8 and 16 s (plus up to a
quarter more, at random, so that many daemons do not retry in step), then given up with a
warning in the journal. A full queue (a receiver down for long, with many jobs ending) drops
the newest events with a warning rather than growing. ``close`` stops retrying, gives each
event still waiting one last attempt while its time lasts, and never waits longer than told.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from typing import Any, Callable, Sequence

from daemon.journal import job_fields
from daemon.notify.channel import Channel, DeliveryError
from daemon.notify.events import Event

log = logging.getLogger("instarecon.notify")

RETRY_DELAYS = (2.0, 4.0, 8.0, 16.0)  # seconds before attempts 2..5
JITTER = 0.25  # each delay is lengthened by up to this fraction, at random
MAX_PENDING = 100  # events waiting per channel

_STOP = object()


class Dispatcher:
    def __init__(
        self,
        channel: Channel,
        *,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        jitter: float = JITTER,
        random_fraction: Callable[[], float] = random.random,
        sleep: Callable[[float], Any] | None = None,
        max_pending: int = MAX_PENDING,
    ):
        self.channel = channel
        self._delays = tuple(retry_delays)
        self._jitter = jitter
        self._random = random_fraction
        self._stopping = threading.Event()
        self._sleep = sleep if sleep is not None else self._stopping.wait  # the default wakes up at close
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_pending)
        self._idle = threading.Condition()
        self._unfinished = 0
        self._deadline: float | None = None
        self._dropping = False
        self._thread = threading.Thread(target=self._run, name=f"notify-{channel.name}", daemon=True)
        self._thread.start()

    @property
    def attempts(self) -> int:
        return len(self._delays) + 1

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        base = self._delays[min(attempt, len(self._delays)) - 1]
        return base * (1.0 + self._jitter * self._random())

    def submit(self, event: Event) -> bool:
        """Queue the event; never waits. False if it was dropped (queue full, or closing)."""
        if self._stopping.is_set():
            return False
        with self._idle:
            self._unfinished += 1
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._done_with_one()
            if not self._dropping:
                log.warning("%s: %s notification for job %s dropped: %d are already waiting for %s (is it down?)",
                            event.set_name, self.channel.name, event.id, self._queue.maxsize, self.channel.target,
                            extra=job_fields(event))
            self._dropping = True
            return False
        return True

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every queued event is delivered or given up; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._unfinished == 0, timeout)

    def close(self, timeout: float) -> bool:
        """Stop; events still waiting get one attempt each while ``timeout`` lasts. True if the
        thread ended in time (if not, it is a daemon thread: it ends with the process)."""
        self.stop(time.monotonic() + timeout)
        return self.join(time.monotonic() + timeout)

    def stop(self, deadline: float) -> None:
        """Stop retrying; what is still queued gets one attempt each until ``deadline`` (time.monotonic)."""
        self._deadline = deadline
        self._stopping.set()
        try:
            self._queue.put_nowait(_STOP)
        except queue.Full:
            pass  # the thread is busy with a full queue: it sees the flag before the next event

    def join(self, deadline: float) -> bool:
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            log.warning("a %s notification to %s was still on its way at shutdown; left unfinished",
                        self.channel.name, self.channel.target)
            return False
        return True

    def _run(self) -> None:
        left_behind = 0
        while True:
            if self._stopping.is_set():
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            else:
                item = self._queue.get()
            if item is _STOP:
                continue
            try:
                if self._stopping.is_set() and self._deadline is not None and time.monotonic() >= self._deadline:
                    left_behind += 1
                else:
                    self._deliver(item)
            except Exception:  # a bug must not end the thread: the next event still goes out
                log.exception("the %s notification for job %s could not be handled", self.channel.name, item.id,
                              extra=job_fields(item))
            finally:
                self._done_with_one()
        if left_behind:
            log.warning("%d %s notification(s) not sent: the daemon stopped before their turn",
                        left_behind, self.channel.name)

    def _deliver(self, event: Event) -> None:
        fields = job_fields(event)
        for attempt in range(1, self.attempts + 1):
            try:
                result = self.channel.deliver(event)
            except DeliveryError as error:
                final = not error.retryable or attempt == self.attempts or self._stopping.is_set()
                if final:
                    why = ("" if attempt == self.attempts else ", not worth retrying" if not error.retryable
                           else ", the daemon is stopping")
                    log.warning("%s: %s notification %s to %s not sent after %d attempt%s%s: %s",
                                event.set_name, self.channel.name, event.name, self.channel.target, attempt,
                                "" if attempt == 1 else "s", why, error.reason, extra=fields)
                    return
                wait = self.delay(attempt)
                log.info("%s: %s notification %s to %s failed (%s); attempt %d of %d in %.1f s",
                         event.set_name, self.channel.name, event.name, self.channel.target, error.reason,
                         attempt + 1, self.attempts, wait, extra=fields)
                self._sleep(wait)
            else:
                self._dropping = False
                log.info("%s: %s notification %s sent to %s (%s)", event.set_name, self.channel.name, event.name,
                         self.channel.target, result, extra=fields)
                return

    def _done_with_one(self) -> None:
        with self._idle:
            self._unfinished -= 1
            if self._unfinished == 0:
                self._idle.notify_all()
