"""The outbox's website in real headless Chromium: the gallery the daemon built lists every job
with its state, hostile set names stay text, pages follow status.json live, nothing leaves 127.0.0.1;
a done, a running and a failed job's page as a person reads them on a desktop and a phone (screenshots
under the test's temporary folder). (The viewer itself: test_viewer_browser.py.)"""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest
from PIL import Image, ImageFilter

from daemon.demo_set import write_demo_set
from site_builder import build_site, job_view
from stages.atomic_files import atomic_write_json
from tests.daemon_harness import DaemonProcess, make_layout, validate_status
from tests.photo_sets import small_set
from tests.site_documents import HELD_OUT, UNPLACED_REASON, held_out_files, status_document

HOSTILE = "<img src=x onerror=alert(1)>"


def watch_dialogs(page) -> list[str]:
    """Every alert/confirm/prompt the page opens (an injected script would open one)."""
    opened: list[str] = []
    page.on("dialog", lambda dialog: (opened.append(dialog.message), dialog.dismiss()))
    return opened


def publish(outbox, document: dict) -> None:
    """What the daemon does when a job changes: its status.json into the outbox, then the site."""
    (outbox / document["job_id"]).mkdir(parents=True, exist_ok=True)
    atomic_write_json(outbox / document["job_id"] / "status.json", document)
    build_site(outbox, [job_view(document, outbox / document["job_id"])], "test")


def write_health(outbox, heartbeat_at: str) -> None:
    """health.json as a daemon with one running job writes it."""
    atomic_write_json(outbox / "health.json", {
        "schema_version": 1, "version": "test", "host": "here", "started_at": "2026-11-27T10:00:00Z",
        "heartbeat_at": heartbeat_at, "interval_seconds": 30, "state": "running",
        "queue": {"waiting": 0, "queued": 0, "running": 1}, "current_job": None, "problems": []})


@pytest.mark.slow
def test_the_gallery_lists_every_job_and_a_hostile_set_name_stays_text(tmp_path, serve_folder, open_page):
    layout = make_layout(tmp_path)
    small_set(layout.inbox / "garden", ready=True)
    small_set(layout.inbox / HOSTILE, ready=True)
    small_set(layout.inbox / "broken", ready=True)
    (layout.inbox / "broken" / "job.toml").write_text('stop_after = "nonsense"\n')
    with DaemonProcess(layout, until_idle=True) as daemon:
        assert daemon.wait(120) == 0, daemon.log()
    jobs = {name: layout.status(name) for name in ("garden", HOSTILE, "broken")}

    base = serve_folder(layout.outbox)
    page = open_page(viewport=(1000, 800))
    dialogs = watch_dialogs(page)
    page.goto(base + "index.html")
    page.wait_for_selector('[data-health-field="summary"]:text("stopped")')

    cards = page.locator(".card")
    shown = {cards.nth(i).get_attribute("data-job-id"): (cards.nth(i).locator(".name").text_content(),
                                                          cards.nth(i).locator(".badge").text_content())
             for i in range(cards.count())}
    assert shown == {job["job_id"]: (name, job["state"]) for name, job in jobs.items()}
    assert {job["state"] for job in jobs.values()} == {"done", "failed"}
    assert page.locator("img[src=x]").count() == 0
    assert "3 scenes: 2 done, 1 failed." in page.locator(".summary").text_content()

    page.locator(".card", has_text=HOSTILE).locator("a.card-link").click()
    page.wait_for_url(f"**/{jobs[HOSTILE]['job_id']}/index.html")
    assert page.locator("h1.job-name").text_content() == HOSTILE
    assert page.title() == f"{HOSTILE} · InstaRecon3D"
    assert page.locator("img[src=x]").count() == 0

    page.goto(base + "health.html")
    page.wait_for_selector('[data-health-field="version"]:not(:text("–"))')
    assert page.locator('[data-health-field="state"]').text_content() == "stopped"
    assert dialogs == []
    page.assert_clean()


def test_pages_of_an_active_job_follow_status_json_and_reload_when_it_ends(tmp_path, serve_folder, open_page):
    outbox = tmp_path / "outbox"
    running = status_document("garden-1", "garden", "running", progress=20.0)
    publish(outbox, running)
    write_health(outbox, "2020-01-01T00:00:00Z")

    base = serve_folder(outbox)
    job_page = open_page(viewport=(900, 700))
    job_page.goto(base + "garden-1/index.html")
    gallery = open_page(viewport=(900, 700))
    gallery.goto(base + "index.html")
    # a heartbeat from long ago: the daemon is not beating
    gallery.wait_for_selector('[data-health-field="summary"].stale:text("no heartbeat")')

    atomic_write_json(outbox / "garden-1" / "status.json", {
        **running, "progress": 70.0, "stage": "train", "message": "train: iteration 1400/2000", "eta_seconds": 95.0,
        "stages": {**running["stages"], "sfm": {"state": "done", "started_at": None, "finished_at": None, "seconds": 75.0}}})
    job_page.wait_for_selector('[data-field="message"]:text("training the model: iteration 1400/2000")')
    assert job_page.locator('[data-field="progress"]').evaluate("element => element.value") == 70
    assert job_page.locator('[data-field="eta"]').text_content() == "about 1 min 35 s left for training the model"
    assert job_page.locator('tr[data-stage="sfm"] [data-field="stage-seconds"]').text_content() == "1 min 15 s"
    gallery.wait_for_selector('.card progress[value="70"]', timeout=15_000)  # it polls every 5 s

    # the job ends: the daemon writes status.json, then rebuilds the pages; both pages load theirs again
    publish(outbox, status_document("garden-1", "garden", "done", published=True))
    job_page.wait_for_selector('body[data-job-state="done"]', timeout=15_000)
    assert job_page.locator(".job-metrics").text_content().count("25.08 dB") == 1
    gallery.wait_for_selector('.card[data-job-state="done"]', timeout=20_000)
    for page in (job_page, gallery):
        page.assert_clean()


def test_the_site_works_from_a_sub_path_of_the_web_server(tmp_path, serve_folder, open_page):
    """Relative URLs only: the outbox served as /some/where/ works the same as at the root."""
    root = tmp_path / "www"
    outbox = root / "some" / "where"
    document = status_document("garden-1", "garden", "failed",
                               error={"stage": "sfm", "message": "too few photos", "hint": None})
    publish(outbox, document)
    write_health(outbox, "2026-11-27T10:00:00Z")
    base = serve_folder(root)
    page = open_page(viewport=(800, 600))
    page.goto(base + "some/where/")
    page.locator(".card a.card-link").click()
    page.wait_for_selector(".job-error:has-text('too few photos')")
    stylesheet = page.evaluate("getComputedStyle(document.querySelector('.job-error')).borderLeftStyle")
    assert stylesheet == "solid"  # site.css was found from the job's folder
    assert all("/some/where/" in url for url in page.requests), page.requests
    page.assert_clean()


def test_the_health_page_lists_every_daemon_and_names_a_silent_one(tmp_path, serve_folder, open_page):
    """health.json as a daemon writes it (the real Heartbeat, the real daemons table on SQLite): a
    second daemon, with a hostile host name, last heard from ten minutes ago."""
    from sqlalchemy import update

    from daemon.report.heartbeat import Heartbeat
    from daemon.store import DaemonRegistry, open_store
    from daemon.store.tables import daemons, utc_now

    outbox = tmp_path / "outbox"
    publish(outbox, status_document("garden-1", "garden", "running", progress=20.0))
    registry = DaemonRegistry(open_store(f"sqlite:///{tmp_path / 'jobs.sqlite3'}").engine)
    Heartbeat(outbox, 30, "test", HOSTILE, registry).beat("running", {"queued": 2}, {
        "job_id": "kermit-1", "name": "kermit", "stage": "sfm", "progress": 40.0})
    with registry.engine.begin() as connection:
        connection.execute(update(daemons).values(seen_at=utc_now() - timedelta(minutes=10)))
    Heartbeat(outbox, 30, "test", "gpu-2", registry, gpu="2").beat("running", {"queued": 2}, {
        "job_id": "garden-1", "name": "garden", "stage": "train", "progress": 20.0})

    page = open_page(viewport=(1000, 700))
    dialogs = watch_dialogs(page)
    page.goto(serve_folder(outbox) + "health.html")
    page.wait_for_selector("[data-health-daemons] tr >> nth=1")
    summary = page.locator('[data-health-field="summary"]')
    assert summary.text_content() == f"running garden (train), 1 of 2 daemons alive, 2 queued; no heartbeat from {HOSTILE}"
    assert "stale" in summary.get_attribute("class")
    rows = [[cell.text_content() for cell in row.locator("td").all()] for row in page.locator("[data-health-daemons] tr").all()]
    assert [(row[0], row[1], row[2], row[4]) for row in rows] == [  # by host name; the GPU each was given
        (HOSTILE, "any", "silent", "kermit (kermit-1): sfm, 40%"),
        ("gpu-2", "2", "alive", "garden (garden-1): train, 20%"),
    ]
    assert rows[0][3].startswith("10 min")
    assert page.locator("img[src=x]").count() == 0 and dialogs == []
    page.assert_clean()


# ---- the job page as a person reads it --------------------------------------------------------------------

VIEWPORTS = {"desktop": (1280, 800), "phone": (390, 844)}
LONG_NAME = "IMG_20261127_100000_taken_with_the_phone_held_sideways_and_not_shortened_at_all.jpg"
SPLAT_ROW = np.dtype([("position", "<f4", (3,)), ("scale", "<f4", (3,)), ("rgba", "u1", (4,)), ("rotation", "u1", (4,))])


def write_small_scene(folder) -> None:
    """A scene.splat of a few hundred splats round the origin and a cameras.json of four cameras looking at it:
    enough for the viewer to load and draw (its own tests check what it draws)."""
    rng = np.random.default_rng(3)
    rows = np.zeros(400, dtype=SPLAT_ROW)
    rows["position"] = rng.normal(0.0, 0.6, (400, 3))
    rows["scale"] = 0.08
    rows["rgba"] = np.concatenate([rng.integers(40, 230, (400, 3)), np.full((400, 1), 230)], axis=1)
    rows["rotation"] = (255, 128, 128, 128)
    (folder / "scene.splat").write_bytes(rows.tobytes())
    cameras = [{"id": index, "img_name": f"view{index:02d}", "width": 320, "height": 240,
                "position": [x, 0.0, -4.0], "rotation": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "fx": 300.0, "fy": 300.0}
               for index, x in enumerate((-0.6, -0.2, 0.2, 0.6))]
    (folder / "cameras.json").write_text(json.dumps(cameras))


def job_pages_site(outbox, photos) -> dict[str, str]:
    """The outbox with a done job (its scene, poster and held-out photos beside renders of them), a running
    job and a failed one, as the daemon leaves them; returns their job ids by state."""
    done = status_document("garden-1", "garden", "done", published={"view": "view01.jpg"})
    done["metrics"]["evaluate"]["psnr"] = 24.98  # as the issue found it: "good", not "very good"
    done["metrics"]["evaluate"].update(resolution="320x240", lpips=None)  # no LPIPS weights on this server
    done["images"] = {"found": 25, "accepted": 24, "rejected": [{"file": LONG_NAME, "reason": "it is too blurry to use"}]}
    done["metrics"]["sfm"] = {"registered": 24, "total": 24, "train": 21, "test": 3, "unregistered": [], "unplaced": []}
    done["warnings"] = ["LPIPS (a perceptual score) is not available on this server; PSNR and SSIM are",
                        f"the photo {LONG_NAME} is very dark"]
    folder = outbox / "garden-1"
    folder.mkdir(parents=True)
    write_small_scene(folder)
    sources = sorted(photos.glob("view_*.jpg"))
    Image.open(sources[0]).save(folder / "poster.jpg")
    for stem, source in zip(HELD_OUT, sources):
        photo, render = held_out_files(stem)
        Image.open(source).save(folder / photo, quality=85)
        Image.open(source).filter(ImageFilter.GaussianBlur(2)).save(folder / render, quality=85)

    running = status_document("pond-1", "pond", "running", progress=20.0, created="2026-11-27T11:00:00Z")
    running["message"] = "sfm: registered 3/24"
    running["stages"]["ingest"].update(state="done", seconds=4.2)
    running["stages"]["sfm"]["state"] = "running"
    running["log_tail"] = ["2026-11-27T11:00:05+00:00 sfm: matching", "2026-11-27T11:00:09+00:00 sfm: registered 3/24"]

    error = {"stage": "sfm", "message": "only 5 of 24 photos could be placed; at least half are needed",
             "hint": "take the photos closer together, each overlapping the last by about two thirds"}
    failed = status_document("wall-1", "wall", "failed", error=error, created="2026-11-27T12:00:00Z")
    failed["stage"] = "sfm"
    failed["message"] = error["message"]
    failed["images"] = {"found": 24, "accepted": 24, "rejected": []}
    failed["stages"]["ingest"].update(state="done", seconds=3.1)
    failed["stages"]["sfm"].update(state="failed", seconds=40.0)
    failed["metrics"] = {"sfm": {"registered": 5, "total": 24, "train": 5, "test": 0,
                                 "unregistered": [f"IMG_{n:04d}.jpg" for n in range(19)],
                                 "unplaced": [{"file": f"IMG_{n:04d}.jpg", "reason": UNPLACED_REASON} for n in range(19)]}}
    failed["log_tail"] = [f"2026-11-27T12:00:{n:02d}+00:00 sfm: mapping: {n} photos" for n in range(8)]

    views = []
    for document in (done, running, failed):
        validate_status(document)
        (outbox / document["job_id"]).mkdir(parents=True, exist_ok=True)
        atomic_write_json(outbox / document["job_id"] / "status.json", document)
        views.append(job_view(document, outbox / document["job_id"]))
    build_site(outbox, views, "test")
    write_health(outbox, "2026-11-27T10:00:00Z")
    return {"done": "garden-1", "running": "pond-1", "failed": "wall-1"}


def fits_sideways(page, selector: str = "html") -> bool:
    """Nothing in ``selector`` is wider than the box it scrolls in: no text cut off at an edge, no sideways scrolling."""
    return page.evaluate("""selector => { const box = document.querySelector(selector);
        return box.scrollWidth <= box.clientWidth && document.documentElement.scrollWidth <= innerWidth; }""", selector)


@pytest.mark.parametrize("device", VIEWPORTS)
def test_job_pages_say_how_good_the_result_is_what_went_wrong_and_what_to_do(tmp_path, serve_folder, open_page, device):
    photos = tmp_path / "photos"
    write_demo_set(photos, views=3, width=320, height=240, ready_marker=False)
    outbox = tmp_path / "outbox"
    jobs = job_pages_site(outbox, photos)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    base = serve_folder(outbox)
    width, height = VIEWPORTS[device]

    # done: the verdict, the floor and the resolution, the held-out photos beside their renders, the photos left out
    page = open_page(viewport=(width, height))
    page.goto(base + f"{jobs['done']}/index.html")
    page.wait_for_selector('#viewer[data-state="ready"]', state="attached", timeout=30_000)
    panel = page.locator("details.job-panel")
    if device == "phone":
        assert not panel.evaluate("element => element.open")  # folded away, so that the scene shows
        assert not [url for url in page.requests if "heldout-" in url]  # and its photos are not fetched
        panel.locator("> summary").click()
    assert panel.locator("> summary").text_content().split() == ["Details", "·", "quality:", "good"]
    body = page.locator("body").inner_text()
    assert "done after publish" not in body
    quality = page.locator(".job-metrics")
    assert quality.locator("h2").inner_text() == "Quality: good"
    assert quality.locator(".scored-on").inner_text() == "Scored on 3 photos held out of training, at 320x240 pixels."
    assert quality.locator("dd").first.inner_text() == "24.98 dB good (flat colour would score 14.4 dB)"
    assert [dd.inner_text() for dd in quality.locator("dd").all()[1:]] == ["0.887 good", "not measured"]
    page.screenshot(path=shots / f"done-{device}.png")
    strip = quality.locator(".held-out img")
    assert strip.count() == 6
    strip.last.scroll_into_view_if_needed()
    page.wait_for_function("() => [...document.querySelectorAll('.held-out img')]"
                           ".every(image => image.complete && image.naturalWidth > 0)")
    assert [strip.nth(i).get_attribute("alt") for i in (0, 1)] == ["The photo view00.jpg", "Our render of view00.jpg"]
    assert all(strip.nth(i).get_attribute("loading") == "lazy" for i in range(6))
    shown = strip.first.bounding_box()
    assert shown["width"] <= 200 and shown["height"] <= 150  # a small picture beside its render, not a full-size photo
    assert quality.locator("figcaption").all_inner_texts() == ["view00.jpg: 24.10 dB", "view08.jpg: 25.10 dB",
                                                               "view16.jpg: 26.10 dB"]
    page.screenshot(path=shots / f"done-{device}-held-out.png")
    photos_used = page.locator(".job-photos")
    page.locator(".job-footer").scroll_into_view_if_needed()
    assert photos_used.locator(".photo-counts").inner_text() == (
        "24 of 25 photos accepted (1 rejected). 24 placed: 21 for training, 3 held out to score the result.")
    assert photos_used.locator(".rejected li").all_inner_texts() == [f"{LONG_NAME}: it is too blurry to use"]
    assert page.locator(".job-stages tbody th").all_inner_texts() == [
        "Checking the photos ingest", "Placing the cameras sfm", "Training the model train",
        "Scoring the model evaluate", "Publishing the scene publish"]
    assert fits_sideways(page, "details.job-panel")  # the long file name and the warnings wrap inside the panel
    page.screenshot(path=shots / f"done-{device}-photos.png")
    page.assert_clean()

    # running: stages in words, live, and no Quality block before there are scores
    page = open_page(viewport=(width, height))
    page.goto(base + f"{jobs['running']}/index.html")
    assert page.locator('[data-field="message"]').inner_text() == "placing the cameras: registered 3/24"
    assert page.locator(".job-metrics").count() == 0
    running = json.loads((outbox / jobs["running"] / "status.json").read_text())
    atomic_write_json(outbox / jobs["running"] / "status.json", {
        **running, "stage": "train", "progress": 70.0, "message": "train: iteration 1400/2000", "eta_seconds": 95.0})
    page.wait_for_selector('[data-field="message"]:text("training the model: iteration 1400/2000")')
    assert page.locator('[data-field="eta"]').inner_text() == "about 1 min 35 s left for training the model"
    assert page.locator(".job-progress progress").bounding_box()["width"] >= 120  # the ETA's words leave the bar room
    assert page.locator(".job-log pre").is_visible()  # a running job's log is open: it moves
    assert fits_sideways(page)
    page.screenshot(path=shots / f"running-{device}.png", full_page=True)
    page.assert_clean()

    # failed: what went wrong, which photos, how to try again; the log folded away
    page = open_page(viewport=(width, height))
    page.goto(base + f"{jobs['failed']}/index.html")
    assert page.locator(".job-state").inner_text() == "failed while placing the cameras"
    assert [line for line in page.locator(".job-error").inner_text().splitlines() if line][1:] == [
        "only 5 of 24 photos could be placed; at least half are needed",
        "take the photos closer together, each overlapping the last by about two thirds"]
    assert page.locator(".job-metrics").count() == 0
    assert page.locator(".photo-counts").inner_text() == (
        "24 of 24 photos accepted. 5 placed, all for training (none held out to score the result); 19 could not be placed.")
    unplaced = page.locator(".unplaced li")  # one line for the nineteen that share a reason, folded under their count
    assert page.locator(".photo-notes-fold > summary").inner_text() == "Could not be placed: 19 photos"
    assert not unplaced.is_visible()
    page.locator(".photo-notes-fold > summary").click()
    assert unplaced.inner_text() == ", ".join(f"IMG_{n:04d}.jpg" for n in range(19)) + f": {UNPLACED_REASON}"
    steps = page.locator(".job-next li").all_inner_texts()
    assert len(steps) == 3 and "the photos listed under Photos used, below, are the ones that could not be used" in steps[0]
    assert "drop an empty file named RETRY into the set's folder" in steps[1]
    assert steps[2] == "Or ask the person who runs this server to run instarecon retry wall-1."
    log = page.locator("details.job-log")
    assert log.locator("summary").inner_text() == "Last lines of the log (placing the cameras)"
    assert not log.locator("pre").is_visible()
    assert page.locator('tr[data-stage="train"] [data-field="stage-state"]').inner_text() == "not run"
    assert fits_sideways(page)
    page.screenshot(path=shots / f"failed-{device}.png", full_page=True)
    log.locator("summary").click()
    assert log.locator("pre").inner_text().splitlines()[-1].endswith("sfm: mapping: 7 photos")
    page.assert_clean()
    print(f"screenshots: {shots}")


# ---- live cards and phones (issue 16) -------------------------------------------------------------------------

PHONE = {"viewport": (390, 844), "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": (1280, 800)}
TOO_FEW = "Only 3 of the 24 photos could be placed; at least 10 are needed."


def write_cover(job_dir, file: str = "cover.jpg") -> None:
    """cover.jpg as ingest hands it to the outbox: one of the set's photos, at most 640 px on the long side."""
    job_dir.mkdir(parents=True, exist_ok=True)
    Image.radial_gradient("L").resize((320, 240)).convert("RGB").save(job_dir / file, quality=85)


def write_scene(job_dir) -> None:
    """A done job's scene files (the viewer tests' small synthetic scene): the page then carries the viewer."""
    from gaussian_splatting.splat_export import write_splat
    from tests.test_viewer_browser import camera_entries, scene_gaussians

    job_dir.mkdir(parents=True, exist_ok=True)
    write_splat(job_dir / "scene.splat", scene_gaussians(3, 300))
    (job_dir / "cameras.json").write_text(json.dumps(camera_entries()))


def four_jobs(outbox) -> dict[str, dict]:
    """A done job with its scene and thumbnail, a running one (before ingest's photo reached the outbox), a failed
    one with its photo, a queued one; and health.json from two daemons (the real Heartbeat, as in the test above)."""
    from daemon.report.heartbeat import Heartbeat
    from daemon.store import DaemonRegistry, open_store

    hint = "Take more photos, overlapping by two thirds, and walk round the subject."
    jobs = {
        "done": status_document("statue-4", "statue in the park", "done", created="2026-11-27T09:00:00Z",
                                published=True),
        "running": status_document("garden-1", "garden", "running", created="2026-11-27T12:00:00Z", progress=20.0),
        "failed": {**status_document("kermit-2", "kermit on the sofa", "failed", created="2026-11-27T11:00:00Z",
                                     error={"stage": "sfm", "message": TOO_FEW, "hint": hint}),
                   "outputs": {"ingest.cover": "cover.jpg"},
                   "log_tail": ["12:00:01 sfm: matched 24 photos", "12:00:09 sfm: placed 3 of 24 photos: "
                                "IMG_0001.jpg,IMG_0002.jpg,IMG_0003.jpg,IMG_0004.jpg,IMG_0005.jpg,IMG_0006.jpg"]},
        "queued": status_document("pond-3", "pond", "queued", created="2026-11-27T11:30:00Z"),
    }
    write_scene(outbox / "statue-4")
    write_cover(outbox / "statue-4")
    write_cover(outbox / "statue-4", "thumb.jpg")
    write_cover(outbox / "kermit-2")
    for document in jobs.values():
        (outbox / document["job_id"]).mkdir(parents=True, exist_ok=True)
        atomic_write_json(outbox / document["job_id"] / "status.json", document)
    build_site(outbox, [job_view(document, outbox / document["job_id"]) for document in jobs.values()], "test")
    registry = DaemonRegistry(open_store(f"sqlite:///{outbox.parent / 'jobs.sqlite3'}").engine)
    for host, job in (("gpu-server-1.lab.example.org", jobs["running"]), ("gpu-server-2.lab.example.org", None)):
        Heartbeat(outbox, 30, "1.4.0+test", host, registry).beat("running" if job else "idle", {"queued": 1}, job and {
            "job_id": job["job_id"], "name": job["name"], "stage": "sfm", "progress": 20.0})
    return jobs


def card(page, job_id: str):
    return page.locator(f'.card[data-job-id="{job_id}"]')


def loaded_image(locator) -> str:
    """The src of a card's picture, once the browser has decoded it."""
    assert locator.evaluate("image => image.complete && image.naturalWidth > 0"), locator
    return locator.get_attribute("src")


def test_cards_of_running_and_failed_jobs_show_a_photo_the_stage_and_the_reason_live(tmp_path, serve_folder, open_page):
    outbox = tmp_path / "outbox"
    jobs = four_jobs(outbox)
    base = serve_folder(outbox)
    page = open_page(**PHONE)
    page.goto(base + "index.html")
    running, failed, queued = card(page, "garden-1"), card(page, "kermit-2"), card(page, "pond-3")

    page.wait_for_function("() => document.querySelector('.card[data-job-id=\"kermit-2\"] img')?.complete")
    assert loaded_image(failed.locator("img.thumb")) == "kermit-2/cover.jpg"
    assert failed.locator(".card-error").text_content() == TOO_FEW
    assert running.locator(".no-thumb").count() == 1  # no photo of the set in the outbox yet
    assert running.locator('[data-field="stage"]').text_content() == "placing the cameras"
    assert running.locator('[data-field="progress-text"]').text_content() == "20%"
    assert queued.locator(".card-stage").is_hidden()
    for job_id in ("garden-1", "kermit-2", "pond-3"):  # no scores yet: no row of dashes
        assert card(page, job_id).locator(".card-metrics").count() == 0
    assert card(page, "statue-4").locator(".card-metrics").count() == 1
    assert card(page, "statue-4").locator("img.thumb").get_attribute("src") == "statue-4/thumb.jpg"  # the scene's own
    page.screenshot(path=tmp_path / "phone-gallery.png", full_page=True)

    # ingest hands the photo over, training starts: the card follows without a reload
    write_cover(outbox / "garden-1")
    atomic_write_json(outbox / "garden-1" / "status.json", {
        **jobs["running"], "stage": "train", "progress": 70.0, "eta_seconds": 95.0,
        "message": "train: iteration 1400/2000", "outputs": {"ingest.cover": "cover.jpg"}})
    page.wait_for_selector('.card[data-job-id="garden-1"] [data-field="stage"]:text("training the model")',
                           timeout=15_000)  # it polls every 5 s
    assert running.locator('[data-field="progress-text"]').text_content() == "70%"
    assert running.locator('[data-field="eta"]').text_content() == "about 1 min 35 s left"
    page.wait_for_function("() => document.querySelector('.card[data-job-id=\"garden-1\"] img.cover')?.complete")
    assert loaded_image(running.locator("img.cover")) == "garden-1/cover.jpg"
    page.screenshot(path=tmp_path / "phone-gallery-live.png", full_page=True)
    desktop = open_page(**DESKTOP)
    desktop.goto(base + "index.html")
    desktop.wait_for_selector('.card[data-job-id="garden-1"] [data-field="eta"]:text("left")')
    desktop.screenshot(path=tmp_path / "desktop-gallery.png")
    listed = {entry["job_id"]: entry for entry in json.loads((outbox / "jobs.json").read_text())}
    assert (listed["kermit-2"]["cover"], listed["pond-3"]["cover"]) == ("kermit-2/cover.jpg", None)
    for p in (page, desktop):
        p.assert_clean()


def test_every_page_fits_a_phone_screen(tmp_path, serve_folder, open_page):
    """No sideways scrolling at 390 px: gallery, a done job's viewer page, a running and a failed job's page, health
    (whose daemons table was 411 px wide: on a phone each daemon is a block of named lines)."""
    outbox = tmp_path / "outbox"
    four_jobs(outbox)
    base = serve_folder(outbox)
    pages = {
        "gallery": ("index.html", '[data-health-field="summary"].fresh'),
        "done": ("statue-4/index.html", '#viewer[data-state="ready"]'),
        "running": ("garden-1/index.html", '[data-field="message"]:text("running message")'),
        "failed": ("kermit-2/index.html", ".job-error"),
        "health": ("health.html", "[data-health-daemons] tr >> nth=1"),
    }
    widths = {}
    for profile, options in (("phone", PHONE), ("desktop", DESKTOP)):
        for name, (path, loaded) in pages.items():
            page = open_page(**options)
            page.goto(base + path)
            page.wait_for_selector(loaded, state="attached", timeout=30_000)
            page.screenshot(path=tmp_path / f"{profile}-{name}.png", full_page=True)
            widths[profile, name] = page.evaluate("document.documentElement.scrollWidth")
            page.assert_clean()
    print(f"page widths: {widths}")
    assert all(width <= 390 for (profile, _), width in widths.items() if profile == "phone"), widths
    assert all(width <= 1280 for width in widths.values()), widths


# ---- searching every job (issue 19) -------------------------------------------------------------------------


def many_jobs(outbox) -> list[dict]:
    """130 jobs, two and a half gallery pages, one every 12 hours from 2026-10-01: every tenth failed, the others
    done with scores; and a failed one with a hostile name, on the first page. Returns their status.json documents."""
    from datetime import datetime, timezone

    start = datetime(2026, 10, 1, tzinfo=timezone.utc)
    documents = []
    for n in range(129):
        created = (start + timedelta(hours=12 * n)).isoformat().replace("+00:00", "Z")
        failed = n % 10 == 0
        documents.append(status_document(
            f"set{n:03d}-1", f"Set {n:03d}", "failed" if failed else "done", created=created, published=not failed,
            error={"stage": "sfm", "message": f"only {n % 7 + 3} of 24 photos could be placed", "hint": None} if failed else None))
    documents.append(status_document("hostile-1", HOSTILE, "failed", created="2026-12-30T10:00:00Z",
                                     error={"stage": "ingest", "message": HOSTILE, "hint": None}))
    for document in documents:
        publish_status = outbox / document["job_id"]
        publish_status.mkdir(parents=True, exist_ok=True)
    build_site(outbox, [job_view(document, outbox / document["job_id"]) for document in documents], "test")
    write_health(outbox, "2026-11-27T10:00:00Z")
    return documents


def search_for(page, text: str = "", state: str = "") -> str:
    """Empty the box (the count goes blank at once), then choose the state and type, and wait for the count to
    say the answer (only the last search's answer is written); returns it."""
    page.locator("#search-state").select_option("")
    page.locator("#search-text").fill("")
    assert page.locator("[data-search-count]").text_content() == ""
    page.locator("#search-state").select_option(state)
    page.locator("#search-text").fill(text)
    if text or state:
        page.wait_for_function("() => document.querySelector('[data-search-count]').textContent !== ''")
    return page.locator("[data-search-count]").text_content()


def found(page) -> list[str]:
    return [card.get_attribute("data-job-id") for card in page.locator("[data-search-results] .card").all()]


@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_the_search_box_finds_jobs_on_every_gallery_page_by_name_state_and_date(tmp_path, serve_folder, open_page,
                                                                              device):
    outbox = tmp_path / "outbox"
    documents = many_jobs(outbox)
    newest_first = [d["job_id"] for d in sorted(documents, key=lambda d: d["created_at"], reverse=True)]
    base = serve_folder(outbox)
    page = open_page(**(PHONE if device == "phone" else DESKTOP))
    dialogs = watch_dialogs(page)
    page.goto(base + "index.html")
    page.wait_for_selector("[data-gallery-search]:not([hidden])")
    served = page.locator(".gallery:not([data-search-results]) .card")
    assert served.count() == 60 and page.locator(".card", has_text="Set 003").count() == 0  # Set 003 is on page 3
    assert page.locator("label[for=search-text]").text_content() == "Search"
    assert page.locator("[data-search-count]").get_attribute("aria-live") == "polite"
    page.screenshot(path=tmp_path / f"search-box-{device}.png")

    # a name, in any case, from another page: its card, built from jobs.json, with its scores and date
    assert search_for(page, "set 003") == "1 of 130 scenes matches."
    assert found(page) == ["set003-1"]
    result = page.locator("[data-search-results] .card")
    assert result.locator(".name").text_content() == "Set 003"
    assert result.locator("a.card-link").get_attribute("href") == "set003-1/index.html"
    assert result.locator(".badge").text_content() == "done" and result.locator(".verdict").text_content() == "very good"
    assert result.locator(".card-metrics dd").all_text_contents() == ["25.08 dB", "0.887", "0.123", "49,874"]
    assert result.locator("time").text_content() == "2026-10-02 12:00 UTC"
    assert served.first.is_hidden() and page.locator("nav.pages").is_hidden()
    # a card from jobs.json says what the page's own card says (that of a job on this page)
    search_for(page, "set 128")
    words = ("card => [...card.querySelectorAll('*')].filter(e => !e.children.length)"
             ".map(e => `${e.tagName}.${e.className}: ${e.textContent.trim()}`)")
    assert page.locator("[data-search-results] .card").evaluate(words) == \
        page.locator('.gallery:not([data-search-results]) .card[data-job-id="set128-1"]').evaluate(words)

    # a state, typed or chosen: every failed job, newest first, with its reason
    failed = [job_id for job_id in newest_first if job_id == "hostile-1" or int(job_id[3:6]) % 10 == 0]
    assert search_for(page, "failed") == "14 of 130 scenes match."
    assert found(page) == failed
    assert set(page.locator("[data-search-results] .badge").all_text_contents()) == {"failed"}
    assert page.locator('[data-search-results] .card[data-job-id="set120-1"] .card-error').text_content() == \
        "only 4 of 24 photos could be placed"
    if device == "desktop":
        page.screenshot(path=tmp_path / "search-failed-desktop.png", full_page=True)
    assert search_for(page, state="failed") == "14 of 130 scenes match."
    assert found(page) == failed

    # a date: a day, a month, and a month with a state
    assert search_for(page, "2026-11-27") == "2 of 130 scenes match."
    assert found(page) == ["set115-1", "set114-1"]
    in_november = [job_id for job_id in newest_first if documents[[d["job_id"] for d in documents].index(job_id)]
                   ["created_at"].startswith("2026-11")]
    assert len(in_november) == 60
    assert search_for(page, "2026-11") == "60 of 130 scenes match."
    assert found(page) == in_november
    assert search_for(page, "2026-11 failed") == "6 of 130 scenes match."
    assert search_for(page, "2026-11", state="done") == "54 of 130 scenes match."
    assert search_for(page, "no such scene") == "0 of 130 scenes match."
    assert found(page) == []
    many = search_for(page, "set")
    assert many == "129 of 130 scenes match; the newest 120 are shown: add a word to narrow it."
    assert found(page) == [job_id for job_id in newest_first if job_id != "hostile-1"][:120]

    # a hostile name is found, and stays text
    assert search_for(page, "<IMG SRC") == "1 of 130 scenes matches."
    hostile = page.locator("[data-search-results] .card")
    assert hostile.locator(".name").text_content() == HOSTILE
    assert hostile.locator(".card-error").text_content() == HOSTILE
    assert page.locator("img[src=x]").count() == 0 and dialogs == []
    page.screenshot(path=tmp_path / f"search-hostile-{device}.png", full_page=device == "phone")

    # an empty box gives the page back as served
    search_for(page, "")
    page.wait_for_selector("[data-search-results]", state="hidden")
    assert page.locator("[data-search-count]").text_content() == ""
    assert [card.get_attribute("data-job-id") for card in served.all()] == newest_first[:60]
    assert page.locator("nav.pages").is_visible() and page.locator("[data-search-results] .card").count() == 0
    assert len([url for url in page.requests if url.endswith("/jobs.json")]) == 1  # fetched once, at the first search
    assert page.evaluate("document.documentElement.scrollWidth") <= (390 if device == "phone" else 1280)
    page.assert_clean()

    # the same from page 2, and nothing without JavaScript: the page as served, no box
    page.goto(base + "page-2.html")
    page.wait_for_selector("[data-gallery-search]:not([hidden])")
    assert search_for(page, "SET 003") == "1 of 130 scenes matches."
    page.screenshot(path=tmp_path / f"search-page-2-{device}.png")
    page.assert_clean()
    plain = open_page(viewport=(1280, 800), java_script_enabled=False)
    plain.goto(base + "index.html")
    assert plain.locator("[data-gallery-search]").is_hidden() and plain.locator(".card").count() == 60
    print(f"screenshots: {tmp_path}")
