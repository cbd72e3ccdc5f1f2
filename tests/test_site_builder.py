"""The outbox's website from status.json documents: pages, escaping, pagination, atomic and
minimal rewrites. Browser behaviour is in test_site_browser.py."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from site_builder import build_site, job_view, write_gallery, write_job_page
from site_builder.assets import PACKAGE_ASSETS, asset_version, install_assets
from site_builder.job_page import job_folder
from tests.site_documents import status_document

HOSTILE_NAME = '<img src=x onerror=alert(1)> & "quotes"'


def publish_files(outbox: Path, job_id: str) -> None:
    folder = outbox / job_id
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("scene.splat", "scene.sog", "scene.ply", "cameras.json", "poster.jpg", "thumb.jpg"):
        (folder / name).write_bytes(b"x")


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        self.urls += [value for key, value in attrs if key in ("href", "src") and value is not None]


def parsed(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text())
    return parser


def test_a_finished_job_gets_a_viewer_page_with_its_scores_timings_and_downloads(tmp_path):
    publish_files(tmp_path, "garden-1")
    view = job_view(status_document("garden-1", "garden", "done", published=True), tmp_path / "garden-1")
    assert write_job_page(tmp_path, view, "9.9")

    page = (tmp_path / "garden-1" / "index.html").read_text()
    links = parsed(tmp_path / "garden-1" / "index.html")
    viewer = next(attributes for tag, attributes in links.tags if attributes.get("id") == "viewer")
    # the .sog first (a job published before levels existed has the whole scene's alone), the .splat to stream
    assert viewer == {"class": "viewer", "id": "viewer", "data-scene": "scene.splat", "data-cameras": "cameras.json",
                      "data-levels": "scene.sog:49874", "data-splats": "49874", "data-start-camera": "view03"}
    assert "poster.jpg" in links.urls
    assert any(re.fullmatch(r"\.\./assets/\w{12}/viewer/main\.js", url) for url in links.urls)
    for shown in ("25.08 dB", "0.887", "0.123", "49,874", "23 of 24", "2,000", "12.5 s", "1 min 02 s", "1.6 MB", "842.0 KB",
                  "11.9 MB", "SOG (PlayCanvas, SuperSplat)"):
        assert shown in page, shown
    downloads = ["scene.splat", "scene.sog", "scene.ply", "cameras.json"]
    assert [url for url in links.urls if url in downloads] == downloads
    assert "job-status.js" not in page  # nothing live to follow


def test_a_running_job_page_follows_status_json_and_offers_no_viewer_yet(tmp_path):
    view = job_view(status_document("garden-2", "garden", "running", progress=42.0), tmp_path / "garden-2")
    write_job_page(tmp_path, view, "9.9")
    links = parsed(tmp_path / "garden-2" / "index.html")
    assert not any(attributes.get("id") == "viewer" for _, attributes in links.tags)
    assert any(re.fullmatch(r"\.\./assets/\w{12}/job-status\.js", url) for url in links.urls)
    progress = next(attributes for tag, attributes in links.tags if tag == "progress")
    assert progress["value"] == "42.0"


def test_a_failed_job_page_says_what_went_wrong_and_what_to_do(tmp_path):
    error = {"stage": "sfm", "message": "only 2 of 9 photos could be placed", "hint": "take more overlapping photos"}
    view = job_view(status_document("wall-1", "wall", "failed", error=error), tmp_path / "wall-1")
    write_job_page(tmp_path, view, "9.9")
    page = (tmp_path / "wall-1" / "index.html").read_text()
    assert "only 2 of 9 photos could be placed" in page and "take more overlapping photos" in page
    assert 'role="alert"' in page


def test_a_done_job_without_its_scene_file_gets_no_viewer_and_no_dead_links(tmp_path):
    view = job_view(status_document("bare-1", "bare", "done", published=True), tmp_path / "bare-1")
    write_job_page(tmp_path, view, "9.9")
    links = parsed(tmp_path / "bare-1" / "index.html")
    assert not any(attributes.get("id") == "viewer" for _, attributes in links.tags)
    assert not {"scene.splat", "scene.sog", "scene.ply", "poster.jpg"} & set(links.urls)


def test_names_from_the_inbox_are_escaped_everywhere(tmp_path):
    publish_files(tmp_path, "hostile-1")
    document = status_document("hostile-1", HOSTILE_NAME, "done", published=True)
    document["metrics"]["publish"]["view"] = '"><img src=y onerror=alert(2)>.jpg'
    document["warnings"] = ["<b>bold</b> warning"]
    build_site(tmp_path, [job_view(document, tmp_path / "hostile-1")], "9.9")

    for page in (tmp_path / "index.html", tmp_path / "hostile-1" / "index.html"):
        text = page.read_text()
        assert "<img src=" not in text and "<b>bold" not in text
        assert "&lt;img src=x onerror=alert(1)&gt; &amp; &#34;quotes&#34;" in text
        # every script the page loads is ours, from our assets folder
        scripts = [attributes.get("src") for tag, attributes in parsed(page).tags if tag == "script"]
        assert scripts and all(re.fullmatch(r"(\.\./)?assets/\w{12}/[\w/.-]+\.js", src) for src in scripts), scripts
    viewer = next(a for _, a in parsed(tmp_path / "hostile-1" / "index.html").tags if a.get("id") == "viewer")
    assert viewer["data-start-camera"] == '"><img src=y onerror=alert(2)>'  # a value, not markup
    index = json.loads((tmp_path / "jobs.json").read_text())
    assert index[0]["name"] == HOSTILE_NAME


def test_every_url_in_the_site_is_relative_and_names_a_file_that_exists(tmp_path):
    publish_files(tmp_path, "garden-1")
    documents = [status_document("garden-1", "garden", "done", published=True),
                 status_document("wall-1", "wall", "running", created="2026-11-27T11:00:00Z")]
    build_site(tmp_path, [job_view(d, tmp_path / d["job_id"]) for d in documents], "9.9")
    (tmp_path / "health.json").write_text("{}")
    for document in documents:
        (tmp_path / document["job_id"] / "status.json").write_text(json.dumps(document))
    for page in tmp_path.rglob("*.html"):
        for url in parsed(page).urls:
            assert not re.match(r"^([a-z]+:|//|/)", url), f"{page.name}: {url} is not relative"
            target = (page.parent / url.split("?")[0]).resolve()
            assert target.is_file(), f"{page.relative_to(tmp_path)} links to missing {url}"


def test_the_gallery_lists_jobs_newest_first_in_pages_and_drops_pages_it_no_longer_needs(tmp_path):
    documents = [status_document(f"set{n:03d}-1", f"set {n:03d}", "done" if n % 3 else "failed",
                                 created=f"2026-11-{1 + n // 24:02d}T{n % 24:02d}:00:00Z") for n in range(130)]
    views = [job_view(document, tmp_path / document["job_id"]) for document in documents]
    write_gallery(tmp_path, views, "9.9", page_size=60)

    pages = sorted(p.name for p in tmp_path.glob("*.html"))
    assert pages == ["index.html", "page-2.html", "page-3.html"]
    names = [re.findall(r'class="name">([^<]+)<', (tmp_path / page).read_text()) for page in ("index.html", "page-2.html", "page-3.html")]
    assert [len(n) for n in names] == [60, 60, 10]
    assert names[0][0] == "set 129" and names[2][-1] == "set 000"
    assert sum(names, []) == [f"set {n:03d}" for n in reversed(range(130))]
    first = parsed(tmp_path / "index.html")
    assert "page-2.html" in first.urls and "page-3.html" not in first.urls
    assert "130 scenes: 86 done, 44 failed." in (tmp_path / "index.html").read_text()
    index = json.loads((tmp_path / "jobs.json").read_text())
    assert [entry["job_id"] for entry in index] == [d["job_id"] for d in reversed(documents)]
    assert index[70]["gallery_page"] == "page-2.html"

    write_gallery(tmp_path, views[:10], "9.9", page_size=60)
    assert sorted(p.name for p in tmp_path.glob("*.html")) == ["index.html"]


def test_an_empty_gallery_tells_people_how_to_add_a_set(tmp_path):
    build_site(tmp_path, [], "9.9")
    assert "Drop a folder of photos into the inbox" in (tmp_path / "index.html").read_text()
    assert json.loads((tmp_path / "jobs.json").read_text()) == []


def test_rebuilding_leaves_unchanged_files_alone_and_no_temporary_files(tmp_path):
    publish_files(tmp_path, "garden-1")
    views = [job_view(status_document("garden-1", "garden", "done", published=True), tmp_path / "garden-1")]
    assert build_site(tmp_path, views, "9.9") > 5
    before = {path: path.stat().st_ino for path in tmp_path.rglob("*") if path.is_file()}
    assert build_site(tmp_path, views, "9.9") == 0
    assert {path: path.stat().st_ino for path in tmp_path.rglob("*") if path.is_file()} == before
    assert not list(tmp_path.rglob(".*.tmp"))
    assert build_site(tmp_path, views, "10.0") > 0  # the generator line changed: pages rewritten, by rename
    assert (tmp_path / "index.html").stat().st_ino != before[tmp_path / "index.html"]


def test_assets_go_into_a_folder_per_release_and_older_releases_go_once_pages_are_rebuilt(tmp_path):
    stale = tmp_path / "assets" / "0123456789ab" / "viewer" / "main.js"
    stale.parent.mkdir(parents=True)
    stale.write_text("// from an older release")
    install_assets(tmp_path)
    assert stale.exists()  # pages still name it until they are rebuilt
    build_site(tmp_path, [], "9.9")
    assert [p.name for p in (tmp_path / "assets").iterdir()] == [asset_version()]
    shipped = sorted(p.relative_to(PACKAGE_ASSETS) for p in PACKAGE_ASSETS.rglob("*") if p.is_file())
    folder = tmp_path / "assets" / asset_version()
    installed = sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
    assert installed == shipped
    assert {Path("site.css"), Path("favicon.svg"), Path("viewer/main.js"), Path("viewer/sort-worker.js")} <= set(installed)


def test_job_ids_that_could_leave_the_outbox_are_refused(tmp_path):
    for job_id in ("../escape-1", "a/b-1", ".hidden-1", ""):
        with pytest.raises(ValueError):
            job_folder(tmp_path, job_id)
