"""The outbox's website in real headless Chromium: the gallery the daemon built lists every job
with its state, hostile set names stay text, pages follow status.json live, nothing leaves 127.0.0.1.
(The viewer itself: test_viewer_browser.py.)"""

from __future__ import annotations

from datetime import timedelta

from site_builder import build_site, job_view
from stages.atomic_files import atomic_write_json
from tests.daemon_harness import DaemonProcess, make_layout
from tests.photo_sets import small_set
from tests.site_documents import status_document

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
    job_page.wait_for_selector('[data-field="message"]:text("train: iteration 1400/2000")')
    assert job_page.locator('[data-field="progress"]').evaluate("element => element.value") == 70
    assert job_page.locator('[data-field="eta"]').text_content() == "about 1 min 35 s left in train"
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

    from daemon.heartbeat import Heartbeat
    from daemon.store import DaemonRegistry, open_store
    from daemon.store.tables import daemons, utc_now

    outbox = tmp_path / "outbox"
    publish(outbox, status_document("garden-1", "garden", "running", progress=20.0))
    registry = DaemonRegistry(open_store(f"sqlite:///{tmp_path / 'jobs.sqlite3'}").engine)
    Heartbeat(outbox, 30, "test", HOSTILE, registry).beat("running", {"queued": 2}, {
        "job_id": "kermit-1", "name": "kermit", "stage": "sfm", "progress": 40.0})
    with registry.engine.begin() as connection:
        connection.execute(update(daemons).values(seen_at=utc_now() - timedelta(minutes=10)))
    Heartbeat(outbox, 30, "test", "gpu-2", registry).beat("running", {"queued": 2}, {
        "job_id": "garden-1", "name": "garden", "stage": "train", "progress": 20.0})

    page = open_page(viewport=(1000, 700))
    dialogs = watch_dialogs(page)
    page.goto(serve_folder(outbox) + "health.html")
    page.wait_for_selector("[data-health-daemons] tr >> nth=1")
    summary = page.locator('[data-health-field="summary"]')
    assert summary.text_content() == f"running garden (train), 1 of 2 daemons alive, 2 queued; no heartbeat from {HOSTILE}"
    assert "stale" in summary.get_attribute("class")
    rows = [[cell.text_content() for cell in row.locator("td").all()] for row in page.locator("[data-health-daemons] tr").all()]
    assert [(row[0], row[1], row[3]) for row in rows] == [  # by host name
        (HOSTILE, "silent", "kermit (kermit-1): sfm, 40%"),
        ("gpu-2", "alive", "garden (garden-1): train, 20%"),
    ]
    assert rows[0][2].startswith("10 min")
    assert page.locator("img[src=x]").count() == 0 and dialogs == []
    page.assert_clean()
