"""Private scenes: a job whose job.toml says ``private = true`` (or every job, with
``private_by_default``) has its page in an outbox folder named with a 128-bit random key, and
nothing else in the outbox names it: not the gallery, jobs.json, health.json, nor another job's
files. Only the status.json beside the set gives its link."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from daemon.jobs.options import job_privacy
from daemon.notify.email_message import body
from daemon.notify.events import Event, payload
from daemon.store import JobState
from inbox_protocol.photo_set import FileRules
from tests.daemon_harness import DaemonProcess, make_layout, run_cli, state_is, wait_for
from tests.photo_sets import small_set
from tests.site_documents import status_document

PUBLIC_URL = "https://splats.example.org/"
KEY = re.compile(r"[0-9a-f]{32}")  # 32 hex digits: 128 bits


def gallery_cards(outbox: Path) -> dict[str, str]:
    """Job id -> state, as the gallery's first page shows them (none before it is written)."""
    page = outbox / "index.html"
    text = page.read_text() if page.is_file() else ""
    return dict(re.findall(r'<li class="card" data-job-id="([^"]+)" data-job-state="([^"]+)">', text))


def listed_ids(outbox: Path) -> set[str]:
    index = outbox / "jobs.json"
    return {entry["job_id"] for entry in json.loads(index.read_text())} if index.is_file() else set()


def private_folder(document: dict) -> tuple[str, str]:
    """The private job's folder name and key, from its status.json's page (and checked against page_url)."""
    folder, _, page = document["page"].partition("/")
    assert page == "index.html"
    assert document["page_url"] == PUBLIC_URL + document["page"]
    job_id, dot, key = folder.partition(".")
    assert (job_id, dot) == (document["job_id"], "."), folder
    assert KEY.fullmatch(key), f"{key!r}: not 128 bits as 32 hex digits"
    return folder, key


def files_naming(outbox: Path, words: list[str], except_in: str | None = None) -> list[str]:
    """Every file (and folder name) under the outbox, outside ``except_in``, that holds one of ``words``."""
    found = []
    for path in outbox.rglob("*"):
        relative = path.relative_to(outbox)
        if except_in is not None and relative.parts[0] == except_in:
            continue
        data = path.read_bytes() if path.is_file() else b""
        found += [f"{relative}: {word}" for word in words if word.encode() in data or word in str(relative)]
    return found


@pytest.mark.slow
def test_a_private_job_is_named_by_its_link_alone(tmp_path):
    layout = make_layout(tmp_path, public_url=PUBLIC_URL, heartbeat_seconds=0.5)
    small_set(layout.inbox / "garden", ready=True)
    small_set(layout.inbox / "hidden-lake", ready=True, stop_after=None)
    # paced: its second stage takes 4 s, for health.json to be seen while it runs
    (layout.inbox / "hidden-lake" / "job.toml").write_text('stop_after = "sfm"\niterations = 40\nprivate = true\n')

    with DaemonProcess(layout, paced=True) as daemon:
        running = wait_for(state_is(layout, "hidden-lake", "running"), 60, "the private job to run")
        folder, key = private_folder(running)
        secrets_of_it = [folder, key, running["job_id"], "hidden-lake"]
        beat = wait_for(lambda: (h := json.loads((layout.outbox / "health.json").read_text()))["state"] == "running"
                        and h["current_job"] and h["current_job"]["stage"] == "sfm" and h, 30, "a running heartbeat")
        assert beat["current_job"]["private"] is True
        assert beat["current_job"]["job_id"] is None and beat["current_job"]["name"] is None
        assert [daemon_entry["current_job"]["private"] for daemon_entry in beat["daemons"]] == [True]
        assert files_naming(layout.outbox, secrets_of_it, except_in=folder) == []
        # the operator still sees which job runs
        status = run_cli(layout, "status")
        assert running["job_id"] in status.stdout and "hidden-lake" in status.stdout
        wait_for(state_is(layout, "hidden-lake", "done"), 60, "the private job to finish")
        public = wait_for(state_is(layout, "garden", "done"), 60, "the public job to finish")
        wait_for(lambda: gallery_cards(layout.outbox) == {public["job_id"]: "done"}, 30, "the gallery")
        assert daemon.stop() == 0

    document = layout.status("hidden-lake")
    assert document["private"] is True and private_folder(document) == (folder, key)
    assert 'name="robots" content="noindex' in (layout.outbox / document["page"]).read_text()
    assert json.loads((layout.outbox / folder / "status.json").read_text())["page"] == document["page"]
    assert (layout.outbox / folder / "cover.jpg").is_file()  # what ingest published is there
    assert not (layout.outbox / document["job_id"]).exists()

    assert public["private"] is False and public["page"] == f"{public['job_id']}/index.html"
    assert 'name="robots"' not in (layout.outbox / public["page"]).read_text()
    assert gallery_cards(layout.outbox) == {public["job_id"]: "done"}
    assert listed_ids(layout.outbox) == {public["job_id"]}
    assert files_naming(layout.outbox, secrets_of_it, except_in=folder) == []

    removed = run_cli(layout, "remove", document["job_id"], "--yes")
    assert removed.returncode == 0, removed.stderr
    assert not (layout.outbox / folder).exists() and (layout.outbox / public["page"]).is_file()


@pytest.mark.slow
def test_a_job_toml_that_comes_after_the_photos_makes_the_waiting_job_private(tmp_path):
    layout = make_layout(tmp_path, public_url=PUBLIC_URL, settle_seconds=600)  # waits for READY
    with DaemonProcess(layout) as daemon:
        small_set(layout.inbox / "owl-pond", stop_after=None)
        waiting = wait_for(state_is(layout, "owl-pond", "waiting"), 30, "the set to wait")
        job_id = waiting["job_id"]
        assert waiting["private"] is False
        wait_for(lambda: gallery_cards(layout.outbox).get(job_id) == "waiting", 30, "the gallery to list it")

        options = layout.inbox / "owl-pond" / "job.toml"
        options.write_text('stop_after = "ingest"\nprivate = true\n')
        made_private = wait_for(lambda: (d := layout.status("owl-pond"))["private"] and d, 30, "the job to be private")
        folder, key = private_folder(made_private)
        wait_for(lambda: (layout.outbox / folder / "status.json").is_file()
                 and not (layout.outbox / job_id).exists(), 30, "its folder to move to the private name")
        wait_for(lambda: job_id not in gallery_cards(layout.outbox) and job_id not in listed_ids(layout.outbox),
                 30, "the gallery to leave it out")

        options.write_text('stop_after = "ingest"\nprivate = false\n')  # changed its mind: public again
        wait_for(lambda: layout.status("owl-pond")["private"] is False and (layout.outbox / job_id / "index.html").is_file()
                 and not (layout.outbox / folder).exists(), 30, "the job to be public again")
        wait_for(lambda: gallery_cards(layout.outbox).get(job_id) == "waiting", 30, "the gallery to list it again")

        options.write_text('private = true\nstop_after = "ingest"\n')
        again = wait_for(lambda: (d := layout.status("owl-pond"))["private"] and d, 30, "the job to be private again")
        assert private_folder(again) == (folder, key)  # the key is the job's: made once
        (layout.inbox / "owl-pond" / "READY").touch()
        done = wait_for(state_is(layout, "owl-pond", "done"), 60, "the job to finish")
        wait_for(lambda: not (layout.outbox / job_id).exists() and job_id not in listed_ids(layout.outbox), 30,
                 "the public folder to be gone")
        assert daemon.stop() == 0
    assert private_folder(done) == (folder, key) and (layout.outbox / done["page"]).is_file()
    assert files_naming(layout.outbox, [folder, key, job_id, "owl-pond"], except_in=folder) == []


@pytest.mark.slow
def test_private_by_default_keeps_every_set_private_but_one_whose_job_toml_says_not(tmp_path):
    layout = make_layout(tmp_path, public_url=PUBLIC_URL, private_by_default=True)
    small_set(layout.inbox / "owl-pond", ready=True)  # job.toml: stop_after only
    small_set(layout.inbox / "garden", ready=True)
    (layout.inbox / "garden" / "job.toml").write_text('stop_after = "ingest"\nprivate = false\n')
    with DaemonProcess(layout, until_idle=True) as daemon:
        assert daemon.wait(60) == 0, daemon.log()
    hidden, public = layout.status("owl-pond"), layout.status("garden")
    folder, key = private_folder(hidden)
    assert (layout.outbox / hidden["page"]).is_file() and public["page"] == "garden-1/index.html"
    assert gallery_cards(layout.outbox) == {"garden-1": "done"} and listed_ids(layout.outbox) == {"garden-1"}
    assert files_naming(layout.outbox, [folder, key, hidden["job_id"], "owl-pond"], except_in=folder) == []


def test_a_private_jobs_key_is_made_once_and_every_daemon_reads_the_same(opened):
    """On SQLite and PostgreSQL: the key is the job store's, so another daemon (and a restart) names the folder alike."""
    store, other = opened(), opened()
    made = store.create_job(set_name="hidden-lake", source_path=Path("/inbox/hidden-lake"), source_kind="folder",
                            fingerprint="f" * 64, state=JobState.WAITING, message="m", private=True)
    job_id, _, key = made.outbox_name.partition(".")
    assert (job_id, made.private) == (made.id, True) and KEY.fullmatch(key)
    assert other.get(made.id).outbox_name == made.outbox_name
    public = store.create_job(set_name="garden", source_path=Path("/inbox/garden"), source_kind="folder",
                              fingerprint="f" * 64, state=JobState.WAITING, message="m")
    assert (public.outbox_name, public.page_key) == ("garden-1", None)

    waiting = (JobState.WAITING, JobState.QUEUED)
    assert other.set_private(made.id, False, in_states=waiting)  # job.toml changed its mind before the job started
    assert store.get(made.id).outbox_name == made.id and store.get(made.id).page_key == key
    assert other.set_private(made.id, True, in_states=waiting) and store.get(made.id).outbox_name == made.outbox_name
    assert not store.set_private(made.id, True, in_states=waiting)  # no change
    assert store.set_private(public.id, True, in_states=waiting)
    public_made_private = store.get(public.id)
    assert KEY.fullmatch(public_made_private.page_key) and public_made_private.page_key != key
    store.transition(public.id, JobState.QUEUED, "queued")
    assert store.claim_next().id == public.id  # running: decided for good
    assert not store.set_private(public.id, False, in_states=waiting) and store.get(public.id).private


def test_what_makes_a_job_private(tmp_path):
    rules = FileRules(())

    def privacy(job_toml: str | None, by_default: bool = False) -> bool:
        folder = tmp_path / f"set-{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        if job_toml is not None:
            (folder / "job.toml").write_text(job_toml)
        return job_privacy(folder, rules, by_default)

    assert privacy(None) is False and privacy(None, by_default=True) is True
    assert privacy("iterations = 10\n") is False and privacy("iterations = 10\n", by_default=True) is True
    assert privacy("private = true\n") is True
    assert privacy("private = false\n", by_default=True) is False
    # a mistake elsewhere fails the job but leaves its privacy as asked
    assert privacy("iteration = 10\nprivate = false\n", by_default=True) is False
    assert privacy("iteration = 10\nprivate = true\n") is True
    # what cannot be read may have asked for privacy: private
    assert privacy("private = tru") is True
    assert privacy('private = "yes"\n') is True
    assert privacy("private = 1\n") is True
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 half a zip still being copied")
    assert job_privacy(tmp_path / "broken.zip", rules, False) is True


def test_a_private_jobs_notifications_carry_no_link():
    document = {**status_document("hidden-lake-1", "hidden-lake", "done", published=True), "private": True,
                "page": "hidden-lake-1.0123456789abcdef0123456789abcdef/index.html"}
    event = Event("done", document)
    sent = payload(event, PUBLIC_URL)
    assert (sent["private"], sent["page"], sent["url"]) == (True, None, None)
    assert "0123456789abcdef" not in json.dumps(sent)
    mail = body(event, PUBLIC_URL)
    assert "0123456789abcdef" not in mail and "hidden-lake-1/index.html" not in mail and PUBLIC_URL not in mail
    assert "Its page is private: the link is in the status.json beside the set." in mail

    public = payload(Event("done", {**document, "private": False, "page": "hidden-lake-1/index.html"}), PUBLIC_URL)
    assert (public["private"], public["page"], public["url"]) == (
        False, "hidden-lake-1/index.html", PUBLIC_URL + "hidden-lake-1/index.html")


@pytest.mark.slow
def test_the_health_page_shows_a_running_private_job_without_its_name(tmp_path, serve_folder, open_page):
    """health.json as the real Heartbeat writes it (the daemons table on SQLite), two daemons each
    running a job, one private, and the health page reading it."""
    from daemon.report.heartbeat import Heartbeat
    from daemon.store import DaemonRegistry, open_store
    from site_builder import build_site

    outbox = tmp_path / "outbox"
    build_site(outbox, [], "test")
    registry = DaemonRegistry(open_store(f"sqlite:///{tmp_path / 'jobs.sqlite3'}").engine)
    Heartbeat(outbox, 30, "test", "gpu-1", registry).beat("running", {"queued": 0}, {
        "job_id": "hidden-lake-1", "name": "hidden-lake", "stage": "sfm", "progress": 40.0, "private": True})
    Heartbeat(outbox, 30, "test", "gpu-2", registry).beat("running", {"queued": 0}, {
        "job_id": "garden-1", "name": "garden", "stage": "train", "progress": 20.0})
    assert "hidden-lake" not in (outbox / "health.json").read_text()
    assert [record.current_job["job_id"] for record in registry.daemons()] == ["hidden-lake-1", "garden-1"]

    page = open_page(viewport=(1000, 700))
    page.goto(serve_folder(outbox) + "health.html")
    page.wait_for_selector("[data-health-daemons] tr >> nth=1")
    rows = [[cell.text_content() for cell in row.locator("td").all()] for row in page.locator("[data-health-daemons] tr").all()]
    assert [(row[0], row[4]) for row in rows] == [("gpu-1", "a private scene: sfm, 40%"),
                                                  ("gpu-2", "garden (garden-1): train, 20%")]
    assert "null" not in page.content() and "undefined" not in page.locator("body").text_content()
    page.assert_clean()
