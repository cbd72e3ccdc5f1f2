"""A throwaway PostgreSQL cluster for the tests: Debian's `postgresql` package's initdb, pg_ctl and
postgres, run as the `postgres` user when the tests run as root (initdb refuses root), listening on
127.0.0.1 on a free port, in a temporary folder removed at the end. One cluster per test session
(`postgres_server`, `postgres_url`), a fresh empty database per test (`postgres_database_url`), and
`database_url`, which runs a test once on SQLite and once on PostgreSQL.
Without PostgreSQL the tests that want it skip, naming the package; under CI they fail."""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import pytest

from tests.required_tools import missing

PACKAGE = "postgresql"
PROGRAMS = ("initdb", "pg_ctl", "postgres")
OWNER = "postgres"  # the system user Debian's package creates; the cluster runs as it under root
DATABASE = "instarecon"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL's programs (or, under root, the user to run them as) are not on this machine."""


def find_bindir() -> Path | None:
    """Where initdb, pg_ctl and postgres are: `pg_config --bindir`, the newest
    /usr/lib/postgresql/<version>/bin (Debian keeps them off PATH), or PATH."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name)) or (0,)

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for bindir in candidates:
        if all(os.access(bindir / name, os.X_OK) for name in PROGRAMS):
            return bindir
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class PostgresServer:
    """A running cluster. ``url`` is the SQLAlchemy URL of its database `instarecon`, written as an
    operator would (postgresql://, no driver: make_engine picks psycopg)."""

    root: Path  # owned by the cluster's user: data/, the log, the Unix socket
    bindir: Path
    port: int
    run_as: Sequence[str] = ()  # ["runuser", "-u", "postgres", "--"] under root
    started_seconds: float = 0.0
    options: str = ""  # postgres's command line, kept for a restart
    _stopped: bool = field(default=False, repr=False)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    def url_for(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def url(self) -> str:
        return self.url_for(DATABASE)

    def execute(self, sql: str) -> None:
        """Run one statement outside a transaction (CREATE/DROP DATABASE need that) as the superuser."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                             autocommit=True, connect_timeout=10) as connection:
            connection.execute(sql)

    def create_database(self, name: str | None = None) -> str:
        """A new empty database (a copy of template1); its URL."""
        name = name or f"test_{uuid.uuid4().hex[:16]}"
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop it, ending the connections a test's engines still hold."""
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def pause(self) -> None:
        """Shut the server down (fast: connections are cut, as when PostgreSQL restarts or its host
        goes away) and keep its data, for ``resume``."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        """Start it again after ``pause``, on the same port with the same data."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", self.options, "-w", "-t", "60", "start")

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, program: str, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        command = [*self.run_as, str(self.bindir / program), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.root,
                                env={**os.environ, "LC_ALL": "C", "TZ": "UTC"})
        if check and result.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"{program} failed ({result.returncode}): {result.stdout}{result.stderr}{log}")
        return result


def require_psycopg():
    try:
        import psycopg
    except ModuleNotFoundError:
        missing("psycopg is missing: the PostgreSQL tests' driver (pip install -e '.[test]', or 'psycopg[binary]')")
    return psycopg


def start_postgres(bindir: Path | None = None) -> PostgresServer:
    """initdb a new cluster in a fresh temporary folder, start it on a free port on 127.0.0.1 and
    create the database `instarecon`. The caller stops it (``stop()``; also at interpreter exit).
    Raises PostgresUnavailable when the programs, or under root the `postgres` user, are missing."""
    bindir = bindir or find_bindir()
    if bindir is None:
        raise PostgresUnavailable(
            f"PostgreSQL is missing: the job store's PostgreSQL tests run a throwaway cluster "
            f"(apt-get install {PACKAGE})"
        )
    run_as: list[str] = []
    # /tmp/pytest-of-root is 0700: the cluster's user could not reach a folder under it
    root = Path(tempfile.mkdtemp(prefix="instarecon-pg-"))
    root.chmod(0o755)
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam(OWNER)
        except KeyError:
            shutil.rmtree(root)
            raise PostgresUnavailable(f"no {OWNER} user to run PostgreSQL as (apt-get install {PACKAGE})") from None
        runuser = shutil.which("runuser") or "/usr/sbin/runuser"
        run_as = [runuser, "-u", OWNER, "--"]
        os.chown(root, owner.pw_uid, owner.pw_gid)
    server = PostgresServer(root=root, bindir=bindir, port=0, run_as=run_as)
    atexit.register(server.stop)
    began = time.monotonic()
    try:
        server._run("initdb", "-D", str(server.data), "--auth=trust", "--username=postgres", "-E", "UTF8",
                    "--locale=C", "--no-instructions", "--no-sync")
        for attempt in range(5):  # another program may take the free port between probe and bind
            server.port = _free_port()
            server.options = (
                f"-c listen_addresses=127.0.0.1 -p {server.port} -c unix_socket_directories={root} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
            )
            started = server._run("pg_ctl", "-D", str(server.data), "-l", str(server.log), "-o", server.options,
                                  "-w", "-t", "60", "start", check=False)
            if started.returncode == 0:
                break
            log = server.log.read_text(errors="replace") if server.log.exists() else ""
            if "could not bind" not in log or attempt == 4:
                raise RuntimeError(f"pg_ctl start failed: {started.stdout}{started.stderr}{log[-3000:]}")
            server.log.unlink()
        server.execute(f'CREATE DATABASE "{DATABASE}"')
    except BaseException:
        server.stop()
        raise
    server.started_seconds = time.monotonic() - began
    return server


def throwaway_cluster() -> Iterator[PostgresServer]:
    """A started cluster, stopped and removed after use (for fixtures: ``yield from``); skips,
    naming the package, where PostgreSQL is missing (fails under CI)."""
    require_psycopg()
    try:
        server = start_postgres()
    except PostgresUnavailable as error:
        missing(str(error))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One cluster for the whole session, started on first use."""
    yield from throwaway_cluster()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """The session cluster's database `instarecon` (shared: tests that want it empty use
    ``postgres_database_url``)."""
    return postgres_server.url


@pytest.fixture
def postgres_database_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database of its own for one test, dropped after it."""
    url = postgres_server.create_database()
    try:
        yield url
    finally:
        postgres_server.drop_database(url.rsplit("/", 1)[1])


DATABASES = ("sqlite", "postgresql")


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A job store URL for one test, once on each database: SQLite in the test's folder (the
    single-host default), and a fresh database on the session's PostgreSQL cluster. Select one
    with ``-k sqlite`` / ``-k postgresql``."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    return request.getfixturevalue("postgres_database_url")


@pytest.fixture
def opened(database_url: str):
    """Opens job stores on the test's database (each with its own engine, as another daemon
    would have); their connections are closed at the end."""
    from daemon.store import JobStore, open_store

    stores = []

    def open_one(**options):
        store = open_store(database_url, **options)
        if stores:  # another daemon: a process of its own, which cannot be looked up from here
            store = JobStore(store.engine, host=store.host, lease_seconds=store.lease.total_seconds(),
                             process=f"daemon-{len(stores) + 1}-elsewhere")
        stores.append(store)
        return store

    yield open_one
    for store in stores:
        store.engine.dispose()
