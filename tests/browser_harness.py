"""Real headless Chromium for the browser tests: a static HTTP server on 127.0.0.1 and Playwright pages that
record every request, console error and page error.

Chromium is Debian's (/usr/bin/chromium) driven by Python Playwright's sync API, with WebGL on SwiftShader (the
CPU), so the tests need no GPU and download nothing (never run ``playwright install``). Without Chromium the
tests skip, except under CI (the CI variable set), where they fail: CI must run them.

The fixtures are imported by tests/conftest.py, so any test can ask for them::

    def test_page(tmp_path, serve_folder, open_page):
        base = serve_folder(tmp_path)
        page = open_page(viewport=(160, 120))
        page.goto(base + "index.html")
        ...
        page.assert_clean()  # no console error, no page error, nothing fetched from another host
"""

from __future__ import annotations

import functools
import http.server
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.required_tools import missing, require_program

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


# ---- the static server --------------------------------------------------------------------------------------


@dataclass
class Throttle:
    """Send files whose name ends with ``suffix`` in ``chunk`` bytes every ``delay`` seconds (a slow network)."""

    suffix: str
    chunk: int = 65536
    delay: float = 0.05


@dataclass
class ServerOptions:
    throttle: Throttle | None = None
    # Leave Content-Length out for these suffixes, as servers do for compressed or streamed bodies.
    no_length: tuple[str, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)  # added to every response (e.g. a CSP)


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Quiet, with the MIME types the viewer needs, and the options above."""

    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".splat": "application/octet-stream",
        ".js": "text/javascript",
        ".mjs": "text/javascript",
        ".json": "application/json",
        ".css": "text/css",
        ".html": "text/html",
    }

    def __init__(self, *args, directory: str, options: ServerOptions, **kwargs):
        self.options = options
        super().__init__(*args, directory=directory, **kwargs)

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def end_headers(self):
        for name, value in self.options.headers.items():
            self.send_header(name, value)
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def send_header(self, keyword, value):
        if keyword.lower() == "content-length" and self.path.split("?")[0].endswith(self.options.no_length):
            return  # HTTP/1.0: the body then runs until the connection closes
        super().send_header(keyword, value)

    def copyfile(self, source, outputfile):
        throttle = self.options.throttle
        if throttle is None or not self.path.split("?")[0].endswith(throttle.suffix):
            return super().copyfile(source, outputfile)
        while chunk := source.read(throttle.chunk):
            outputfile.write(chunk)
            outputfile.flush()
            time.sleep(throttle.delay)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a browser that cancels a download (the viewer's splat budget) breaks the pipe: not an error
        super().handle_error(request, client_address)


@dataclass
class StaticServer:
    root: Path
    url: str  # base URL, ends with "/"
    options: ServerOptions


def start_server(root: Path, options: ServerOptions | None = None) -> tuple[StaticServer, Callable[[], None]]:
    """Serve ``root`` on 127.0.0.1 at a free port from a background thread; returns the server and its stop."""
    options = options or ServerOptions()
    handler = functools.partial(_Handler, directory=str(root), options=options)
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name=f"static-server-{root.name}", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)

    return StaticServer(root, f"http://127.0.0.1:{server.server_address[1]}/", options), stop


@pytest.fixture
def serve_folder() -> Iterator[Callable[..., str]]:
    """serve_folder(root, options=None) -> base URL (ending in "/"); every server stops after the test."""
    stops = []

    def serve(root: Path, options: ServerOptions | None = None) -> str:
        server, stop = start_server(Path(root), options)
        stops.append(stop)
        return server.url

    yield serve
    for stop in stops:
        stop()


# ---- Chromium -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium():
    """One headless Chromium for the session (SwiftShader WebGL, no network services of its own)."""
    require_program(str(CHROMIUM), "chromium", "the browser tests need Debian's Chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # the test extra not installed
        missing("Python playwright is missing: pip install playwright (never `playwright install`)")
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        playwright.stop()


@dataclass
class RecordedPage:
    """A Playwright page and what it did: request URLs, console errors and uncaught page errors."""

    page: object
    context: object
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def __getattr__(self, name):  # page.goto, page.screenshot, ... straight through
        return getattr(self.page, name)

    def foreign_requests(self) -> list[str]:
        """Requests to any host but 127.0.0.1 / localhost (data: and blob: URLs never leave the browser)."""
        return [
            url for url in self.requests
            if urlsplit(url).scheme not in ("data", "blob") and urlsplit(url).hostname not in LOCAL_HOSTS
        ]  # fmt: skip

    def assert_only_local_requests(self) -> None:
        foreign = self.foreign_requests()
        assert not foreign, f"requests left 127.0.0.1: {foreign}"

    def assert_no_errors(self) -> None:
        assert not self.console_errors, f"console errors: {self.console_errors}"
        assert not self.page_errors, f"page errors: {self.page_errors}"

    def assert_clean(self) -> None:
        self.assert_no_errors()
        self.assert_only_local_requests()


def record(context, page) -> RecordedPage:
    """Wrap ``page`` (of ``context``) so that what it requests and reports is kept; foreign requests are
    recorded and then aborted, so a test never reaches the internet."""
    recorded = RecordedPage(page, context)
    page.on("request", lambda request: recorded.requests.append(request.url))
    page.on("console", lambda message: message.type == "error" and recorded.console_errors.append(message.text))
    page.on("pageerror", lambda error: recorded.page_errors.append(str(error)))

    def foreign(url: str) -> bool:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https", "ws", "wss") and parts.hostname not in LOCAL_HOSTS

    context.route(foreign, lambda route: route.abort())  # local requests are not intercepted at all
    return recorded


@pytest.fixture
def open_page(chromium) -> Iterator[Callable[..., RecordedPage]]:
    """open_page(viewport=(w, h), **new_context_options) -> RecordedPage in a fresh context (its own storage),
    device_scale_factor 1 unless given. Contexts close after the test."""
    contexts = []

    def open_(viewport: tuple[int, int] = (320, 240), **options) -> RecordedPage:
        options.setdefault("device_scale_factor", 1)
        context = chromium.new_context(viewport={"width": viewport[0], "height": viewport[1]}, **options)
        contexts.append(context)
        return record(context, context.new_page())

    yield open_
    for context in contexts:
        context.close()
