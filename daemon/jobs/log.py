"""A job's log, ``state/jobs/<job_id>/job.log``: every line its stages printed, stamped and named.

The daemon running the job appends (``JobLog``); status.json shows its last lines (``public_tail``),
read from the end of the file, so a log of 100 MB costs what one of 1 KB does. status.json is
public, so the tail names the inbox, outbox and state folders and the daemon's home by their short
names (``inbox/kermit``, not ``/srv/instarecon/inbox/kermit``; ``~/.cache``) and cuts long lines.
"""

from __future__ import annotations

import logging
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping

log = logging.getLogger("instarecon.job")

JOB_LOG_FILE = "job.log"
TAIL_LINES = 10  # status.json's log_tail
MAX_LINE_CHARS = 500  # longer lines end in "…" there (job.log keeps them whole)
_BLOCK_BYTES = 8192
_MAX_TAIL_BYTES = 256 * 1024  # never read more than this from the end, however long the lines

# Terminal colours and cursor moves (tqdm, glog in colour); then the control characters left.
_ESCAPE_SEQUENCE = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class JobLog:
    """Appends the lines of one job's stages, each flushed at once so that readers follow it.

    A log that cannot be written (a full disk) is said once in the journal and then left alone:
    the stage goes on, and its lines still reach the journal.
    """

    def __init__(self, path: Path):
        self._path = path
        self._file = None
        self._broken = False

    def __enter__(self) -> "JobLog":
        try:
            self._file = open(self._path, "ab")
        except OSError as error:
            self._give_up(error)
        return self

    def __exit__(self, *_exc) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None

    def append(self, stage: str, text: str) -> None:
        if self._file is None or self._broken:
            return
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        try:
            self._file.write(f"{stamp} {stage}: {text}\n".encode("utf-8", "replace"))
            self._file.flush()
        except OSError as error:
            self._give_up(error)

    def _give_up(self, error: OSError) -> None:
        self._broken = True
        log.warning("cannot write the job log %s (%s); its lines go to the journal only", self._path, error.strerror)


def signature(path: Path) -> tuple[int, int] | None:
    """Size and modification time: what changes when a line is appended (None: no log yet)."""
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_size, found.st_mtime_ns


def last_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` lines of ``path`` (fewer if it has fewer; none if it is missing), read
    block by block from the end. A line longer than what is read of it starts with "…"."""
    if count <= 0:
        return []
    try:
        with open(path, "rb") as file:
            position = end = file.seek(0, os.SEEK_END)
            data = b""
            while position > 0 and data.count(b"\n") <= count and end - position < _MAX_TAIL_BYTES:
                step = min(_BLOCK_BYTES, position)
                position -= step
                file.seek(position)
                data = file.read(step) + data
    except OSError:
        return []
    pieces = data.split(b"\n")
    if pieces[-1] == b"":
        pieces.pop()  # the newline that ends the last line
    if position > 0 and len(pieces) <= count and pieces:
        pieces[0] = "…".encode() + pieces[0]  # the start of this line lies before what was read
    return [piece.decode("utf-8", "replace") for piece in pieces[-count:]]


class FolderNames:
    """Replaces the absolute paths of the configured folders in text by their short names."""

    def __init__(self, folders: Mapping[str, Path]):
        spellings: dict[str, str] = {}
        for name, folder in folders.items():
            for spelling in {str(Path(folder).absolute()), str(Path(folder).resolve())}:
                if spelling != "/":
                    spellings[spelling] = name
        self._names = spellings
        ordered = sorted(spellings, key=len, reverse=True)  # a folder inside another one first
        # a whole path only: not /srv/inbox inside /x/srv/inbox or /srv/inboxes
        self._pattern = (
            re.compile(r"(?<![\w.\-])(" + "|".join(map(re.escape, ordered)) + r")(?![\w.\-])") if ordered else None
        )

    @classmethod
    def of(cls, inbox: Path, outbox: Path, state: Path, home: Path | None = None) -> "FolderNames":
        """The configured folders, and the daemon's home (``~``: where caches such as torch's are
        looked for) unless it is one of them (the packaged service's home is its state folder)."""
        folders = {"inbox": inbox, "outbox": outbox, "state": state}
        try:
            home = Path.home() if home is None else home
        except RuntimeError:  # no HOME and no passwd entry: nothing to name
            return cls(folders)
        return cls({"~": home, **folders})

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda match: self._names[match.group(1)], text)


def public_line(text: str, folder_names: FolderNames, max_chars: int = MAX_LINE_CHARS) -> str:
    """One log line as status.json shows it: what a terminal would show of a line that redraws
    itself with carriage returns, without control characters, folders named short, at most
    ``max_chars`` long."""
    text = _ESCAPE_SEQUENCE.sub("", text)
    if "\r" in text:
        text = next((part for part in reversed(text.split("\r")) if part.strip()), "")
    text = folder_names(_CONTROL.sub("", text))
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def public_tail(path: Path, folder_names: FolderNames, count: int = TAIL_LINES) -> list[str]:
    """The last ``count`` lines of the log at ``path``, fit for status.json."""
    return [public_line(line, folder_names) for line in last_lines(path, count)]
