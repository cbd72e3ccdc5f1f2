"""Whatever names and folders people drop, the daemon starts, takes every set in, and says what it
did: names that are not UTF-8 (as old SMB and FTP clients write Latin-1), names holding a newline,
folders nested a thousand deep. Real sets, the real daemon, the real inbox watcher."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from daemon.store import open_store
from inbox_protocol.file_names import display_name, name_from_store, stored_name
from tests.daemon_harness import DaemonProcess, Layout, make_layout, state_is, wait_for
from tests.photo_sets import small_set

LATIN1_SET = os.fsdecode(b"caf\xe9")  # "café" written by a Latin-1 client: not valid UTF-8
LATIN1_PHOTO = os.fsdecode(b"men\xfc.jpg")
NEWLINE_SET = "evil\n<0>boom"  # a priority prefix journald would believe at the start of a line
DEPTH = 1000  # deeper than Python's recursion limit


def nest(folder: Path, depth: int) -> Path:
    """``depth`` folders, one inside the other, the innermost holding a photo-like file (made one
    level at a time: pathlib's and os.makedirs's own recursion would fail on it)."""
    folder.mkdir(parents=True, exist_ok=True)
    deepest = folder
    for _ in range(depth):
        deepest = deepest / "d"
        deepest.mkdir()
    (deepest / "lost.jpg").write_bytes(b"\xff\xd8 not reached")
    return deepest


def unnest(folder: Path) -> None:
    """Remove what ``nest`` made, deepest first (shutil.rmtree recurses too, and so would pytest's
    clean-up of the test's folder)."""
    levels = [folder]
    while (levels[-1] / "d").is_dir():
        levels.append(levels[-1] / "d")
    (levels[-1] / "lost.jpg").unlink()
    for level in reversed(levels):
        level.rmdir()


@pytest.fixture
def deep_trees():
    made: list[Path] = []
    yield made
    for tree in made:
        if tree.exists():
            unnest(tree)


def hostile_inbox(layout: Layout) -> Path:
    photos = small_set(layout.inbox / LATIN1_SET, ready=True)
    photos[0].rename(photos[0].with_name(LATIN1_PHOTO))
    small_set(layout.inbox / NEWLINE_SET, ready=True)
    small_set(layout.inbox / "deep", ready=True)
    nest(layout.inbox / "deep" / "archive", DEPTH)
    small_set(layout.inbox / "plain", ready=True)
    return layout.inbox / "deep" / "archive"


@pytest.mark.slow
@pytest.mark.parametrize("watch_mode", ["native", "polling"])
def test_a_daemon_started_on_hostile_names_and_depths_takes_every_set_in_and_exits_when_idle(tmp_path, watch_mode,
                                                                                           deep_trees):
    layout = make_layout(tmp_path, watch_mode=watch_mode)
    deep_trees.append(hostile_inbox(layout))
    daemon = DaemonProcess(layout, until_idle=True).start()
    code = daemon.wait(120)
    log = daemon.log()
    assert code == 0, log
    assert "Traceback" not in log, log

    latin1 = layout.status(LATIN1_SET)
    assert latin1["state"] == "done" and latin1["images"]["accepted"] == 4, latin1
    assert latin1["name"] == LATIN1_SET  # exactly: status.json is JSON, whose \udce9 reads back as the byte
    assert os.fsencode(latin1["name"]) == b"caf\xe9"
    assert re.fullmatch(r"caf-[0-9a-f]{6}-1", latin1["job_id"]), latin1["job_id"]
    manifest = json.loads((layout.state / "jobs" / latin1["job_id"] / "ingest" / "manifest.json").read_text())
    assert "men\\xfc.jpg" in [image["file"] for image in manifest["images"]]  # shown exactly, one line
    assert "caf\\xe9" in log  # the journal names it the same way

    deep = layout.status("deep")
    assert deep["state"] == "done" and deep["images"]["accepted"] == 4, deep
    assert any("archive/" in warning and "nested more than 32 folders deep" in warning
               for warning in deep["warnings"]), deep["warnings"]

    evil = layout.status(NEWLINE_SET)
    assert evil["state"] == "done" and evil["name"] == NEWLINE_SET
    assert "evil\\n<0>boom" in log
    for line in log.splitlines():  # every line carries its own priority, and only one
        assert not re.match(r"(<\d>)?<0>", line), line

    assert layout.status("plain")["state"] == "done"
    health = json.loads((layout.outbox / "health.json").read_text())
    assert health["state"] == "stopped"
    gallery = (layout.outbox / "index.html").read_text()
    assert "caf\\xe9" in gallery and "evil\\n&lt;0&gt;boom" in gallery

    store = open_store(f"sqlite:///{layout.state / 'jobs.sqlite3'}")
    assert {job.set_name for job in store.list_jobs()} == {LATIN1_SET, NEWLINE_SET, "deep", "plain"}
    store.engine.dispose()


def test_names_are_stored_exactly_whatever_bytes_they_hold():
    names = [LATIN1_SET, "100% done", "%E9", "%25", os.fsdecode(b"\xff\xfe%41"), "plain", NEWLINE_SET, "日本"]
    for name in names:
        assert name_from_store(stored_name(name)) == name
        stored_name(name).encode("utf-8")  # valid text for any database
    assert len({stored_name(name) for name in names}) == len(names)
    assert display_name(LATIN1_SET) == "caf\\xe9"
    assert display_name("a\tb\x1b[31mc\u202e") == "a\\tb\\x1b[31mc\\u202e"


@pytest.mark.slow
@pytest.mark.skipif(sys.version_info >= (3, 12), reason="os.walk stopped recursing in Python 3.12: watchdog no longer "
                    "dies of a deep folder there")
def test_a_watcher_killed_by_a_deep_folder_is_noticed_and_the_daemon_keeps_finding_sets(tmp_path, deep_trees):
    layout = make_layout(tmp_path / "site", watch_mode="native")
    with DaemonProcess(layout) as daemon:
        small_set(layout.inbox / "first", ready=True)
        wait_for(state_is(layout, "first", "done"), 30, "the first set", show=[daemon])
        # a deep tree moved in whole: watchdog walks it recursively and its thread dies
        nest(tmp_path / "staging" / "tree", DEPTH)
        deep_trees.extend([tmp_path / "staging" / "tree", layout.inbox / "first" / "tree"])  # wherever it ends
        (tmp_path / "staging" / "tree").rename(layout.inbox / "first" / "tree")
        wait_for(lambda: "the inbox watcher stopped" in daemon.log(), 20, "the watcher's death to be noticed",
                 show=[daemon])
        health = wait_for(lambda: (h := json.loads((layout.outbox / "health.json").read_text()))["problems"] and h,
                          20, "health.json to name the problem", show=[daemon])
        assert health["problems"] == ["the inbox watcher is down (a folder in the inbox is nested too deep for it); new "
                                      "sets are found by rescanning the inbox meanwhile"], health
        small_set(layout.inbox / "second", ready=True)  # no watcher: found by the daemon's own rescans
        wait_for(state_is(layout, "second", "done"), 30, "a set dropped while the watcher is down", show=[daemon])
        (layout.inbox / "first" / "tree").rename(tmp_path / "staging" / "tree")
        wait_for(lambda: "the inbox watcher runs again" in daemon.log(), 60, "the watcher to be restarted",
                 show=[daemon])
        wait_for(lambda: json.loads((layout.outbox / "health.json").read_text())["problems"] == [], 40,
                 "the problem to clear", show=[daemon])
        small_set(layout.inbox / "third", ready=True)
        wait_for(state_is(layout, "third", "done"), 30, "a set dropped after the restart", show=[daemon])
    assert "Traceback" in daemon.log()  # the dead thread's, in the journal for whoever investigates
