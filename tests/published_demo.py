"""Test fixture: the demo, as ``make demo`` runs it, made small enough for a test: the synthetic set
(24 views at 320x240), trained by the real daemon on the CPU at 80x60 for 500 iterations with at
most 20,000 Gaussians (about 40 s on two cores, 22 s of it training), then published into an
outbox with its job page.

Small but not toy: the densification schedule shrinks with the run, so at 500 iterations it has
reached the 20,000 Gaussians and made the thin ones that a screen with more pixels than the photos
shows as needles, which is what the scene page tests need to see (measured in
test_demo_scene_page.py; 1,500 iterations, as before, took 80 s and show the same).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from daemon.demo_set import write_demo_set
from tests.daemon_harness import DaemonProcess, assert_no_server_path, make_layout, state_is, wait_for

DEMO_JOB_TOML = "iterations = 500\ntrain_max_image_size = 100\nmax_gaussians = 20000\n"


@dataclass(frozen=True)
class PublishedDemo:
    outbox: Path  # the site: index.html, assets/, <job_id>/
    job_dir: Path  # outbox/<job_id>/: index.html, scene files, poster.jpg, status.json
    status: dict  # the job's status.json (the daemon's copy in the inbox)


@pytest.fixture(scope="session")
def published_demo(tmp_path_factory) -> PublishedDemo:
    layout = make_layout(tmp_path_factory.mktemp("published-demo"))
    folder = layout.inbox / "demo"
    write_demo_set(folder, width=320, height=240, ready_marker=False)
    (folder / "job.toml").write_text(DEMO_JOB_TOML)
    (folder / "READY").touch()
    with DaemonProcess(layout, until_idle=True) as daemon:
        assert daemon.wait(600) == 0, daemon.log()
    status = wait_for(state_is(layout, "demo", "done"), 5, "the demo job to be done")
    assert_no_server_path(layout.root)  # its pages and status.json are public
    return PublishedDemo(layout.outbox, layout.outbox / status["job_id"], status)
