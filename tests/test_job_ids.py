"""Job ids never collide: two sets always get two jobs, each its own status.json."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import pytest

from daemon.store import JobState
from daemon.store.job_ids import job_id_for, set_slug
from tests.daemon_harness import DaemonProcess, make_layout, run_cli, state_is, wait_for
from tests.photo_sets import small_set


def test_a_safe_name_that_looks_like_a_cleaned_one_gets_an_id_of_its_own():
    assert job_id_for("my set", 1) == "my-set-35db3f-1"
    assert job_id_for("my-set-35db3f", 1) != job_id_for("my set", 1)
    assert job_id_for("kermit", 2) == "kermit-2"  # plain names stay plain


def two_names_whose_short_hashes_collide() -> tuple[str, str]:
    """Real names (the same cleaned text, different unsafe characters) whose 6-digit hashes agree:
    the birthday bound finds a pair among a few thousand."""
    seen: dict[str, str] = {}
    for length in itertools.count(1):
        for filler in itertools.product(" !#+,;=@", repeat=length):
            name = f"trip{''.join(filler)}day"
            digest = hashlib.sha256(name.encode()).hexdigest()[:6]
            if digest in seen:
                return seen[digest], name
            seen[digest] = name


def test_names_whose_short_hashes_collide_still_get_two_jobs(opened):
    first, second = two_names_whose_short_hashes_collide()
    assert set_slug(first) == set_slug(second)  # the case the store must notice
    store = opened()
    jobs = [store.create_job(set_name=name, source_path=Path("/inbox") / name, source_kind="folder",
                             fingerprint="f" * 64, state=JobState.WAITING, message="waiting", attempt=1)
            for name in (first, second)]
    assert [job.set_name for job in jobs] == [first, second]
    assert jobs[0].id != jobs[1].id
    assert len(jobs[1].id) > len(jobs[0].id)  # the longer hash
    assert store.latest_for_set(second).id == jobs[1].id and store.latest_for_set(first).id == jobs[0].id
    again = store.create_job(set_name=second, source_path=Path("/inbox") / second, source_kind="folder",
                             fingerprint="f" * 64, state=JobState.WAITING, message="waiting", attempt=1)
    assert again.id == jobs[1].id  # the same attempt seen twice (two daemons) is still one job


@pytest.mark.slow
def test_two_sets_whose_names_once_gave_one_id_both_run(tmp_path):
    layout = make_layout(tmp_path)
    small_set(layout.inbox / "my set", ready=True)
    small_set(layout.inbox / "my-set-35db3f", ready=True)
    with DaemonProcess(layout) as daemon:
        spaced = wait_for(state_is(layout, "my set", "done"), 60, "'my set' to finish", show=[daemon])
        dashed = wait_for(state_is(layout, "my-set-35db3f", "done"), 60, "'my-set-35db3f' to finish", show=[daemon])
    assert spaced["job_id"] != dashed["job_id"]
    assert (spaced["name"], dashed["name"]) == ("my set", "my-set-35db3f")
    for document in (spaced, dashed):
        assert layout.outbox_status(document["job_id"])["name"] == document["name"]
        events = run_cli(layout, "status", document["job_id"]).stdout
        assert document["name"] in events
