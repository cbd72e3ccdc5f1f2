"""Filesystem events from the inbox, reduced to "these sets may have changed".

Events only make the daemon look sooner; what it decides comes from walking the
set, so a lost event delays a set but never loses it (the periodic rescan and the
settle deadlines look again anyway).

The watcher is watched too. watchdog's threads die for good on what they cannot handle (a
folder nested a thousand deep makes its recursive walk raise RecursionError; the kernel may
refuse more inotify watches), and a watcher that cannot start must not stop the daemon. The daemon
tells ``thread_died`` of any of watchdog's threads that ends on an exception, and its main loop
calls ``check`` at every pass: a watcher that is down is started again after a growing pause, and
meanwhile ``problem`` says so (health.json carries it) and the daemon rescans the inbox itself.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Callable

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from inbox_protocol.temporary_names import temporary_name_pattern

log = logging.getLogger("instarecon.inbox")

# Opening and reading files is not a change (ingest reads every photo).
_CHANGE_EVENTS = frozenset({"created", "modified", "deleted", "moved", "closed"})
# Our own status.json writes, final and temporary names.
_OWN_FILES = re.compile(r"(^|\.)status\.json$|" + temporary_name_pattern(r".*status\.json"))
FIRST_RESTART_SECONDS = 1.0
LAST_RESTART_SECONDS = 30.0  # the pause between attempts doubles up to this


class InboxWatcher(FileSystemEventHandler):
    def __init__(self, inbox: Path, mode: str, poll_interval_seconds: float, on_change: Callable[[], None],
                 clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self._inbox = os.path.abspath(inbox)
        self._mode = mode
        self._poll_interval = poll_interval_seconds
        self._on_change = on_change
        self._clock = clock
        self._dirty: set[str] = set()
        self._lock = threading.Lock()
        self._observer = None
        self._failure: str | None = None  # why the watcher is down, while it is
        self._cause = ""  # the failure in words, for health.json
        # set from another thread: one of watchdog's died (its name, its exception)
        self._thread_failure: tuple[str, BaseException | None] | None = None
        self._pause = FIRST_RESTART_SECONDS
        self._next_start = 0.0

    @property
    def watching(self) -> bool:
        return self._observer is not None

    @property
    def problem(self) -> str | None:
        """For health.json while the watcher is down (in words, with no path: health.json is public)."""
        if self._failure is None:
            return None
        return f"the inbox watcher is down ({self._cause}); new sets are found by rescanning the inbox meanwhile"

    def start(self) -> None:
        """Start watching; a failure is logged and tried again later (``check``), never raised."""
        observer = PollingObserver(timeout=self._poll_interval) if self._mode == "polling" else Observer()
        observer.daemon = True
        try:
            observer.schedule(self, self._inbox, recursive=True)
            observer.start()
        except Exception as error:  # RecursionError in watchdog's walk, OSError from inotify, ...
            _stop(observer)
            self._down(error, "could not start")
            return
        self._observer = observer
        if self._failure is not None:
            log.info("the inbox watcher runs again")
        self._failure = None
        self._pause = FIRST_RESTART_SECONDS

    def thread_died(self, thread_name: str, error: BaseException | None) -> None:
        """A thread of watchdog's ended on an exception (the daemon's threading.excepthook tells us):
        watchdog keeps some threads of its own (inotify's reader and dispatcher), which ``check``
        cannot see, and without them no event comes."""
        self._thread_failure = (thread_name, error)

    def check(self) -> bool:
        """Notice a watcher whose threads have died, and start a stopped one when its pause is over.
        True when events may have been missed (the watcher just died, or just came back): the
        caller should rescan the inbox."""
        observer = self._observer
        if observer is not None:
            failure, self._thread_failure = self._thread_failure, None
            if failure is None and observer.is_alive() and all(emitter.is_alive() for emitter in list(observer.emitters)):
                return False
            self._observer = None
            _stop(observer)
            thread, error = failure or ("", None)
            self._down(error, f"stopped (its thread {thread} ended; the traceback is above)" if thread else "stopped")
            return True
        if self._clock() < self._next_start:
            return False
        self.start()
        return self._observer is not None

    def stop(self) -> None:
        if self._observer is not None:
            _stop(self._observer)
            self._observer = None

    def take_dirty(self) -> set[str]:
        with self._lock:
            dirty, self._dirty = self._dirty, set()
        return dirty

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in _CHANGE_EVENTS:
            return
        names = {self._set_name(event.src_path), self._set_name(getattr(event, "dest_path", "") or "")}
        names.discard(None)
        if not names:
            return
        with self._lock:
            self._dirty |= names
        self._on_change()

    def _down(self, error: BaseException | None, what_happened: str) -> None:
        why = "a thread ended" if error is None else f"{type(error).__name__}: {error}" if str(error) \
            else type(error).__name__
        level = logging.DEBUG if why == self._failure else logging.ERROR  # each new cause once
        log.log(level, "the inbox watcher %s (%s); trying again in %.0f s, and rescanning the inbox meanwhile",
                what_happened, why, self._pause)
        self._failure = why
        self._cause = _in_words(error)
        self._next_start = self._clock() + self._pause
        self._pause = min(self._pause * 2, LAST_RESTART_SECONDS)

    def _set_name(self, path: str | bytes) -> str | None:
        path = os.fsdecode(path)
        if not path or _OWN_FILES.search(os.path.basename(path)):
            return None
        relative = os.path.relpath(path, self._inbox)
        if relative == "." or relative.startswith(".." + os.sep) or relative == "..":
            return None
        return relative.split(os.sep, 1)[0]


def _in_words(error: BaseException | None) -> str:
    """Why watchdog failed, as the operator can act on it."""
    if isinstance(error, RecursionError):
        return "a folder in the inbox is nested too deep for it"
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return "the system's limit of inotify watches is reached: raise fs.inotify.max_user_watches"
    if isinstance(error, OSError) and error.errno == errno.EMFILE:
        return "the system's limit of inotify instances is reached: raise fs.inotify.max_user_instances"
    return "it failed; the journal says why"


def _stop(observer) -> None:
    try:
        observer.stop()
        if observer.is_alive():
            observer.join(timeout=10)
    except Exception:  # a half-started observer: nothing more to stop
        log.debug("stopping a failed inbox watcher", exc_info=True)
