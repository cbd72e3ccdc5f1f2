"""The outbox's website from status.json documents: pages, escaping, pagination, atomic and
minimal rewrites. Browser behaviour is in test_site_browser.py."""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from site_builder import build_site, job_view, write_gallery, write_job_page
from site_builder.asset_release import PACKAGE_ASSETS, asset_version, install_assets
from site_builder.job_page import job_folder
from tests.site_documents import HELD_OUT, UNPLACED_REASON, held_out_files, status_document

HOSTILE_NAME = '<img src=x onerror=alert(1)> & "quotes"'


def publish_files(outbox: Path, job_id: str, held_out: tuple[str, ...] = HELD_OUT) -> None:
    """What publish (and evaluate, for the ``held_out`` photos) leave in the job's outbox folder."""
    folder = outbox / job_id
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("scene.splat", "scene.sog", "scene.ply", "cameras.json", "poster.jpg", "thumb.jpg",
                 *(file for stem in held_out for file in held_out_files(stem))):
        (folder / name).write_bytes(b"x")


def page_text(path: Path) -> str:
    """The page's text as a reader sees it: a block's tags as a space, others dropped, white space as one space."""
    blocks = r"</?(?:p|li|dt|dd|td|th|tr|h[1-6]|summary|figcaption|section|header|ul|ol|dl)\b[^>]*>"
    text = re.sub(blocks, " ", path.read_text())
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", text)))


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


def test_a_done_job_page_gives_a_verdict_with_the_flat_colour_floor_and_the_held_out_photos_beside_their_renders(tmp_path):
    publish_files(tmp_path, "garden-1", held_out=HELD_OUT[:2])  # the third's files did not reach the outbox
    document = status_document("garden-1", "garden", "done", published=True)
    document["metrics"]["evaluate"]["held_out"][1]["name"] = '<img src=x onerror=alert(1)>.jpg'
    view = job_view(document, tmp_path / "garden-1")
    assert view.verdict == "very good"  # plain data, for the gallery's card too
    write_job_page(tmp_path, view, "9.9")

    page = tmp_path / "garden-1" / "index.html"
    text = page_text(page)
    for shown in ("Details · quality: very good", "Quality: very good",
                  "Scored on 3 photos held out of training, at 199x149 pixels.",
                  "PSNR 25.08 dB very good (flat colour would score 14.4 dB)", "SSIM 0.887 good", "LPIPS 0.123 good",
                  "25 dB and up is very good, 20 to 25 good, below 20 rough", "view00.jpg: 24.10 dB"):
        assert shown in text, shown
    images = [attributes for tag, attributes in parsed(page).tags if tag == "img" and "heldout-" in attributes["src"]]
    assert [image["src"] for image in images] == [file for stem in HELD_OUT[:2] for file in held_out_files(stem)]
    assert [image["alt"] for image in images] == ["The photo view00.jpg", "Our render of view00.jpg",
                                                  "The photo <img src=x onerror=alert(1)>.jpg",
                                                  "Our render of <img src=x onerror=alert(1)>.jpg"]
    assert all((image["loading"], image["width"], image["height"]) == ("lazy", "199", "149") for image in images)
    assert "<img src=x" not in page.read_text()

    big = status_document("big-1", "big", "done", published=True)
    big["metrics"]["evaluate"].update(resolution="1600x1200", psnr=19.99, ssim=0.79, lpips=0.31)
    publish_files(tmp_path, "big-1")
    view = job_view(big, tmp_path / "big-1")
    assert {(shot.width, shot.height) for shot in view.scored_photos} == {(800, 600)}  # as evaluate writes them: 800 px at most
    write_job_page(tmp_path, view, "9.9")
    text = page_text(tmp_path / "big-1" / "index.html")
    assert "Quality: rough" in text and "SSIM 0.790 rough" in text and "LPIPS 0.310 rough" in text


def test_a_set_scored_on_its_training_views_says_so_on_its_page_its_card_and_in_jobs_json_with_no_verdict(tmp_path):
    """4 photos placed: none held out, the scores are on the training views (they flatter the
    model), and nothing may read as a held-out score or a verdict on one."""
    document = status_document("pair-1", "pair", "done", published=True)
    training = ("view00", "view01", "view02", "view03")
    document["metrics"]["sfm"].update(registered=4, train=4, test=0, unregistered=[], unplaced=[])
    document["metrics"]["evaluate"] = {
        "scored_on": "training views", "psnr": 31.2, "ssim": 0.95, "lpips": 0.08, "mean_colour_psnr": 12.0,
        "resolution": "199x149", "images": 4, "held_out": [],
        "training_views": [{"name": f"{stem}.jpg", "psnr": 31.0, "ssim": 0.95, "lpips": 0.08,
                            "photo": f"training-{stem}-photo.jpg", "render": f"training-{stem}-render.jpg"}
                           for stem in training]}
    publish_files(tmp_path, "pair-1", held_out=())
    for stem in training:
        for kind in ("photo", "render"):
            (tmp_path / "pair-1" / f"training-{stem}-{kind}.jpg").write_bytes(b"x")
    view = job_view(document, tmp_path / "pair-1")
    assert (view.scored_on, view.verdict, view.ssim_band, view.lpips_band) == ("training views", None, None, None)
    build_site(tmp_path, [view], "9.9")

    text = page_text(tmp_path / "pair-1" / "index.html")
    for shown in ("Quality: on the training photos",
                  "Scored on the 4 photos the model trained on, at 199x149 pixels: too few photos were placed to keep "
                  "one out to test it, so these scores flatter the model and are not graded.",
                  "PSNR 31.20 dB (flat colour would score 12.0 dB) SSIM 0.950 LPIPS 0.080",
                  "The training photos Each photo the model trained on (left)",
                  "4 placed, all for training (too few to hold one out: the scores are on the training photos)"):
        assert shown in text, shown
    for absent in ("held out of training", "The held-out photos", "quality:"):
        assert absent not in text, absent
    page = (tmp_path / "pair-1" / "index.html").read_text()
    assert 'class="band' not in page and 'class="verdict' not in page  # no grade, not even SSIM's or LPIPS's
    images = [a["src"] for tag, a in parsed(tmp_path / "pair-1" / "index.html").tags if tag == "img" and "training-" in a["src"]]
    assert images == [f"training-{stem}-{kind}.jpg" for stem in training for kind in ("photo", "render")]

    gallery = page_text(tmp_path / "index.html")
    assert "Scored on training photos PSNR 31.20 dB" in gallery
    assert 'class="verdict' not in (tmp_path / "index.html").read_text()
    (entry,) = json.loads((tmp_path / "jobs.json").read_text())
    assert (entry["scored_on"], entry["psnr"]) == ("training views", 31.2)


def test_the_verdict_bands_are_the_documented_ones():
    document = status_document("a-1", "a", "done", published=True)
    verdicts = []
    for psnr in (31.0, 25.0, 24.99, 20.0, 19.99, 8.0, None):
        document["metrics"]["evaluate"]["psnr"] = psnr
        verdicts.append(job_view(document, Path("/nonexistent")).verdict)
    assert verdicts == ["very good", "very good", "good", "good", "rough", "rough", None]
    bands = []
    for ssim, lpips in ((0.8, 0.3), (0.799, 0.301)):
        document["metrics"]["evaluate"].update(psnr=25.0, ssim=ssim, lpips=lpips)
        view = job_view(document, Path("/nonexistent"))
        bands.append((view.ssim_band, view.lpips_band))
    assert bands == [("good", "good"), ("rough", "rough")]


def test_the_photos_section_says_how_many_trained_and_were_held_out_and_lists_the_photos_left_out_with_reasons(tmp_path):
    view = job_view(status_document("garden-1", "garden", "done", published=True), tmp_path / "garden-1")
    write_job_page(tmp_path, view, "9.9")
    text = page_text(tmp_path / "garden-1" / "index.html")
    assert ("Photos used 23 of 24 photos accepted (1 rejected). 22 placed: 19 for training, 3 held out to score the "
            "result; 1 could not be placed.") in text
    assert "Rejected blurry.jpg: too blurry" in text
    assert f"Could not be placed dark.jpg: {UNPLACED_REASON}" in text

    # a document from before sfm gave reasons names the photos alone; photos that share a reason share a line,
    # and a long list is folded away under its count
    older = status_document("pond-1", "pond", "failed", error={"stage": "sfm", "message": "too few placed", "hint": None})
    older["images"]["rejected"] = [{"file": f"dark{n:02d}.jpg", "reason": "it is too dark to use"} for n in range(13)]
    older["metrics"] = {"sfm": {"registered": 4, "train": 4, "test": 0, "unregistered": ["a.jpg", "b.jpg"]}}
    write_job_page(tmp_path, job_view(older, tmp_path / "pond-1"), "9.9")
    page = (tmp_path / "pond-1" / "index.html").read_text()
    text = page_text(tmp_path / "pond-1" / "index.html")
    assert "4 placed, all for training (none held out to score the result); 2 could not be placed." in text
    assert "Could not be placed a.jpg, b.jpg: it could not be placed among the other photos" in text
    assert '<summary>Rejected: 13 photos</summary>' in page
    assert ", ".join(f"dark{n:02d}.jpg" for n in range(13)) + ": it is too dark to use" in text


def test_a_failed_job_page_says_how_to_try_again_with_the_log_folded_away_and_no_empty_quality_block(tmp_path):
    error = {"stage": "sfm", "message": "only 2 of 9 photos could be placed", "hint": "take more overlapping photos"}
    tail = ["2026-11-27T10:00:00+00:00 sfm: matching", "2026-11-27T10:00:01+00:00 sfm: <b>registered</b> 2/9"]
    for name, job_id in (("wall", "wall-1"), ("wall.zip", "wall-2")):
        document = {**status_document(job_id, name, "failed", error=error), "log_tail": tail}
        document["metrics"] = {"sfm": {"registered": 2, "train": 2, "test": 0,
                                       "unplaced": [{"file": "IMG_0042.jpg", "reason": UNPLACED_REASON}]}}
        write_job_page(tmp_path, job_view(document, tmp_path / job_id), "9.9")
    page = (tmp_path / "wall-1" / "index.html").read_text()
    text = page_text(tmp_path / "wall-1" / "index.html")
    assert "failed while placing the cameras" in text
    assert ("What to do next Change the set as the hint above says; the photos listed under Photos used, below, are "
            "the ones that could not be used.") in text
    assert ("drop an empty file named RETRY into the set's folder: it starts again from placing the cameras, reusing "
            "the work done before it.") in text
    assert "ask the person who runs this server to run instarecon retry wall-1" in text
    assert f"IMG_0042.jpg: {UNPLACED_REASON}" in text
    assert '<details class="job-log">' in page and "<details class=\"job-log\" open" not in page  # folded away
    assert "<summary>Last lines of the log (placing the cameras)</summary>" in page
    assert "sfm: &lt;b&gt;registered&lt;/b&gt; 2/9" in page
    assert page.index('class="job-error"') < page.index('class="job-next"') < page.index('class="job-log"')
    assert "job-metrics" not in page and "Quality" not in text and "–" not in text.split("Stages")[0]

    zipped = page_text(tmp_path / "wall-2" / "index.html")  # a .zip has no folder to drop RETRY into
    assert "put the changed .zip into the inbox in place of the old one" in zipped and "RETRY" not in zipped
    assert "instarecon retry wall-2" in zipped


def test_jobs_without_scores_show_no_quality_block_and_a_skipped_scoring_says_why(tmp_path):
    for state in ("waiting", "queued", "running"):
        write_job_page(tmp_path, job_view(status_document(f"{state}-1", state, state), tmp_path / f"{state}-1"), "9.9")
        page = (tmp_path / f"{state}-1" / "index.html").read_text()
        assert "job-metrics" not in page and "PSNR" not in page, state
    unscored = status_document("few-1", "few", "done", published=True)
    skipped = "every photo trained (eval = false in job.toml)"
    unscored["metrics"]["evaluate"] = {"images": 0, "psnr": None, "ssim": None, "lpips": None, "skipped": skipped}
    view = job_view(unscored, tmp_path / "few-1")
    assert view.verdict is None
    write_job_page(tmp_path, view, "9.9")
    text = page_text(tmp_path / "few-1" / "index.html")
    assert "Quality Not scored: every photo trained (eval = false in job.toml)." in text
    assert "PSNR" not in text and "quality:" not in text


def test_stage_names_are_said_in_words_and_a_done_badge_needs_no_done_after_publish(tmp_path):
    publish_files(tmp_path, "garden-1")
    done = status_document("garden-1", "garden", "done", published=True)
    write_job_page(tmp_path, job_view(done, tmp_path / "garden-1"), "9.9")
    text = page_text(tmp_path / "garden-1" / "index.html")
    assert "done after publish" not in text and "garden done Quality" in text
    for row in ("Checking the photos ingest", "Placing the cameras sfm", "Training the model train",
                "Scoring the model evaluate", "Publishing the scene publish"):
        assert f"{row} done 12.5 s" in text, row

    early = status_document("pond-1", "pond", "done")
    early.update(stage="sfm", message="done after sfm", options={"stop_after": "sfm"})
    early["stages"] = {name: entry for name, entry in early["stages"].items() if name in ("ingest", "sfm")}
    write_job_page(tmp_path, job_view(early, tmp_path / "pond-1"), "9.9")
    text = page_text(tmp_path / "pond-1" / "index.html")
    assert "done stopped after placing the cameras, as the set's job.toml asks" in text

    running = status_document("shed-1", "shed", "running", progress=30.0)
    running["message"] = "sfm: registered 3/24"
    write_job_page(tmp_path, job_view(running, tmp_path / "shed-1"), "9.9")
    page = (tmp_path / "shed-1" / "index.html").read_text()
    assert "running placing the cameras: registered 3/24" in page_text(tmp_path / "shed-1" / "index.html")
    assert '<tr data-stage="train" data-stage-words="training the model">' in page  # what job-status.js says live


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
        assert "<img src=x" not in text and "<b>bold" not in text
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



def test_the_gallery_writes_jobs_json_before_the_pages_whose_search_reads_it(tmp_path, monkeypatch):
    """A reader who sees the new index.html (a job removed) must not then fetch the old jobs.json."""
    from site_builder import gallery

    written: list[str] = []
    original = gallery.write_if_changed

    def recording(path: Path, content: bytes | str) -> bool:
        written.append(path.name)
        return original(path, content)

    monkeypatch.setattr(gallery, "write_if_changed", recording)
    documents = [status_document(f"set{n}-1", f"set {n}", "done") for n in range(3)]
    write_gallery(tmp_path, [job_view(d, tmp_path / d["job_id"]) for d in documents], "9.9", page_size=2)
    assert written == ["jobs.json", "index.html", "page-2.html"]

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


def test_a_scored_job_card_gives_the_verdict_in_a_word(tmp_path):
    good = status_document("good-1", "good", "done", published=True)
    rough = status_document("rough-1", "rough", "done", published=True)
    rough["metrics"]["evaluate"]["psnr"] = 17.5
    failed = status_document("failed-1", "failed", "failed")
    write_gallery(tmp_path, [job_view(document, tmp_path / document["job_id"]) for document in (good, rough, failed)], "9.9")
    page = (tmp_path / "index.html").read_text()

    def verdict(job_id: str) -> list[str]:
        card = page.split(f'data-job-id="{job_id}"')[1].split("data-job-id=")[0]
        return re.findall(r'data-field="verdict">([^<]+)<', card)

    assert [verdict(job_id) for job_id in ("good-1", "rough-1", "failed-1")] == [["very good"], ["rough"], []]


def test_the_gallery_has_a_search_box_for_every_job_hidden_until_its_script_runs(tmp_path):
    documents = [status_document("garden-1", "garden", "done", published=True),
                 status_document("hostile-1", HOSTILE_NAME, "failed", created="2026-11-27T11:00:00Z",
                                 error={"stage": "sfm", "message": "too few photos placed", "hint": None}),
                 status_document("wall-1", "wall", "failed", created="2026-11-27T12:00:00Z")]
    build_site(tmp_path, [job_view(d, tmp_path / d["job_id"]) for d in documents], "9.9")
    tags = parsed(tmp_path / "index.html").tags
    box = next(attributes for tag, attributes in tags if "data-gallery-search" in attributes)
    assert "hidden" in box and box["role"] == "search"  # without JavaScript there is nothing to search with
    labels = {attributes["for"] for tag, attributes in tags if tag == "label"}
    fields = {attributes["id"] for tag, attributes in tags if tag in ("input", "select") and "id" in attributes}
    assert labels == fields == {"search-text", "search-state"}
    count = next(attributes for tag, attributes in tags if "data-search-count" in attributes)
    assert count["aria-live"] == "polite"
    states = [attributes["value"] for tag, attributes in tags if tag == "option"]
    assert states == ["", "failed", "done"]  # the states there are, the commonest first
    assert "failed (2)" in page_text(tmp_path / "index.html")
    results = next(attributes for tag, attributes in tags if "data-search-results" in attributes)
    assert "hidden" in results

    listed = {entry["job_id"]: entry for entry in json.loads((tmp_path / "jobs.json").read_text())}
    assert (listed["garden-1"]["verdict"], listed["garden-1"]["error"]) == ("very good", None)
    assert (listed["hostile-1"]["verdict"], listed["hostile-1"]["error"]) == (None, "too few photos placed")

    build_site(tmp_path / "empty", [], "9.9")
    assert "data-gallery-search" not in (tmp_path / "empty" / "index.html").read_text()  # nothing to search
