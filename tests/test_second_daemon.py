"""A second daemon on the same state folder: an operator's `instarecon run --until-idle` beside the
service, or a configuration copied to a second host without changing host_name. A daemon's name
is one live process's at a time, and the lease alone decides who runs a job."""

from __future__ import annotations

import json
import socket

import pytest

from daemon.config import EXIT_CONFIG
from daemon.store import JobState, open_store
from tests.daemon_harness import DaemonProcess, make_layout, run_cli, stage_starts, state_is, wait_for
from tests.photo_sets import small_set

pytestmark = pytest.mark.slow  # whole-daemon runs


def paced_set(layout, name: str = "garden", steps: int = 40) -> None:
    small_set(layout.inbox / name, ready=True, stop_after=None)
    (layout.inbox / name / "job.toml").write_text(f'stop_after = "sfm"\niterations = {steps}\n')


def test_a_second_daemon_by_hand_beside_the_service_leaves_its_running_job_alone(tmp_path):
    layout = make_layout(tmp_path, lease_seconds=600)  # no host_name: both would be this machine's name
    paced_set(layout, steps=60)
    with DaemonProcess(layout, paced=True) as service:
        running = wait_for(lambda: (d := layout.status("garden")) and d["stage"] == "sfm" and d, 30,
                           "the service to run the paced stage", show=[service])
        by_hand = DaemonProcess(layout, paced=True, until_idle=True).start()
        paced_set(layout, "porch", steps=5)  # work for either of them
        assert by_hand.wait(120) == 0, by_hand.log()
        done = wait_for(state_is(layout, "garden", "done"), 60, "the service's job to finish", show=[service, by_hand])
    host = socket.gethostname()
    assert running["host"] == host == done["host"]
    assert f"starting as {host}:{by_hand.process.pid}" in by_hand.log()
    job_id = done["job_id"]
    assert stage_starts(layout, job_id, "sfm") == 1  # one run of the stage, by the service
    assert (layout.state / "jobs" / job_id / "paced-runs.txt").read_text().count("run") == 1
    assert all(stage["state"] == "done" for stage in done["stages"].values()), done["stages"]
    store = open_store(f"sqlite:///{layout.state / 'jobs.sqlite3'}")
    states = [event["message"] for event in store.events(job_id) if event["kind"] == "state"]
    assert states.count("started") == 1 and not any("resum" in message for message in states), states
    porch = store.latest_for_set("porch")
    assert porch.state == JobState.DONE
    store.engine.dispose()
    health = json.loads((layout.outbox / "health.json").read_text())
    assert sorted(daemon["host"] for daemon in health["daemons"]) == sorted([host, f"{host}:{by_hand.process.pid}"])


def test_a_configured_name_that_is_alive_is_refused_and_taken_back_once_its_daemon_is_gone(tmp_path):
    layout = make_layout(tmp_path, host_name="gpu-1", lease_seconds=600)
    paced_set(layout, steps=600)
    first = DaemonProcess(layout, paced=True).start()
    try:
        wait_for(lambda: (d := layout.status("garden")) and d["stage"] == "sfm" and d, 30, "the paced stage",
                 show=[first])
        second = DaemonProcess(layout, paced=True).start()
        assert second.wait(60) == EXIT_CONFIG, second.log()
        assert f"another daemon named 'gpu-1' is alive (pid {first.process.pid} on {socket.gethostname()}" \
            in second.log()
        assert layout.status("garden")["state"] == "running"  # untouched
    finally:
        first.kill()  # gone without a word: its job stays "running", its lease 600 s long
    runs = layout.state / "jobs" / "garden-1" / "paced-runs.txt"
    with DaemonProcess(layout, paced=True) as third:
        # the name's holder is provably gone (its process has exited): the job resumes at once, not
        # after its 600 s lease
        wait_for(lambda: runs.read_text().count("run") == 2, 20, "the job to resume", show=[third])
        status = run_cli(layout, "status").stdout
    assert "garden-1 was interrupted (its daemon gpu-1 stopped); it resumes at sfm" in third.log()
    assert stage_starts(layout, "garden-1", "ingest") == 1
    assert status.splitlines()[1].split()[:2] == ["gpu-1", "alive"], status
