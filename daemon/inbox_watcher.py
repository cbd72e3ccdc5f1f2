"""Filesystem events from the inbox, reduced to "these sets may have changed".

Events only make the daemon look sooner; what it decides comes from walking the
set, so a lost event delays a set but never loses it (the periodic rescan and the
settle deadlines look again anyway).
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Callable

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

# Opening and reading files is not a change (ingest reads every photo).
_CHANGE_EVENTS = frozenset({"created", "modified", "deleted", "moved", "closed"})
# Our own status.json writes, final and temporary names.
_OWN_FILES = re.compile(r"(^|\.)status\.json$|^\..*status\.json\..*\.tmp$")


class InboxWatcher(FileSystemEventHandler):
    def __init__(self, inbox: Path, mode: str, poll_interval_seconds: float, on_change: Callable[[], None]):
        super().__init__()
        self._inbox = os.path.abspath(inbox)
        self._mode = mode
        self._poll_interval = poll_interval_seconds
        self._on_change = on_change
        self._dirty: set[str] = set()
        self._lock = threading.Lock()
        self._observer = None

    def start(self) -> None:
        if self._mode == "polling":
            observer = PollingObserver(timeout=self._poll_interval)
        else:
            observer = Observer()
        observer.schedule(self, self._inbox, recursive=True)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=10)
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

    def _set_name(self, path: str | bytes) -> str | None:
        path = os.fsdecode(path)
        if not path or _OWN_FILES.search(os.path.basename(path)):
            return None
        relative = os.path.relpath(path, self._inbox)
        if relative == "." or relative.startswith(".." + os.sep) or relative == "..":
            return None
        return relative.split(os.sep, 1)[0]
