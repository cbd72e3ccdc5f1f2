"""Runs the real daemon as a child process over real folders, and reads what it writes."""

from __future__ import annotations

import html
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import jsonschema

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


@cache
def status_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((resources.files("daemon") / "schemas" / "status.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema)


def work_folders(job: Any, jobs_dir: Path) -> Any:
    """The job's folders (daemon.jobs.folders.JobFolders) in a state folder whose jobs_dir is ``jobs_dir``."""
    from daemon.config import Settings
    from daemon.jobs.folders import JobFolders

    return JobFolders.of(Settings(state=jobs_dir.parent), job)


def validate_status(document: dict[str, Any]) -> dict[str, Any]:
    status_validator().validate(document)
    return document


# What status.json and the pages say is for the person who dropped the photos: no server path.
# The copy beside the set keeps one documented exception, its ``outputs`` (paths in the state
# folder, for whoever works on the server; the outbox copy names files relative to the job's folder).
_PUBLIC_FILES = ("*.html", "*status.json")


def assert_no_server_path(root: Path) -> None:
    """Fail, naming the file and the string, if a status.json or a page under ``root`` names
    ``root`` (a test's inbox, outbox and state folders are in it) or the home folder by its
    absolute path."""
    folders = {str(root), str(root.resolve()), str(Path.home()), str(Path.home().resolve())} - {"/", ""}
    ordered = sorted(folders, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w.\-])(" + "|".join(map(re.escape, ordered)) + r")(?![\w.\-])")
    for path in sorted(found for glob in _PUBLIC_FILES for found in root.rglob(glob)):
        if path.name.startswith(".") or not path.is_file():
            continue  # a temporary name: never left behind by a finished write
        for text in _public_texts(path):
            match = pattern.search(text)
            assert match is None, (
                f"{path.relative_to(root)} names the server folder {match.group(1)}: "
                f"{text[max(0, match.start() - 80): match.end() + 80]!r}")


def _public_texts(path: Path) -> list[str]:
    """What a reader sees of the file: a page's text (entities decoded), or the strings of a
    status.json, without the copy beside the set's ``outputs``."""
    raw = path.read_text(errors="replace")
    if path.suffix == ".html":
        return [html.unescape(raw)]
    try:
        document = json.loads(raw)
    except ValueError:
        return [raw]
    if isinstance(document, dict) and path.parent.name != document.get("job_id"):
        document = {key: value for key, value in document.items() if key != "outputs"}  # beside the set
    return list(_strings(document))


def _strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


@dataclass(frozen=True)
class Layout:
    root: Path
    inbox: Path
    outbox: Path
    state: Path
    config: Path

    def status(self, set_name: str) -> dict[str, Any] | None:
        """The set's status.json, validated against the schema, or None if not written yet."""
        path = self.inbox / set_name / "status.json"
        if set_name.endswith(".zip"):
            path = self.inbox / f"{set_name}.status.json"
        try:
            return validate_status(json.loads(path.read_text()))
        except FileNotFoundError:
            return None

    def outbox_status(self, job_id: str) -> dict[str, Any]:
        return validate_status(json.loads((self.outbox / job_id / "status.json").read_text()))


def make_layout(root: Path, **settings: Any) -> Layout:
    """Folders and a configuration tuned for tests: 1 s settle (0.3 s after READY), no periodic rescan."""
    layout = Layout(root, root / "inbox", root / "outbox", root / "state", root / "instarecon.toml")
    layout.inbox.mkdir(parents=True)
    layout.outbox.mkdir()
    values = {
        "inbox": str(layout.inbox),
        "outbox": str(layout.outbox),
        "state": str(layout.state),
        "settle_seconds": 1.0,
        "ready_quiet_seconds": 0.3,
        "rescan_interval_seconds": 3600,
        "poll_interval_seconds": 0.2,
        "cancel_grace_seconds": 2.0,
        "threads": 2,
        **settings,
    }
    lines = []
    tables = {key: value for key, value in values.items() if isinstance(value, dict)}
    for key, value in values.items():
        if key not in tables:
            lines.append(f"{key} = {json.dumps(value)}")
    for key, table in tables.items():
        lines.append(f"[{key}]")
        lines.extend(f"{k} = {json.dumps(v)}" for k, v in table.items())
    layout.config.write_text("\n".join(lines) + "\n")
    return layout


PACED_PIPELINE = "tests.paced_stage:PACED_PIPELINE"


# The daemons the running test has started, for wait_for's report when it times out (emptied before
# each test by tests/conftest.py).
STARTED_BY_THIS_TEST: list["DaemonProcess"] = []


class DaemonProcess:
    """``instarecon run`` as a real child process; or, with ``pipeline`` ("module:NAME") or
    ``paced``, the real daemon running a test pipeline (tests/pipeline_daemon.py)."""

    def __init__(self, layout: Layout, *, until_idle: bool = False, paced: bool = False,
                 pipeline: str | None = None, env: dict[str, str] | None = None):
        pipeline = pipeline or (PACED_PIPELINE if paced else None)
        program = ["tests.pipeline_daemon", pipeline] if pipeline else ["daemon.cli"]
        self.command = [sys.executable, "-m", *program, "run", "--config", str(layout.config)]
        if until_idle:
            self.command.append("--until-idle")
        self.layout = layout
        self.env = {**os.environ, **(env or {})}
        self.log_path = layout.root / f"daemon-{time.monotonic_ns()}.log"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "DaemonProcess":
        return self.start()

    def __exit__(self, *_exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop()

    def start(self) -> "DaemonProcess":
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            self.command, cwd=REPO, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        STARTED_BY_THIS_TEST.append(self)
        return self

    def stop(self, timeout: float = 30.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> int:
        self.process.kill()
        return self.wait(10)

    def wait(self, timeout: float = 60.0) -> int:
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"daemon did not exit within {timeout} s; log:\n{self.log()}")
        self._log.close()
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def processes_of(layout: Layout, program: bytes) -> list[int]:
    """Ids of running processes whose command line names ``program`` (a module such as
    b"stages.child") and this layout's state folder: the ones working for this test's daemon."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if program in command and any(str(layout.state).encode() in part for part in command):
            pids.append(int(entry.name))
    return pids


def wait_for(probe: Callable[[], T], timeout: float = 30.0, what: str = "condition", interval: float = 0.05,
             show: Sequence["DaemonProcess"] | None = None) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` otherwise, and with the
    logs of the daemons in ``show`` (by default every daemon the test has started): what the
    processes a test started said is the first thing anyone needs to see when it times out."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            logs = "".join(f"\n--- {' '.join(daemon.command[-3:])} ({daemon.log_path.name}):\n{daemon.log()}"
                           for daemon in (STARTED_BY_THIS_TEST if show is None else show))
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{logs}")
        time.sleep(interval)


def state_is(layout: Layout, set_name: str, *states: str) -> Callable[[], dict[str, Any] | None]:
    def probe() -> dict[str, Any] | None:
        document = layout.status(set_name)
        return document if document is not None and document["state"] in states else None

    return probe


def run_cli(layout: Layout, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "daemon.cli", *args[:1], "--config", str(layout.config), *args[1:]],
        cwd=REPO, capture_output=True, text=True, timeout=timeout,
    )


def stage_starts(layout: Layout, job_id: str, stage: str) -> int:
    """How often the job's ``stage`` started, from the event log of the layout's SQLite store."""
    with sqlite3.connect(layout.state / "jobs.sqlite3") as db:
        return db.execute(
            "SELECT count(*) FROM job_events WHERE job_id = ? AND kind = 'stage' AND stage = ? AND state = 'running'",
            (job_id, stage),
        ).fetchone()[0]
