"""One daemon per GPU, as instarecon@N.service runs them (deploy/systemd/instarecon@.service.d/gpu.conf):
the same configuration, store and folders, each daemon given one GPU by CUDA_VISIBLE_DEVICES and a
name of its own by --host-name. They take jobs side by side, each job exactly once, and status.json
and health.json say which GPU ran each job. (No GPU here: the paced stage stands in for the work,
and the GPU is what the daemon was given; tests/test_deploy_units.py checks the unit itself.)"""

from __future__ import annotations

import json

import pytest

from tests.daemon_harness import DaemonProcess, make_layout, stage_starts, state_is, wait_for
from tests.photo_sets import small_set

pytestmark = pytest.mark.slow  # two whole daemons

SETS = [f"set-{number}" for number in range(4)]


def _health_of_both(layout) -> dict | None:
    try:
        health = json.loads((layout.outbox / "health.json").read_text())
    except (OSError, ValueError):  # not written yet
        return None
    # each daemon's row has its GPU from its first heartbeat on (the row its start made has not)
    return health if len(health.get("daemons", [])) == 2 and all(d["gpu"] for d in health["daemons"]) else None


def test_two_daemons_given_a_gpu_each_run_every_job_once_and_say_which_gpu_ran_it(tmp_path):
    layout = make_layout(tmp_path, lease_seconds=600)
    daemons = []
    for gpu in ("0", "1"):
        daemon = DaemonProcess(layout, paced=True, until_idle=True, env={"CUDA_VISIBLE_DEVICES": gpu})
        daemon.command += ["--host-name", f"box-gpu{gpu}"]
        daemons.append(daemon)
    for name in SETS:  # made aside, then moved in whole, before either daemon looks
        small_set(tmp_path / "staging" / name, ready=True, stop_after=None)
        (tmp_path / "staging" / name / "job.toml").write_text('stop_after = "sfm"\niterations = 20\n')
        (tmp_path / "staging" / name).rename(layout.inbox / name)
    for daemon in daemons:
        daemon.start()
    health = wait_for(lambda: _health_of_both(layout), 60, "both daemons in health.json", show=daemons)
    for daemon in daemons:
        assert daemon.wait(180) == 0, daemon.log()

    documents = [wait_for(state_is(layout, name, "done"), 10, f"{name} to be done", show=daemons) for name in SETS]
    assert {document["host"] for document in documents} == {"box-gpu0", "box-gpu1"}  # side by side
    for document in documents:
        assert document["gpu"] == document["host"].removeprefix("box-gpu"), document
        assert stage_starts(layout, document["job_id"], "sfm") == 1  # exactly once
        assert layout.outbox_status(document["job_id"])["gpu"] == document["gpu"]
    assert sorted((entry["host"], entry["gpu"]) for entry in health["daemons"]) == [("box-gpu0", "0"),
                                                                                    ("box-gpu1", "1")]
    for daemon, gpu in zip(daemons, "01"):
        assert f"starting as box-gpu{gpu} on GPU {gpu}:" in daemon.log()
