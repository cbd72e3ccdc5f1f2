"""Atomic writes and the sweeping of their leftovers, with several writers at once: what a daemon
killed mid-write leaves is removed, and a write under way in another process never is. Real
processes; the "write under way" is an atomic copy from a FIFO that the test feeds when it likes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from stages.atomic_files import atomic_write_bytes, remove_temporaries
from tests.daemon_harness import REPO, wait_for


TWO_HOURS = 7200.0  # older than any leftover the sweep waits for


def temporaries(path: Path) -> list[Path]:
    return sorted([*path.parent.glob(f".{path.name}.*.tmp"), *path.parent.glob(f".{path.name}.*.new")])


def writer_in_another_process(target: Path, fifo: Path) -> subprocess.Popen:
    """A process in the middle of ``atomic_copy(fifo, target)``: its temporary file exists, and the
    write goes on once the test writes into the FIFO."""
    os.mkfifo(fifo)
    code = f"from stages.atomic_files import atomic_copy; atomic_copy({str(fifo)!r}, {str(target)!r})"
    process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: temporaries(target), 10, "the writer's temporary file")
    return process


def test_a_write_under_way_in_another_process_is_never_swept(tmp_path):
    target = tmp_path / "page.txt"
    writer = writer_in_another_process(target, tmp_path / "feed")
    (leftover,) = temporaries(target)
    assert leftover.name.endswith(".tmp")  # named so only once locked
    old = time.time() - TWO_HOURS
    os.utime(leftover, (old, old))  # however old it looks, its writer holds the lock
    assert remove_temporaries(target) == 0 and leftover.exists()
    writer.send_signal(signal.SIGSTOP)  # a writer paused (a stopped VM, a long pause) keeps it too
    try:
        assert remove_temporaries(target) == 0 and leftover.exists()
    finally:
        writer.send_signal(signal.SIGCONT)
    with open(tmp_path / "feed", "wb") as feed:
        feed.write(b'{"state": "done"}\n')
    assert writer.wait(30) == 0, writer.stderr.read()  # its rename found its file in place
    assert target.read_bytes() == b'{"state": "done"}\n'
    assert temporaries(target) == []


def test_the_leftover_of_a_writer_killed_mid_write_is_swept_at_once(tmp_path):
    target = tmp_path / "page.txt"
    target.write_text("old\n")
    writer = writer_in_another_process(target, tmp_path / "feed")
    writer.kill()
    writer.wait(10)
    (leftover,) = temporaries(target)
    assert remove_temporaries(target) == 1  # its lock went with it: provably abandoned, however young
    assert not leftover.exists() and target.read_text() == "old\n"


def test_a_fresh_unlocked_new_file_is_left_alone_and_an_old_one_swept(tmp_path):
    """``.new``: a file created a moment ago whose writer has not locked it yet, or one left by a
    writer killed in exactly that moment; only age tells them apart."""
    target = tmp_path / "page.txt"
    young, old = tmp_path / ".page.txt.aaaa.new", tmp_path / ".page.txt.bbbb.new"
    young.write_text("{")
    old.write_text("{")
    stale = time.time() - TWO_HOURS
    os.utime(old, (stale, stale))
    assert remove_temporaries(target) == 1
    assert young.exists() and not old.exists()


def test_many_writers_and_sweepers_at_once_never_fail_or_leave_a_half_written_file(tmp_path):
    """What several daemons do to one status.json: each write replaces it whole, each daemon sweeps
    now and then; no write fails, and the file is always one of the documents written."""
    target = tmp_path / "page.txt"
    code = ("import sys; from pathlib import Path; from stages.atomic_files import atomic_write_bytes, remove_temporaries\n"
            "target = Path(sys.argv[1])\n"
            "for n in range(300):\n"
            "    remove_temporaries(target)\n"
            "    atomic_write_bytes(target, (sys.argv[2] * 2000 + '\\n').encode())\n")
    writers = [subprocess.Popen([sys.executable, "-c", code, str(target), letter], cwd=REPO, stderr=subprocess.PIPE,
                                text=True) for letter in "abcd"]
    seen = set()
    while any(writer.poll() is None for writer in writers):
        try:
            seen.add(target.read_text())
        except FileNotFoundError:
            pass
    for writer in writers:
        assert writer.wait(60) == 0, writer.stderr.read()
    assert seen <= {letter * 2000 + "\n" for letter in "abcd"} and seen
    assert temporaries(target) == []
    atomic_write_bytes(target, b"last\n")
    assert target.read_bytes() == b"last\n"
