"""deploy/nginx/instarecon.conf in a real nginx: the example as operators install it, only its listen lines and
root changed, serving an outbox with a published scene on 127.0.0.1.

Chromium opens the gallery and the job page through it and the viewer must get ready with no console error (a
Content-Security-Policy violation logs one) and no request leaving 127.0.0.1; plain HTTP requests check the
headers: media types of the scenes, Cache-Control per kind of file, gzip for text but never for scene.splat
(whose Content-Length drives the viewer's progress bar), the CSP header equal to the pages' own plus
frame-ancestors, no directory listing, no dot files, nothing outside the outbox.

Needs Debian's nginx (apt-get install nginx); without it the tests skip, except under CI (the CI variable set),
where they fail.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from site_builder.asset_release import asset_version
from tests.required_tools import require_program
from tests.site_documents import status_document

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "deploy" / "nginx" / "instarecon.conf"
ASSETS_CACHE = "max-age=31536000, immutable"
SECRET = "outside-the-outbox-7f3a"


def nginx_binary() -> str:
    return require_program("nginx", "nginx", "the deploy example's test runs it", also_look_in=("/usr/sbin/nginx",))


def mime_types_file(nginx: str) -> Path:
    """The mime.types beside the nginx.conf this nginx was built for (/etc/nginx/mime.types on Debian)."""
    built = subprocess.run([nginx, "-V"], capture_output=True, text=True, check=True).stderr
    match = re.search(r"--conf-path=(\S+)", built)
    path = Path(match.group(1)).parent / "mime.types" if match else Path("/etc/nginx/mime.types")
    assert path.is_file(), f"{path} is missing (it comes with the nginx package)"
    return path


def site_config(port: int, outbox: Path) -> str:
    """The example with only what the test must change: listen on 127.0.0.1:<port>, root at ``outbox``."""
    text = EXAMPLE.read_text()
    listens = re.findall(r"^[ \t]*listen[ \t][^;\n]*;[ \t]*\n", text, flags=re.M)
    assert len(listens) == 2, listens  # the IPv4 and IPv6 lines the example's comment names
    text = text.replace(listens[0], f"    listen 127.0.0.1:{port};\n").replace(listens[1], "")
    text, roots = re.subn(r"^([ \t]*)root[ \t]+/srv/instarecon/outbox;", rf"\g<1>root {outbox};", text, flags=re.M)
    assert roots == 1
    return text


def main_config(folder: Path, include: Path) -> str:
    """A minimal nginx.conf (as Debian's, reduced): every path inside ``folder``, the site file included in http."""
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers would drop to nobody, who cannot read tmp
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temp = "".join(f"    {kind}_temp_path {folder / kind};\n" for kind in kinds)
    return (
        f"{user}daemon off;\nworker_processes 1;\npid {folder / 'nginx.pid'};\n"
        f"error_log {folder / 'error.log'} notice;\n"
        "events { worker_connections 64; }\n"
        "http {\n"
        "    include mime.types;\n    default_type application/octet-stream;\n    sendfile on;\n"
        f"    access_log {folder / 'access.log'};\n{temp}"
        f"    include {include};\n"
        "}\n"
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_outbox(outbox: Path) -> None:
    """The outbox as the daemon leaves it for one finished job (the viewer test's site), with the files the site
    builder does not write: the job's status.json, health.json, scene.ply; and a daemon temporary file."""
    from tests.test_viewer_browser import scene_gaussians, write_site  # torch and the trainer: only when run

    job = write_site(outbox, scene_gaussians(3, 300), sog=True)
    count = (job / "scene.splat").stat().st_size // 32
    document = status_document("job-1", "synthetic scene", "done", published={"gaussians": count})
    (job / "status.json").write_text(json.dumps(document))
    (outbox / "health.json").write_text(json.dumps({  # as a stopped daemon leaves it: the pages say "stopped"
        "schema_version": 1, "version": "test", "host": "here", "started_at": "2026-11-27T10:00:00Z",
        "heartbeat_at": "2026-11-27T10:00:30Z", "interval_seconds": 30, "state": "stopped",
        "queue": {"waiting": 0, "queued": 0, "running": 0}, "current_job": None, "problems": []}))
    header = b"ply\nformat binary_little_endian 1.0\nelement vertex 300\nproperty float x\nend_header\n"
    (job / "scene.ply").write_bytes(header + bytes(range(256)) * 20)
    (job / ".scene.ply.k2x9f1.tmp").write_bytes(b"half a file")


@dataclass
class Served:
    url: str  # ends with "/"
    port: int
    outbox: Path


@pytest.fixture(scope="module")
def nginx_site(tmp_path_factory) -> Iterator[Served]:
    nginx = nginx_binary()
    folder = tmp_path_factory.mktemp("nginx")
    outbox = folder / "outbox"
    write_outbox(outbox)
    (folder / SECRET).write_text(SECRET)
    (outbox / "leak.txt").symlink_to(folder / SECRET)  # a link out of the outbox: must not be followed
    shutil.copy(mime_types_file(nginx), folder / "mime.types")
    conf = folder / "nginx.conf"
    command = [nginx, "-p", f"{folder}/", "-c", str(conf)]

    for attempt in range(3):  # the free port may be taken between probing and binding
        port = free_port()
        (folder / "instarecon.conf").write_text(site_config(port, outbox))
        conf.write_text(main_config(folder, folder / "instarecon.conf"))
        check = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0 and "syntax is ok" in check.stderr, check.stderr
        assert "[warn]" not in check.stderr and "[emerg]" not in check.stderr, check.stderr
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 15
        while process.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        if process.poll() is None:
            break
        log = process.stderr.read() + (folder / "error.log").read_text(errors="replace")
        if "Address already in use" not in log or attempt == 2:
            pytest.fail(f"nginx did not start: {log}")
    try:
        yield Served(f"http://127.0.0.1:{port}/", port, outbox)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log = (folder / "error.log").read_text(errors="replace").splitlines()
        refused_link = "Too many levels of symbolic links"  # leak.txt: nginx logs its refusal as [crit]
        errors = [line for line in log if re.search(r"\[(crit|alert|emerg)\]", line) and refused_link not in line]
        assert not errors, errors


# ---- plain HTTP ---------------------------------------------------------------------------------------------

class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a 3xx comes back as it is


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())  # and never a proxy


@dataclass
class Reply:
    status: int
    headers: object  # http.client.HTTPMessage: case-insensitive .get()
    body: bytes


def fetch(url: str, **headers: str) -> Reply:
    request = urllib.request.Request(url, headers={name.replace("_", "-"): value for name, value in headers.items()})
    try:
        with _opener.open(request, timeout=10) as response:
            return Reply(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:  # 3xx without redirect handling, 4xx, 5xx: still a reply
        with error:
            return Reply(error.code, error.headers, error.read())


def raw_get(port: int, target: str) -> Reply:
    """A request line sent as written (urllib would normalise ``..``)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest("GET", target, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        connection.close()


def page_csp(html: str) -> str:
    match = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', html)
    assert match, "the page carries no CSP meta tag"
    return match.group(1)


def assert_security_headers(reply: Reply, csp: str) -> None:
    assert reply.headers.get("Content-Security-Policy") == f"{csp}; frame-ancestors 'self'"
    assert reply.headers.get("X-Content-Type-Options") == "nosniff"
    assert reply.headers.get("Referrer-Policy") == "no-referrer"


def test_scene_files_go_out_whole_as_binary_data(nginx_site):
    base, job = nginx_site.url, nginx_site.outbox / "job-1"
    for name in ("scene.sog", "scene.splat", "scene.ply"):
        reply = fetch(base + f"job-1/{name}", Accept_Encoding="gzip, deflate, br")
        assert reply.status == 200
        assert reply.headers.get("Content-Type") == "application/octet-stream", name
        assert reply.headers.get("Content-Encoding") is None, name  # never compressed ...
        assert int(reply.headers.get("Content-Length")) == (job / name).stat().st_size, name  # ... so it has a length
        assert reply.body == (job / name).read_bytes()
        assert reply.headers.get("Cache-Control") == "no-cache", name
        # revalidation: the same file again costs a 304, not the download
        again = fetch(base + f"job-1/{name}", If_None_Match=reply.headers.get("ETag"))
        assert again.status == 304 and again.body == b"", name


def test_text_is_compressed_when_asked(nginx_site):
    base = nginx_site.url
    script = f"assets/{asset_version()}/viewer/viewer.js"
    original = (nginx_site.outbox / script).read_bytes()
    assert len(original) > 1024  # above gzip_min_length

    packed = fetch(base + script, Accept_Encoding="gzip")
    assert packed.status == 200
    assert packed.headers.get("Content-Encoding") == "gzip"
    assert "Accept-Encoding" in packed.headers.get("Vary", "")
    assert gzip.decompress(packed.body) == original
    assert packed.headers.get("Content-Type").split(";")[0] in ("application/javascript", "text/javascript")

    plain = fetch(base + script)
    assert plain.headers.get("Content-Encoding") is None and plain.body == original

    page = fetch(base + "job-1/index.html", Accept_Encoding="gzip")
    assert page.headers.get("Content-Encoding") == "gzip"
    assert page.headers.get("Content-Type") == "text/html; charset=utf-8"


def test_cache_control_per_kind_of_file(nginx_site):
    base, version = nginx_site.url, asset_version()
    expected = {
        f"assets/{version}/site.css": ASSETS_CACHE,
        f"assets/{version}/viewer/sort-worker.js": ASSETS_CACHE,
        f"assets/{version}/favicon.svg": ASSETS_CACHE,
        "index.html": "no-cache",
        "": "no-cache",  # the gallery by its folder
        "jobs.json": "no-cache",
        "health.html": "no-cache",
        "health.json": "no-cache",
        "job-1/": "no-cache",
        "job-1/status.json": "no-cache",
        "job-1/cameras.json": "no-cache",
        "job-1/poster.jpg": "no-cache",
    }
    got = {}
    for path in expected:
        reply = fetch(base + path)
        assert reply.status == 200, path
        got[path] = reply.headers.get("Cache-Control")
    assert got == expected
    assert fetch(base + "job-1/status.json").headers.get("Content-Type") == "application/json"


def test_security_headers_on_every_response(nginx_site):
    base = nginx_site.url
    page = fetch(base + "job-1/index.html")
    csp = page_csp(page.body.decode())
    for path in ("job-1/index.html", "index.html", "job-1/scene.splat", f"assets/{asset_version()}/site.css",
                 "job-1/status.json", "no-such-file.html"):
        reply = fetch(base + path)
        assert reply.status == (404 if path.startswith("no-such") else 200), path
        assert_security_headers(reply, csp)
    assert fetch(base + "no-such-file.html").headers.get("Server") == "nginx"  # server_tokens off: no version


def test_only_the_outbox_is_served(nginx_site):
    base, port = nginx_site.url, nginx_site.port
    listing = fetch(base + "assets/")  # a folder without index.html: no listing
    assert listing.status == 403 and b"site.css" not in listing.body and asset_version().encode() not in listing.body
    redirect = fetch(base + "job-1")  # the folder without its slash: a relative redirect
    assert redirect.status == 301 and redirect.headers.get("Location") == "/job-1/"
    assert fetch(base + "job-1/.scene.ply.k2x9f1.tmp").status == 404  # the daemon's temporaries
    leak = fetch(base + "leak.txt")  # a symbolic link out of the outbox
    assert leak.status in (403, 404) and SECRET.encode() not in leak.body
    for target in (f"/../{SECRET}", f"/%2e%2e/{SECRET}", f"/job-1/../../{SECRET}"):
        reply = raw_get(port, target)
        assert reply.status in (400, 403, 404), target
        assert SECRET.encode() not in reply.body, target
    post = urllib.request.Request(base + "index.html", data=b"x", method="POST")
    try:
        _opener.open(post, timeout=10)
        raise AssertionError("POST was accepted")
    except urllib.error.HTTPError as error:
        assert error.code == 405


# ---- the viewer through nginx -------------------------------------------------------------------------------


def test_gallery_and_viewer_work_under_the_headers(nginx_site, open_page):
    base = nginx_site.url
    page = open_page(viewport=(320, 240))
    responses = []
    page.on("response", lambda response: responses.append(response))
    page.goto(base + "index.html")
    page.wait_for_selector('.card[data-job-id="job-1"] a.card-link')
    page.wait_for_selector('[data-health-field="summary"]:text("stopped")')  # health.json read through nginx
    page.goto(base + "job-1/index.html")
    page.wait_for_selector('#viewer[data-state="ready"]', state="attached", timeout=30_000)
    assert page.locator(".viewer-progress").get_attribute("aria-valuenow") == "100"

    headers = {response.url.removeprefix(base): response.all_headers() for response in responses}
    assert "content-security-policy" in headers["job-1/index.html"]
    scene = headers["job-1/scene.sog"]  # the viewer loads the .sog, and decodes it under the page's CSP
    assert scene["content-type"] == "application/octet-stream" and "content-encoding" not in scene
    assert int(scene["content-length"]) == (nginx_site.outbox / "job-1" / "scene.sog").stat().st_size
    for worker in ("sort-worker.js", "sampling-worker.js"):  # Web Workers from the site (script-src/worker-src 'self')
        assert f"assets/{asset_version()}/viewer/{worker}" in headers, sorted(headers)
    assert any(h.get("content-encoding") == "gzip" for url, h in headers.items() if url.endswith(".js"))
    page.assert_clean()  # no console error (a CSP violation is one), nothing fetched from another host
    assert all(url.startswith(base) for url in page.requests), page.requests
