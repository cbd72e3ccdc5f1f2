"""Several daemons on one inbox and one job store, told apart by host_name (on one machine here):
every set runs exactly once, and a daemon killed mid-job has its job finished by another once
its lease runs out. On PostgreSQL (a throwaway cluster, tests/postgres_server.py), the several-hosts
set-up, and on SQLite, where several daemons share one machine's state folder."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import datetime, timezone

import pytest

from daemon.store import JobState, open_store
from tests.daemon_harness import DaemonProcess, Layout, make_layout, run_cli, state_is, wait_for
from tests.photo_sets import small_set

pytestmark = pytest.mark.slow  # whole-daemon runs


def daemon_layouts(layout: Layout, count: int, **settings) -> list[Layout]:
    """The same folders and store, one configuration per daemon, each with its own host_name."""
    layouts = []
    for number in range(1, count + 1):
        config = layout.root / f"daemon-{number}.toml"
        extra = "".join(f"{key} = {value!r}\n".replace("'", '"') for key, value in settings.items())
        config.write_text(layout.config.read_text() + f'host_name = "d{number}"\n' + extra)
        layouts.append(dataclasses.replace(layout, config=config))
    return layouts


def test_three_daemons_run_every_set_exactly_once(tmp_path, database_url):
    layout = make_layout(tmp_path, database_url=database_url)
    # A long lease: this test is about claims; takeovers are the next test's (one spurious takeover
    # was seen once, with a 60 s lease, on a machine loaded eight-fold: see the closing note of stop 11)
    daemons = [DaemonProcess(each).start() for each in daemon_layouts(layout, 3, lease_seconds=600)]
    try:
        time.sleep(1.0)  # all three are watching
        names = [f"set-{number:02d}" for number in range(12)]
        for name in names:  # made aside, then moved in whole: each set is complete when it appears
            small_set(tmp_path / "staging" / name, ready=True)
            (tmp_path / "staging" / name).rename(layout.inbox / name)
        for name in names:
            wait_for(state_is(layout, name, "done", "failed"), 120, f"{name} to finish", show=daemons)
        alive = [daemon.process.poll() is None for daemon in daemons]
    finally:
        codes = [daemon.stop() for daemon in daemons]
    # every daemon lived through it: none was ended by another's writes (status.json, the site)
    logs = "".join(f"\n--- daemon {number}:\n{daemon.log()}" for number, daemon in enumerate(daemons, 1))
    assert alive == [True] * 3 and codes == [0] * 3, f"alive {alive}, exit codes {codes}{logs}"
    assert "Traceback" not in logs, logs
    store = open_store(database_url)
    jobs = store.list_jobs()
    assert sorted((job.set_name, job.attempt, job.state) for job in jobs) == [(name, 1, JobState.DONE) for name in names]
    for job in jobs:
        starts = [event for event in store.events(job.id) if event["kind"] == "state" and event["state"] == "running"]
        assert len(starts) == 1, (job.id, [(e["at"].isoformat(), e["state"], e["message"]) for e in store.events(job.id)],
                                  "\n".join(line for d in daemons for line in d.log().splitlines() if job.id in line or "Traceback" in line or "rror" in line))
    hosts = {job.host for job in jobs}
    assert hosts <= {"d1", "d2", "d3"}
    print(f"jobs per daemon: { {host: sum(job.host == host for job in jobs) for host in sorted(hosts)} }")


def _conditions(status_output: str) -> dict[str, str]:
    """Each daemon's condition in `instarecon status`'s first table."""
    return {line.split()[0]: line.split()[1] for line in status_output.split("\n\n")[0].splitlines()[1:]}


def test_a_killed_daemons_job_is_finished_by_another_after_its_lease_runs_out(tmp_path, database_url):
    lease = 2.0
    layout = make_layout(tmp_path, database_url=database_url)
    first, second = (DaemonProcess(each, paced=True)
                     for each in daemon_layouts(layout, 2, lease_seconds=lease, heartbeat_seconds=0.5))
    first.start()
    small_set(layout.inbox / "garden", ready=True, stop_after=None)
    (layout.inbox / "garden" / "job.toml").write_text('stop_after = "sfm"\niterations = 60\n')
    running = wait_for(lambda: (d := layout.status("garden")) and d["stage"] == "sfm" and d["progress"] > 5 and d,
                       60, "the paced stage to run")
    assert running["host"] == "d1"
    second.start()
    # d2 up (its store opened, where a daemon sends the jobs of daemons provably gone back to the queue
    # at once) before d1 dies: d1's job then stays d1's until its lease runs out, which is what is tested
    wait_for(lambda: "brought up to date" in second.log(), 60, "d2 to start", show=[first, second])
    first.kill()
    killed = datetime.now(timezone.utc)
    try:
        done = wait_for(state_is(layout, "garden", "done"), 60, "the other daemon to finish the job",
                        show=[first, second])
        # which daemons are alive, as any host sees it: d1 silent (three heartbeats missed), d2 alive. Both
        # at once: on a loaded machine d2's heartbeat, every 0.5 s here, can itself come more than three
        # intervals late now and then, and d2 then reads as silent too, rightly, until its next one
        table = wait_for(lambda: (out := run_cli(layout, "status").stdout) and _conditions(out) == {
            "d1": "silent", "d2": "alive"} and out, 30, "d1 to be reported silent and d2 alive")
        health = wait_for(lambda: (h := json.loads((layout.outbox / "health.json").read_text()))["host"] == "d2"
                          and len(h["daemons"]) == 2 and h, 10, "d2 to write health.json")
    finally:
        second.stop()
    assert [(d["host"], d["alive"], d["state"]) for d in health["daemons"]] == [("d1", False, "running"), ("d2", True, "idle")]
    assert health["state"] == "idle" and health["problems"] == []
    stopped = json.loads((layout.outbox / "health.json").read_text())  # d2's last word
    assert (stopped["state"], [d["state"] for d in stopped["daemons"]]) == ("stopped", ["running", "stopped"])
    jobs = table.split("\n\n")[1].splitlines()
    assert jobs[1].split()[:5] == [running["job_id"], "done", "sfm", "100%", "d2"], table
    store = open_store(database_url)
    job = store.get(running["job_id"])
    assert (job.state, job.host, job.attempt) == (JobState.DONE, "d2", 1)
    assert done["job_id"] == running["job_id"]
    messages = [event["message"] for event in store.events(job.id) if event["kind"] == "state"]
    assert "taken over from d1, whose lease ran out" in messages
    taken = next(e for e in store.events(job.id) if e["message"] == "taken over from d1, whose lease ran out")
    runs = (layout.state / "jobs" / job.id / "paced-runs.txt").read_text().splitlines()
    assert len(runs) == 2  # the stage killed with d1, then run again by d2; ingest was not
    assert len([e for e in store.events(job.id) if e["kind"] == "stage" and e["stage"] == "ingest"
                and e["state"] == "running"]) == 1
    takeover = (taken["at"].replace(tzinfo=timezone.utc) - killed).total_seconds()
    assert takeover < lease + 4.0  # the lease, and the other daemon's next look for work (2 s)
    print(f"taken over {takeover:.1f} s after the kill (lease {lease:g} s)")
