"""The Prometheus text file: what node_exporter's textfile collector reads, parsed with the
Prometheus client's own parser."""

from __future__ import annotations

from datetime import datetime

import pytest

from prometheus_client.parser import text_string_to_metric_families

from daemon.report.metrics_textfile import MetricsTextfile
from tests.daemon_harness import DaemonProcess, make_layout
from tests.photo_sets import small_set
from tests.site_documents import status_document


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_jobs_by_state_stage_durations_and_the_last_success(tmp_path):
    metrics = MetricsTextfile(tmp_path / "instarecon.prom", 'v"1\\')
    older = status_document("a-1", "a", "done", published=True)
    older["finished_at"] = "2026-11-27T10:00:00Z"
    newer = status_document("b-1", "b", "done", published=True)
    newer["finished_at"] = "2026-11-27T11:30:00Z"
    failed = status_document("c-1", "c", "failed", error={"stage": "sfm", "message": "no", "hint": None})
    metrics.observe([older, newer, failed])
    metrics.observe([newer])  # seen again: counted once
    metrics.write({"done": 2, "failed": 1, "queued": 3}, now=1_800_000_000.0)

    parsed = samples((tmp_path / "instarecon.prom").read_text())
    assert parsed[("instarecon_jobs", (("state", "done"),))] == 2
    assert parsed[("instarecon_jobs", (("state", "running"),))] == 0
    assert parsed[("instarecon_queue_length", ())] == 3
    for stage in ("ingest", "sfm", "train", "evaluate", "publish"):
        assert parsed[("instarecon_stage_duration_seconds_count", (("stage", stage),))] == 2
        assert parsed[("instarecon_stage_duration_seconds_sum", (("stage", stage),))] == 25.0
    assert parsed[("instarecon_last_success_timestamp_seconds", ())] == datetime.fromisoformat(
        "2026-11-27T11:30:00+00:00").timestamp()
    assert parsed[("instarecon_heartbeat_timestamp_seconds", ())] == 1_800_000_000
    assert parsed[("instarecon_info", (("version", 'v"1\\'),))] == 1  # escaped, read back intact
    assert not list(tmp_path.glob(".*.tmp"))


def test_an_unwritable_metrics_file_is_reported_not_raised(tmp_path, caplog):
    metrics = MetricsTextfile(tmp_path / "missing-folder" / "instarecon.prom", "1")
    metrics.write({}, now=0.0)
    metrics.write({}, now=1.0)
    assert [r.message for r in caplog.records].count(
        f"cannot write the metrics file {tmp_path / 'missing-folder' / 'instarecon.prom'} (No such file or directory)") == 1


@pytest.mark.slow
def test_the_daemon_writes_the_metrics_file_it_is_told_to(tmp_path):
    layout = make_layout(tmp_path, metrics_textfile=str(tmp_path / "textfile" / "instarecon.prom"))
    (tmp_path / "textfile").mkdir()
    small_set(layout.inbox / "garden", ready=True)
    with DaemonProcess(layout, until_idle=True) as daemon:
        assert daemon.wait(120) == 0, daemon.log()
    parsed = samples((tmp_path / "textfile" / "instarecon.prom").read_text())
    assert parsed[("instarecon_jobs", (("state", "done"),))] == 1
    assert parsed[("instarecon_stage_duration_seconds_count", (("stage", "ingest"),))] == 1
    finished = layout.status("garden")["finished_at"]
    assert parsed[("instarecon_last_success_timestamp_seconds", ())] == datetime.fromisoformat(
        finished.replace("Z", "+00:00")).timestamp()
