"""Shared fixtures: every status.json a test leaves behind must validate against the schema, and
neither it nor any page may name a server folder by its absolute path; real Chromium for the
browser tests (tests/browser_harness.py); a throwaway PostgreSQL cluster and a job store URL on
SQLite or PostgreSQL (tests/postgres_server.py); the demo, trained and published once a session
(tests/published_demo.py).

Markers (pyproject.toml): ``browser`` and ``postgres`` are set here from the fixtures a test uses,
so no test that starts Chromium or a PostgreSQL cluster can miss them; ``slow`` (whole-daemon runs,
real SfM, training, the installation) and ``gpu`` are set in the test modules. ``make test-fast``
runs what none of the first three marks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.browser_harness import chromium, open_page, serve_folder  # noqa: F401  (fixtures for the browser tests)
from tests.daemon_harness import STARTED_BY_THIS_TEST, assert_no_server_path, validate_status
from tests.published_demo import published_demo  # noqa: F401  (the demo, trained and published, for the page tests)
from tests.postgres_server import (  # noqa: F401  (fixtures for the job store tests)
    database_url, opened, postgres_database_url, postgres_server, postgres_url)


def uses_postgres(item: pytest.Item) -> bool:
    """A fixture named for PostgreSQL (postgres_server, postgres_url, postgres_database_url, a
    module's own_postgres) starts a cluster; so does ``database_url``'s postgresql case."""
    names = getattr(item, "fixturenames", ())
    if any("postgres" in name for name in names):
        return True
    callspec = getattr(item, "callspec", None)
    return "database_url" in names and callspec is not None and callspec.params.get("database_url") == "postgresql"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "chromium" in getattr(item, "fixturenames", ()):  # open_page and every browser fixture use it
            item.add_marker(pytest.mark.browser)
        if uses_postgres(item):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(autouse=True)
def daemons_of_this_test():
    """wait_for shows the logs of the daemons this test started, not of earlier tests'."""
    STARTED_BY_THIS_TEST.clear()
    yield
    STARTED_BY_THIS_TEST.clear()


@pytest.fixture(autouse=True)
def every_status_json_validates(tmp_path: Path):
    yield
    for path in tmp_path.rglob("*status.json"):
        if path.name.startswith("."):
            continue  # a temporary name: never left behind by a finished write
        validate_status(json.loads(path.read_text()))
    leftovers = [*tmp_path.rglob(".*status.json.*.tmp"), *tmp_path.rglob(".*status.json.*.new")]
    assert not leftovers, f"half-written status files left behind: {leftovers}"


@pytest.fixture(autouse=True)
def no_server_path_in_what_people_read(tmp_path: Path):
    """After each test: no status.json or page under its folder (where its inbox, outbox and state
    folders are) names that folder or the home folder by its absolute path (see
    daemon_harness.assert_no_server_path)."""
    yield
    assert_no_server_path(tmp_path)
