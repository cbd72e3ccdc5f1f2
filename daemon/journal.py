"""Logging to the systemd journal with structured fields, or to stderr with priorities.

Under systemd with systemd-python installed, records go to journald natively with the
fields JOB_ID, SET_NAME and STAGE, so ``journalctl JOB_ID=kermit-1`` shows one job.
Elsewhere each stderr line starts with ``<N>`` (sd-daemon(3) priority prefixes), which
journald also understands when it captures stderr, and the fields follow in brackets; a
terminal gets the time and the level in words instead.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

from inbox_protocol.file_names import display_name, without_surrogates

FIELD_NAMES = ("JOB_ID", "SET_NAME", "STAGE")

_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}
_LEVEL_BY_PRIORITY = {0: logging.CRITICAL, 1: logging.CRITICAL, 2: logging.CRITICAL, 3: logging.ERROR,
                      4: logging.WARNING, 5: logging.INFO, 6: logging.INFO, 7: logging.DEBUG}


def job_fields(job: Any, stage: str | None = None) -> dict[str, str]:
    """The ``extra=`` for a log call about a job (anything with .id and .set_name)."""
    fields = {"JOB_ID": job.id, "SET_NAME": display_name(job.set_name)}
    stage = stage or getattr(job, "stage", None)
    if stage:
        fields["STAGE"] = stage
    return fields


def level_for_priority(priority: int) -> int:
    return _LEVEL_BY_PRIORITY.get(priority, logging.INFO)


def _fields_suffix(record: logging.LogRecord) -> str:
    fields = " ".join(f"{name}={getattr(record, name)}" for name in FIELD_NAMES if hasattr(record, name))
    return f" [{fields}]" if fields else ""


class OneLineArguments(logging.Filter):
    """Whatever a log call quotes (a set's name above all) is shown on one line, exactly, as valid
    text: a name holding a newline cannot start a line of its own (with a priority prefix such as
    ``<0>`` that journald would believe), and one that is not UTF-8 cannot fail the write."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(display_name(arg) if isinstance(arg, str) else arg for arg in record.args)
        if isinstance(record.msg, str):
            record.msg = without_surrogates(record.msg)
        return True


class PriorityFormatter(logging.Formatter):
    """``<N>`` before every line, for journald capturing stderr."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        priority = _PRIORITY.get(record.levelno, 6)
        suffix = _fields_suffix(record)
        return "\n".join(f"<{priority}>{line}{suffix if i == 0 else ''}" for i, line in enumerate(text.splitlines()))


class TerminalFormatter(logging.Formatter):
    """Time and level words for a person at a terminal (``make demo``), the same fields."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        lines = super().format(record).splitlines()
        lines[0] += _fields_suffix(record)
        return "\n".join(lines)


def _stderr_is_journal(stream: TextIO) -> bool:
    """systemd sets JOURNAL_STREAM=dev:inode when stderr is connected to journald."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return False
    return expected == f"{info.st_dev}:{info.st_ino}"


def setup_logging(level: str = "info", stream: TextIO | None = None) -> logging.Handler:
    stream = stream or sys.stderr
    handler: logging.Handler | None = None
    if _stderr_is_journal(stream):
        try:
            from systemd.journal import JournalHandler
        except ImportError:
            pass
        else:
            handler = JournalHandler(SYSLOG_IDENTIFIER="instarecon")
            handler.setFormatter(logging.Formatter("%(message)s"))
    if handler is None:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(TerminalFormatter() if stream.isatty() else PriorityFormatter("%(message)s"))
    handler.addFilter(OneLineArguments())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("apscheduler", "watchdog", "alembic", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler
