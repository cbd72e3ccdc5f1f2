"""The SfM stage under the real daemon: a job that stops after it, and a cancel while it matches."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from daemon.demo_set import write_demo_set
from tests.daemon_harness import DaemonProcess, Layout, make_layout, processes_of, state_is, wait_for

pytestmark = pytest.mark.slow  # real SfM under the real daemon

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def _stage_processes(layout: Layout) -> list[int]:
    return processes_of(layout, b"stages.child")


def test_stop_after_sfm_ends_the_job_done_with_the_sfm_metrics_and_outputs(tmp_path):
    layout = make_layout(tmp_path)
    folder = layout.inbox / "ring"
    write_demo_set(folder, views=8, width=160, height=120, ready_marker=False, spacing_degrees=15)
    (folder / "job.toml").write_text('stop_after = "sfm"\n')
    (folder / "READY").touch()
    with DaemonProcess(layout, until_idle=True) as daemon:
        assert daemon.wait(120) == 0, daemon.log()

    document = layout.status("ring")
    assert (document["state"], document["message"], document["progress"]) == ("done", "done after sfm", 100)
    assert {name: stage["state"] for name, stage in document["stages"].items()} == {"ingest": "done", "sfm": "done"}
    metrics = document["metrics"]["sfm"]
    assert (metrics["registered"], metrics["total"], metrics["unregistered"], metrics["unplaced"]) == (8, 8, [], [])
    assert metrics["points"] > 0 and metrics["seconds"] > 0
    assert (Path(document["outputs"]["sfm.sparse"]) / "images.bin").exists()
    assert Path(document["outputs"]["sfm.train"]).read_text().count("\n") == 7
    assert layout.outbox_status(document["job_id"])["metrics"]["sfm"] == metrics


def test_a_set_whose_photos_share_nothing_fails_and_says_which_photos_and_why(tmp_path):
    """What the failed job's page lists: each photo structure from motion could not place, with
    why, in the person's words; and the set's cover in the outbox, from ingest, for its card."""
    layout = make_layout(tmp_path)
    folder = layout.inbox / "apart"
    for seed in (1, 2, 3):
        write_demo_set(folder / f"scene{seed}", views=1, width=160, height=120, seed=seed, ready_marker=False)
    (folder / "READY").touch()
    with DaemonProcess(layout, until_idle=True) as daemon:
        assert daemon.wait(120) == 0, daemon.log()

    document = layout.status("apart")
    assert (document["state"], document["error"]["stage"]) == ("failed", "sfm"), document
    names = [f"scene{seed}/view_000.jpg" for seed in (1, 2, 3)]
    sfm = document["metrics"]["sfm"]
    assert sfm["unregistered"] == names and [entry["file"] for entry in sfm["unplaced"]] == names
    assert all(entry["reason"].startswith("it ") for entry in sfm["unplaced"]), sfm["unplaced"]
    public = layout.outbox_status(document["job_id"])
    assert public["metrics"]["sfm"] == sfm and public["outputs"] == {"ingest.cover": "cover.jpg"}
    with Image.open(layout.outbox / document["job_id"] / "cover.jpg") as cover:
        assert cover.format == "JPEG" and cover.size == (160, 120) and not cover.getexif()


def _matching_heavy_set(folder: Path) -> None:
    """40 real photos (kermit and et, and each mirrored): about 6 s of exhaustive matching on 2 cores."""
    folder.mkdir(parents=True)
    for name in ("kermit", "et"):
        for photo in sorted((DATASETS / name / "images").iterdir()):
            (folder / photo.name).write_bytes(photo.read_bytes())
            ImageOps.mirror(Image.open(photo)).save(folder / f"mirrored-{photo.name}", quality=95)
    (folder / "READY").touch()


def test_cancel_during_matching_stops_the_stage_and_everything_it_started(tmp_path):
    layout = make_layout(tmp_path)
    _matching_heavy_set(layout.inbox / "busy")
    with DaemonProcess(layout) as daemon:
        wait_for(lambda: (layout.status("busy") or {}).get("message") == "sfm: matching", 90,
                 "the sfm stage to be matching")
        # the running job's card has the set's first photo already: ingest handed it to the outbox
        assert layout.outbox_status("busy-1")["outputs"] == {"ingest.cover": "cover.jpg"}
        with Image.open(layout.outbox / "busy-1" / "cover.jpg") as cover:
            assert max(cover.size) == 640 and not cover.getexif()
        stage_processes = _stage_processes(layout)
        assert stage_processes, daemon.log()
        (layout.inbox / "busy" / "CANCEL").touch()
        dropped = time.monotonic()
        document = wait_for(state_is(layout, "busy", "cancelled"), 20, "the job to be cancelled")
        assert time.monotonic() - dropped < 5
        assert _stage_processes(layout) == []
        for pid in stage_processes:
            assert not Path(f"/proc/{pid}").exists(), f"stage process {pid} survived the cancel"
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                continue
            raise AssertionError(f"a process of the stage's group {pid} survived the cancel")

    assert document["stages"]["sfm"]["state"] == "cancelled"
    assert "CANCEL file" in document["message"]
    job_log = (layout.state / "jobs" / "busy-1" / "job.log").read_text()
    assert "sfm: matching: exhaustive" in job_log
    assert "sfm: mapping" not in job_log  # it was stopped while matching
