"""No late writer: a daemon frozen mid-stage past its lease (a stopped VM, a hung NFS mount), whose
job another daemon took over and finished, changes nothing of the new owner's when it wakes up.

Daemon A runs the paced stage, which freezes itself (SIGSTOP) one step before its end; then A's
process is frozen too, and its lease runs out. Daemon B takes the job over and finishes it. Then
A's stage is woken (SIGCONT), finishes its last step and writes its folder, and then A itself: it
finds its stage finished and goes to record it. The folder is in A's claim's folder, which is
never moved into the job's; A stops and says why in the journal, and the job's folder, the outbox
and status.json stay B's."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.daemon_harness import DaemonProcess, make_layout, processes_of, state_is, wait_for
from tests.paced_stage import STOP_AT_STEP
from tests.photo_sets import small_set

pytestmark = pytest.mark.slow  # two whole daemons

STEPS = 30


def _state(pid: int) -> str | None:
    """The process's state letter in /proc/PID/stat (T: stopped, Z: exited, not yet reaped); None: gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _outbox_files(outbox: Path) -> dict[str, bytes]:
    return {path.relative_to(outbox).as_posix(): path.read_bytes()
            for path in sorted(outbox.rglob("*")) if path.is_file() and not path.name.startswith("health")}


def _json_changes(before: bytes | None, after: bytes | None) -> object:
    """What differs between two versions of a file: the fields, for JSON."""
    try:
        old, new = json.loads(before), json.loads(after)
    except (TypeError, ValueError):
        return (before and before[:200], after and after[:200])
    return {key: (old.get(key), new.get(key)) for key in old.keys() | new.keys() if old.get(key) != new.get(key)}


def test_a_daemon_paused_past_its_lease_cannot_touch_the_job_another_took_over(tmp_path):
    layout = make_layout(tmp_path, lease_seconds=3)
    small_set(layout.inbox / "garden", ready=True, stop_after=None)
    (layout.inbox / "garden" / "job.toml").write_text(f'stop_after = "sfm"\niterations = {STEPS}\n')
    first = DaemonProcess(layout, paced=True, env={STOP_AT_STEP: str(STEPS - 1)}).start()
    frozen: list[int] = []
    try:
        stage_pid = wait_for(lambda: next((pid for pid in processes_of(layout, b"stages.child") if _state(pid) == "T"), None),
                             60, "daemon A's stage to stop itself one step before its end", show=[first])
        os.kill(first.process.pid, signal.SIGSTOP)  # A, frozen as a paused machine is: its lease runs out
        frozen = [first.process.pid, stage_pid]
        running = layout.status("garden")
        job_id, job_dir = running["job_id"], layout.state / "jobs" / running["job_id"]

        second = DaemonProcess(layout, paced=True, until_idle=True).start()
        assert second.wait(120) == 0, second.log()
        done = wait_for(state_is(layout, "garden", "done"), 10, "daemon B to finish the job", show=[first, second])
        assert done["host"] != running["host"]  # B's name, not A's
        writer = (job_dir / "sfm" / "writer.txt").read_text()
        outbox_before = _outbox_files(layout.outbox)
        beside_before = (layout.inbox / "garden" / "status.json").read_bytes()

        # A's stage wakes first, takes its last step and writes its folder; then A itself
        os.kill(stage_pid, signal.SIGCONT)
        wait_for(lambda: _state(stage_pid) in ("Z", None), 30, "A's stage to finish its last step", show=[first])
        os.kill(first.process.pid, signal.SIGCONT)
        frozen = []
        said = wait_for(lambda: "taken over by another daemon" in first.log() and first.log(), 30,
                        "daemon A to see that its job was taken over", show=[first])
        time.sleep(1.0)  # A's main loop passes a few times more: anything it would still write, it writes now
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
        first.stop()

    # the job's folder, the outbox and status.json are B's
    assert (job_dir / "sfm" / "writer.txt").read_text() == writer
    assert writer != str(stage_pid)
    after = _outbox_files(layout.outbox)
    changed = {name: _json_changes(outbox_before.get(name), after.get(name)) for name in outbox_before.keys() | after.keys()
               if outbox_before.get(name) != after.get(name)}
    assert not changed, changed
    assert (layout.inbox / "garden" / "status.json").read_bytes() == beside_before
    final = json.loads(beside_before)
    assert (final["state"], final["host"]) == ("done", done["host"])
    # A's finished folder stayed in A's claim's, where no one reads it
    assert f"job {job_id} was taken over by another daemon" in said
