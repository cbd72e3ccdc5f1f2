"""Prometheus metrics as a text file for node_exporter's textfile collector.

The daemon serves no HTTP port (fewer things to harden); node_exporter already runs on most
monitored hosts and reads ``*.prom`` files from its ``--collector.textfile.directory``. The
file is rewritten atomically (a half-written file would be read as garbage) when a job
changes and at every heartbeat, so its timestamp also tells that the daemon is alive.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, Sequence

from stages.atomic_files import atomic_write_bytes, remove_temporaries

log = logging.getLogger("instarecon")

STATES = ("waiting", "queued", "running", "done", "failed", "cancelled", "removed")


class MetricsTextfile:
    def __init__(self, path: Path, version: str):
        self.path = path
        self._version = version
        self._stage_seconds: dict[str, dict[str, float]] = {}  # job id -> stage -> seconds, finished stages
        self._last_success: float | None = None
        self._failing = False
        remove_temporaries(path)  # of a daemon killed mid-write

    def observe(self, documents: Sequence[Mapping[str, Any]]) -> None:
        """Take in the status documents just written (the first pass after start: every job)."""
        for document in documents:
            self._stage_seconds[document["job_id"]] = {
                name: float(stage["seconds"])
                for name, stage in (document.get("stages") or {}).items()
                if stage.get("state") == "done" and stage.get("seconds") is not None
            }
            if document.get("state") == "done" and document.get("finished_at"):
                finished = _timestamp(document["finished_at"])
                self._last_success = max(self._last_success or finished, finished)

    def write(self, counts: Mapping[str, int], now: float) -> None:
        """Rewrite the file from the job counts by state; a failure is logged once, not raised."""
        try:
            atomic_write_bytes(self.path, self.render(counts, now).encode("utf-8"))
        except OSError as error:
            if not self._failing:
                log.warning("cannot write the metrics file %s (%s)", self.path, error.strerror)
            self._failing = True
            return
        self._failing = False

    def render(self, counts: Mapping[str, int], now: float) -> str:
        lines = [
            "# HELP instarecon_info The daemon's version.",
            "# TYPE instarecon_info gauge",
            f'instarecon_info{{version="{_label(self._version)}"}} 1',
            "# HELP instarecon_jobs Jobs in the job store by state.",
            "# TYPE instarecon_jobs gauge",
            *(f'instarecon_jobs{{state="{state}"}} {int(counts.get(state, 0))}' for state in STATES),
            "# HELP instarecon_queue_length Jobs queued to run (not counting the running one).",
            "# TYPE instarecon_queue_length gauge",
            f"instarecon_queue_length {int(counts.get('queued', 0))}",
            "# HELP instarecon_stage_duration_seconds Time the finished stages of the stored jobs took.",
            "# TYPE instarecon_stage_duration_seconds summary",
        ]
        per_stage: dict[str, list[float]] = {}
        for stages in self._stage_seconds.values():
            for name, seconds in stages.items():
                per_stage.setdefault(name, []).append(seconds)
        for name in sorted(per_stage):
            lines.append(f'instarecon_stage_duration_seconds_sum{{stage="{_label(name)}"}} {sum(per_stage[name]):.3f}')
            lines.append(f'instarecon_stage_duration_seconds_count{{stage="{_label(name)}"}} {len(per_stage[name])}')
        lines += [
            "# HELP instarecon_last_success_timestamp_seconds When the newest done job finished (Unix time).",
            "# TYPE instarecon_last_success_timestamp_seconds gauge",
        ]
        if self._last_success is not None:
            lines.append(f"instarecon_last_success_timestamp_seconds {self._last_success:.0f}")
        lines += [
            "# HELP instarecon_heartbeat_timestamp_seconds When the daemon last wrote this file (Unix time).",
            "# TYPE instarecon_heartbeat_timestamp_seconds gauge",
            f"instarecon_heartbeat_timestamp_seconds {now:.0f}",
        ]
        return "\n".join(lines) + "\n"


def _timestamp(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _label(value: str) -> str:
    """A label value in Prometheus' text format: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
