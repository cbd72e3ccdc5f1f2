"""The real daemon keeps the outbox's website and health.json in step with its jobs."""

from __future__ import annotations

import json
import re
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from daemon.report.site_publisher import SitePublisher
from site_builder.asset_release import asset_version
from tests.daemon_harness import DaemonProcess, make_layout, state_is, wait_for
from tests.photo_sets import small_set
from tests.site_documents import status_document


def gallery_cards(outbox: Path) -> dict[str, str]:
    """Job id -> state, as the gallery's first page shows them."""
    text = (outbox / "index.html").read_text()
    return dict(re.findall(r'<li class="card" data-job-id="([^"]+)" data-job-state="([^"]+)">', text))


def health(outbox: Path) -> dict:
    return json.loads((outbox / "health.json").read_text())


@pytest.mark.slow
def test_the_daemon_rebuilds_the_site_as_jobs_change_and_beats_in_health_json(tmp_path):
    layout = make_layout(tmp_path, heartbeat_seconds=0.5)
    small_set(layout.inbox / "garden", ready=True, stop_after=None)
    (layout.inbox / "garden" / "job.toml").write_text('stop_after = "sfm"\niterations = 80\n')
    small_set(layout.inbox / "broken", ready=True)
    (layout.inbox / "broken" / "job.toml").write_text('stop_after = "nonsense"\n')

    with DaemonProcess(layout, paced=True) as daemon:
        running = wait_for(state_is(layout, "garden", "running"), 60, "garden to run")
        job_id = running["job_id"]
        wait_for(lambda: gallery_cards(layout.outbox).get(job_id) == "running", 30, "the gallery to show it running")
        page = (layout.outbox / job_id / "index.html").read_text()
        assert "job-status.js" in page and 'id="viewer"' not in page
        beat = wait_for(lambda: (h := health(layout.outbox))["state"] == "running" and h, 30, "a running heartbeat")
        assert beat["current_job"]["job_id"] == job_id and beat["version"]
        time.sleep(2.5)  # heartbeat_at has whole seconds; beats come every 0.5 s
        assert health(layout.outbox)["heartbeat_at"] > beat["heartbeat_at"]

        wait_for(state_is(layout, "garden", "done"), 60, "garden to finish")
        wait_for(lambda: gallery_cards(layout.outbox).get(job_id) == "done", 30, "the gallery to show it done")
        assert "job-status.js" not in (layout.outbox / job_id / "index.html").read_text()
        broken = wait_for(state_is(layout, "broken", "failed"), 30, "the broken set to fail")
        cards = gallery_cards(layout.outbox)
        assert cards == {job_id: "done", broken["job_id"]: "failed"}
        failed_page = (layout.outbox / broken["job_id"] / "index.html").read_text()
        assert "stop_after" in failed_page and 'role="alert"' in failed_page
        idle = wait_for(lambda: (h := health(layout.outbox))["state"] == "idle" and h, 30, "an idle heartbeat")
        assert idle["queue"] == {"waiting": 0, "queued": 0, "running": 0} and idle["current_job"] is None
        assert daemon.stop() == 0

    stopped = health(layout.outbox)
    assert stopped["state"] == "stopped"
    index = json.loads((layout.outbox / "jobs.json").read_text())
    assert {entry["job_id"]: entry["state"] for entry in index} == cards
    assert not list(layout.outbox.rglob(".*.tmp"))


@pytest.mark.slow
def test_a_new_daemon_builds_the_whole_site_from_the_job_store(tmp_path):
    layout = make_layout(tmp_path)
    for name in ("one", "two"):
        small_set(layout.inbox / name, ready=True)
    with DaemonProcess(layout, until_idle=True) as daemon:
        assert daemon.wait(120) == 0, daemon.log()
    ids = {layout.status(name)["job_id"] for name in ("one", "two")}
    for path in [layout.outbox / "index.html", layout.outbox / "assets", *(layout.outbox / i / "index.html" for i in ids)]:
        path.unlink() if path.is_file() else shutil.rmtree(path)

    with DaemonProcess(layout, until_idle=True) as daemon:
        assert daemon.wait(60) == 0, daemon.log()
    assert gallery_cards(layout.outbox) == {job_id: "done" for job_id in ids}
    assert all((layout.outbox / job_id / "index.html").is_file() for job_id in ids)
    assert (layout.outbox / "assets" / asset_version() / "site.css").is_file() and (layout.outbox / "health.html").is_file()


def test_each_daemon_writes_its_own_jobs_pages_and_the_shared_files_under_the_lock(tmp_path):
    held: list[str] = []

    @contextmanager
    def lock():
        held.append("locked")
        yield
        held.append("released")

    mine = {**status_document("garden-1", "garden", "done"), "host": "gpu-1"}
    theirs = {**status_document("pond-1", "pond", "running"), "host": "gpu-2"}
    waiting = {**status_document("shed-1", "shed", "waiting"), "host": None}  # no host yet: any daemon writes it
    publisher = SitePublisher(tmp_path, "test", "gpu-1", lock)
    publisher.update([mine, theirs, waiting])
    assert (tmp_path / "garden-1" / "index.html").is_file() and (tmp_path / "shed-1" / "index.html").is_file()
    assert not (tmp_path / "pond-1").exists()  # gpu-2 writes its own job's page
    assert set(gallery_cards(tmp_path)) == {"garden-1", "pond-1", "shed-1"}  # the gallery lists them all
    assert held == ["locked", "released"]
    publisher.update([{**theirs, "state": "done", "progress": 100.0}])
    assert not (tmp_path / "pond-1").exists() and gallery_cards(tmp_path)["pond-1"] == "done"
    assert held == ["locked", "released"] * 2
