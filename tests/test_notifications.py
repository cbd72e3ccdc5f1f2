"""Job notifications against real servers: a webhook on http.server, e-mail on aiosmtpd.

Backoff waits are injected (recorded, not slept) and the dedup window runs on a controlled
clock, so nothing here waits for real beyond the servers' own round trips.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from daemon.config import ConfigError, Settings, check_folders, load_settings
from daemon.notify import Notifications
from daemon.notify.channel import DeliveryError
from daemon.notify.dispatcher import Dispatcher
from daemon.notify.events import Event, payload
from tests.daemon_harness import REPO, DaemonProcess, make_layout, validate_status
from tests.photo_sets import small_set
from tests.smtp_server import free_port, self_signed_certificate, smtp_server

STARTED = datetime(2025, 6, 1, 12, 0, 0, tzinfo=timezone.utc)  # when the daemon (and Notifications) started


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def status(state: str, job_id: str = "garden-1", finished: datetime | None = None, **changes: Any) -> dict[str, Any]:
    """A status.json document as the daemon writes it (checked against the schema)."""
    ended = state in ("done", "failed", "cancelled")
    finished = finished or STARTED + timedelta(minutes=7)
    document: dict[str, Any] = {
        "schema_version": 1,
        "job_id": job_id,
        "name": job_id.rsplit("-", 1)[0],
        "attempt": 1,
        "state": state,
        "stage": "publish" if state in ("running", "done") else None,
        "stages": {},
        "progress": 100.0 if state == "done" else 40.0,
        "eta_seconds": None,
        "message": {"done": "published 48,210 Gaussians", "running": "train: iteration 1200/3000",
                    "failed": "sfm failed", "cancelled": "cancelled by instarecon cancel"}.get(state, "queued"),
        "host": "recon-box",
        "created_at": _iso(STARTED + timedelta(minutes=1)),
        "started_at": _iso(STARTED + timedelta(minutes=1, seconds=2)),
        "finished_at": _iso(finished) if ended else None,
        "updated_at": _iso(finished),
        "images": {"found": 24, "accepted": 24, "rejected": []},
        "metrics": {},
        "outputs": {},
        "options": None,
        "warnings": [],
        "error": None,
        "page": f"{job_id}/index.html",
        "page_url": None,
    }
    if state == "done":
        document["metrics"] = {
            "train": {"iterations": 2000, "gaussians": 50_000},
            "evaluate": {"images": 3, "psnr": 25.0843, "ssim": 0.8123, "lpips": 0.2104},
            "publish": {"gaussians": 48_210},
        }
    if state == "failed":
        document["stage"] = "sfm"
        document["error"] = {"stage": "sfm", "message": "only 2 of 24 photos could be placed",
                             "hint": "take photos with more overlap"}
    document.update(changes)
    return validate_status(document)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Sleeps(list):
    """The injected backoff: records each wait instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


# --- a real webhook receiver -------------------------------------------------------------------


class Receiver:
    """http.server on 127.0.0.1 in a thread; answers each POST with the next status in ``answers``
    (200 once they run out) and keeps what it got."""

    def __init__(self, answers: list[int] | None = None):
        self.answers = list(answers or [])
        self.requests: list[dict[str, Any]] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.arrived:
                    code = receiver.answers.pop(0) if receiver.answers else 200
                    receiver.requests.append({"path": self.path, "headers": self.headers,
                                              "body": json.loads(body), "answered": code})
                    receiver.arrived.notify_all()
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/instarecon?token=secret"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def bodies(self) -> list[dict[str, Any]]:
        return [request["body"] for request in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(answers: list[int] | None = None) -> Receiver:
        made.append(Receiver(answers))
        return made[-1]

    yield make
    for each in made:
        each.close()


@pytest.fixture
def notifier():
    """Notifications with recorded backoff; closed after the test."""
    made: list[Notifications] = []

    def make(settings: Settings, **options: Any) -> Notifications:
        options.setdefault("sleep", Sleeps())
        options.setdefault("random_fraction", lambda: 0.5)
        options.setdefault("timeout", 5.0)
        made.append(Notifications(settings, **options))
        return made[-1]

    yield make
    for each in made:
        each.close(timeout=5)


@pytest.fixture
def notify_log(caplog):
    caplog.set_level(logging.INFO, logger="instarecon.notify")
    return caplog


def webhook_settings(url: str, **more: Any) -> Settings:
    return Settings(notify_webhook_url=url, **more)


# --- the webhook -------------------------------------------------------------------------------


def test_a_finished_job_is_posted_with_its_payload(receiver, notifier, notify_log):
    hook = receiver()
    notifications = notifier(webhook_settings(hook.url, public_url="https://splats.example.org/",
                                              notify_webhook_headers={"Authorization": "Bearer t0ken"}))
    assert notifications.enabled
    notifications.observe([status("running")])
    notifications.observe([status("done")])
    assert notifications.wait_idle(10)

    [request] = hook.requests
    assert request["path"] == "/hooks/instarecon?token=secret"
    assert request["headers"]["Authorization"] == "Bearer t0ken"
    assert request["headers"]["Content-Type"] == "application/json; charset=utf-8"
    assert request["headers"]["X-InstaRecon-Event"] == "job.done"
    assert request["headers"]["User-Agent"].startswith("InstaRecon3D/")
    body = request["body"]
    assert body["event"] == "job.done" and body["event_id"] == "garden-1/job.done"
    assert (body["job_id"], body["name"], body["state"], body["attempt"]) == ("garden-1", "garden", "done", 1)
    assert body["message"] == "published 48,210 Gaussians" and body["error"] is None
    assert body["metrics"] == {"scored_on": "held-out photos", "psnr": 25.0843, "ssim": 0.8123, "lpips": 0.2104,
                               "gaussians": 48_210}
    assert (body["created_at"], body["finished_at"]) == ("2025-06-01T12:01:00Z", "2025-06-01T12:07:00Z")
    assert body["seconds"] == 358.0 and body["host"] == "recon-box"
    assert body["page"] == "garden-1/index.html"
    assert body["url"] == "https://splats.example.org/garden-1/index.html"
    # the journal says so under the job's id, and never shows the webhook's secret path or query
    [sent] = [r for r in notify_log.records if "sent to" in r.getMessage()]
    assert sent.JOB_ID == "garden-1" and sent.SET_NAME == "garden"
    assert "token" not in notify_log.text and "hooks" not in notify_log.text


def test_a_failed_job_carries_its_error_and_no_url_without_public_url(receiver, notifier):
    hook = receiver()
    notifications = notifier(webhook_settings(hook.url))
    notifications.observe([status("queued")])
    notifications.observe([status("failed")])
    assert notifications.wait_idle(10)
    [body] = hook.bodies()
    assert body["event"] == "job.failed" and body["stage"] == "sfm"
    assert body["error"] == {"stage": "sfm", "message": "only 2 of 24 photos could be placed",
                             "hint": "take photos with more overlap"}
    assert body["metrics"] == {"scored_on": None, "psnr": None, "ssim": None, "lpips": None, "gaussians": None}
    assert body["page"] == "garden-1/index.html" and body["url"] is None


def test_a_500_is_retried_after_the_backoff_and_then_delivered(receiver, notifier, notify_log):
    hook = receiver([500])
    sleeps = Sleeps()
    notifications = notifier(webhook_settings(hook.url), sleep=sleeps)
    notifications.observe([status("running")])
    notifications.observe([status("done")])
    assert notifications.wait_idle(10)
    assert [request["answered"] for request in hook.requests] == [500, 200]
    assert hook.bodies()[0] == hook.bodies()[1]
    assert sleeps == [pytest.approx(2.0 * 1.125)]  # 2 s and an eighth of jitter (random 0.5 of 25%)
    assert "attempt 2 of 5 in 2.2 s" in notify_log.text
    assert "sent to" in notify_log.text and "not sent" not in notify_log.text


def test_the_same_event_for_the_same_job_is_sent_once_within_15_seconds(receiver, notifier):
    hook = receiver()
    clock = FakeClock()
    notifications = notifier(webhook_settings(hook.url), clock=clock)
    notifications.observe([status("running")])
    notifications.observe([status("done")])
    notifications.observe([status("done")])  # the same document again: not a change of state
    clock.now += 10
    notifications.observe([status("running")])  # back and forth within the window
    notifications.observe([status("done")])
    assert notifications.wait_idle(10)
    assert len(hook.requests) == 1
    clock.now += 5.5  # 15.5 s after the first
    notifications.observe([status("running")])
    notifications.observe([status("done")])
    notifications.observe([status("running", job_id="pond-1")])  # another job is not held back by it
    notifications.observe([status("done", job_id="pond-1")])
    assert notifications.wait_idle(10)
    assert [(b["job_id"], b["event"]) for b in hook.bodies()] == [
        ("garden-1", "job.done"), ("garden-1", "job.done"), ("pond-1", "job.done")]


def test_a_dead_endpoint_is_given_up_after_five_attempts_and_never_blocks(notifier, notify_log):
    sleeps = Sleeps()
    url = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there: connection refused
    notifications = notifier(webhook_settings(url), sleep=sleeps)
    notifications.observe([status("running")])
    started = time.perf_counter()
    notifications.observe([status("done")])
    assert time.perf_counter() - started < 0.05
    assert notifications.wait_idle(30)
    assert sleeps == [pytest.approx(d * 1.125) for d in (2, 4, 8, 16)]
    [gave_up] = [r for r in notify_log.records if "not sent" in r.getMessage()]
    assert gave_up.levelno == logging.WARNING and gave_up.JOB_ID == "garden-1"
    assert "not sent after 5 attempts: cannot connect" in gave_up.getMessage()


def test_a_receiver_that_never_answers_holds_up_neither_observe_nor_close(notifier):
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
        notifications = notifier(webhook_settings(url), sleep=None, timeout=30.0)
        notifications.observe([status("running")])
        started = time.perf_counter()
        notifications.observe([status("done")])
        for job in ("a-1", "b-1", "c-1"):
            notifications.observe([status("running", job_id=job)])
            notifications.observe([status("done", job_id=job)])
        assert time.perf_counter() - started < 0.05
        assert not notifications.wait_idle(0.3)  # the first is stuck waiting for an answer
        started = time.perf_counter()
        notifications.close(timeout=0.5)
        assert time.perf_counter() - started < 1.5


def test_a_4xx_is_not_retried(receiver, notifier, notify_log):
    hook = receiver([404])
    sleeps = Sleeps()
    notifications = notifier(webhook_settings(hook.url), sleep=sleeps)
    notifications.observe([status("running")])
    notifications.observe([status("done")])
    assert notifications.wait_idle(10)
    assert len(hook.requests) == 1 and sleeps == []
    assert "not sent after 1 attempt, not worth retrying: HTTP 404" in notify_log.text


def test_the_first_sighting_of_an_ended_job_sends_nothing(receiver, notifier):
    hook = receiver()
    notifications = notifier(webhook_settings(hook.url), known_jobs={"garden-1", "pond-1", "rock-1"})
    long_ago = STARTED - timedelta(days=3)
    # the daemon's first pass: every job in the store, ended long ago or not
    notifications.observe([status("done", finished=long_ago), status("failed", job_id="pond-1", finished=long_ago),
                           status("queued", job_id="rock-1")])
    notifications.observe([status("done", finished=long_ago)])
    assert notifications.wait_idle(10)
    assert hook.requests == []
    # a job seen before, now ending, is an event
    notifications.observe([status("running", job_id="rock-1")])
    notifications.observe([status("done", job_id="rock-1")])
    assert notifications.wait_idle(10)
    assert [b["job_id"] for b in hook.bodies()] == ["rock-1"]


def test_a_set_refused_on_arrival_is_an_event(receiver, notifier):
    """Created and failed in one pass (a bad job.toml): first seen failed, but new in this run."""
    hook = receiver()
    notifications = notifier(webhook_settings(hook.url))
    notifications.observe([status("failed", job_id="bad-1", finished=STARTED + timedelta(seconds=3))])
    assert notifications.wait_idle(10)
    assert [b["job_id"] for b in hook.bodies()] == ["bad-1"]


def test_only_the_states_in_notify_on_are_sent(receiver, notifier):
    hook = receiver()
    notifications = notifier(webhook_settings(hook.url))  # default: done and failed
    notifications.observe([status("running")])
    notifications.observe([status("cancelled")])
    assert notifications.wait_idle(10)
    assert hook.requests == []
    other = receiver()
    cancelled_only = notifier(webhook_settings(other.url, notify_on=("cancelled",)))
    cancelled_only.observe([status("running"), status("running", job_id="pond-1")])
    cancelled_only.observe([status("cancelled"), status("done", job_id="pond-1")])
    assert cancelled_only.wait_idle(10)
    assert [(b["job_id"], b["event"]) for b in other.bodies()] == [("garden-1", "job.cancelled")]


def test_nothing_runs_without_a_channel():
    quiet = Notifications(Settings())
    assert not quiet.enabled
    quiet.observe([status("running")])
    quiet.observe([status("done")])
    quiet.close()
    assert not Notifications(Settings(notify_webhook_url="http://127.0.0.1:9/", notify_on=())).enabled


def test_observe_skips_what_is_not_a_document_and_never_raises(receiver, notifier, notify_log):
    hook = receiver()
    notifications = notifier(webhook_settings(hook.url))
    notifications.observe([None, "nonsense", {"job_id": 7}, {}, status("running")])  # type: ignore[list-item]
    notifications.observe([status("done")])
    assert notifications.wait_idle(10)
    assert [b["job_id"] for b in hook.bodies()] == ["garden-1"]

    class Broken(dict):
        def get(self, *args: Any) -> Any:
            raise RuntimeError("a bug")

    notifications.observe([Broken()])
    notifications.observe([Broken()])
    assert notify_log.text.count("could not look at") == 1  # said once while it lasts


def test_a_full_queue_drops_new_events_instead_of_growing(notify_log):
    entered, release = threading.Event(), threading.Event()
    delivered: list[str] = []

    class Stuck:
        name, target = "test", "nowhere"

        def deliver(self, event: Event) -> str:
            entered.set()
            release.wait(10)
            delivered.append(event.id)
            return "ok"

    dispatcher = Dispatcher(Stuck(), max_pending=2, sleep=Sleeps())
    events = [Event("done", status("done", job_id=f"set-{n}")) for n in range(1, 7)]
    assert dispatcher.submit(events[0])
    assert entered.wait(10)  # the first is on its way; two more fit in the queue
    assert [dispatcher.submit(event) for event in events[1:]] == [True, True, False, False, False]
    assert notify_log.text.count("dropped") == 1  # said once, not per event
    release.set()
    assert dispatcher.wait_idle(10)
    assert delivered == ["set-1", "set-2", "set-3"]
    assert dispatcher.close(5)


def test_retries_stop_at_close_with_one_last_attempt(notify_log):
    attempts: list[float] = []

    class Down:
        name, target = "test", "nowhere"

        def deliver(self, event: Event) -> str:
            attempts.append(time.monotonic())
            raise DeliveryError("down", True)

    dispatcher = Dispatcher(Down(), retry_delays=(60.0, 60.0))  # real waits, cut short by close
    dispatcher.submit(Event("done", status("done")))
    time.sleep(0.1)
    started = time.perf_counter()
    assert dispatcher.close(2)
    assert time.perf_counter() - started < 1
    assert len(attempts) == 2
    assert "not sent after 2 attempts, the daemon is stopping: down" in notify_log.text


def test_payload_survives_odd_metrics():
    document = status("done", metrics={"train": {"gaussians": 1234}, "evaluate": {"psnr": float("nan")}})
    body = payload(Event("done", document), "https://splats.example.org")
    assert body["metrics"] == {"scored_on": None, "psnr": None, "ssim": None, "lpips": None, "gaussians": 1234}
    assert body["url"] == "https://splats.example.org/garden-1/index.html"
    json.dumps(body, allow_nan=False)


# --- e-mail ------------------------------------------------------------------------------------


def email_settings(mailbox, **more: Any) -> Settings:
    options: dict[str, Any] = dict(notify_email_to=("ops@example.org", "Kim <kim@example.org>"),
                                   notify_email_from="InstaRecon3D <instarecon@example.org>",
                                   smtp_host=mailbox.host, smtp_port=mailbox.port, smtp_security="none")
    return Settings(**{**options, **more})


def test_an_email_arrives_with_subject_body_and_link(notifier, notify_log):
    with smtp_server() as mailbox:
        notifications = notifier(email_settings(mailbox, public_url="https://splats.example.org/"))
        notifications.observe([status("running")])
        notifications.observe([status("done")])
        assert notifications.wait_idle(10)
    [mail] = mailbox.received
    assert mail.mail_from == "instarecon@example.org"
    assert mail.rcpt_tos == ["ops@example.org", "kim@example.org"]
    message = mail.message
    assert message["From"] == "InstaRecon3D <instarecon@example.org>"
    assert message["To"] == "ops@example.org, Kim <kim@example.org>"
    assert message["Subject"] == "InstaRecon3D: garden done, 25.1 dB"
    assert message["Auto-Submitted"] == "auto-generated" and message["X-InstaRecon-Job"] == "garden-1"
    assert message.get_content_type() == "text/plain"
    text = message.get_content()
    assert "Job garden-1 (garden) is done." in text
    assert "Held-out photos: PSNR 25.08 dB, SSIM 0.812, LPIPS 0.210" in text
    assert "Gaussians: 48,210" in text
    assert "(5 min 58 s)" in text
    assert "See it: https://splats.example.org/garden-1/index.html" in text
    assert any(getattr(r, "JOB_ID", None) == "garden-1" and "e-mail notification job.done sent" in r.getMessage()
               for r in notify_log.records)


def test_scores_on_training_views_are_labelled_so_in_the_webhook_and_the_email(notifier):
    """A set of 4 photos has no held-out photo: its scores, on the photos it trained on, flatter
    the model, and no reader may take them for held-out ones."""
    training = {"scored_on": "training views", "images": 4, "psnr": 31.52, "ssim": 0.951, "lpips": None}
    document = status("done")
    document["metrics"]["evaluate"] = training
    assert payload(Event("done", document), "")["metrics"]["scored_on"] == "training views"
    with smtp_server() as mailbox:
        notifications = notifier(email_settings(mailbox))
        notifications.observe([status("running")])
        notifications.observe([document])
        assert notifications.wait_idle(10)
    [mail] = mailbox.received
    assert mail.message["Subject"] == "InstaRecon3D: garden done, 31.5 dB on its training photos"
    text = mail.message.get_content()
    assert ("Training photos (too few photos to hold one out: these scores flatter the model): PSNR 31.52 dB, "
            "SSIM 0.951") in text
    assert "Held-out" not in text


def test_a_failure_email_says_what_went_wrong(notifier):
    with smtp_server() as mailbox:
        notifications = notifier(email_settings(mailbox, notify_email_to=("ops@example.org",)))
        notifications.observe([status("running")])
        notifications.observe([status("failed")])
        assert notifications.wait_idle(10)
    [mail] = mailbox.received
    assert mail.message["Subject"] == "InstaRecon3D: garden failed: only 2 of 24 photos could be placed"
    text = mail.message.get_content()
    assert "failed in sfm: only 2 of 24 photos could be placed" in text
    assert "What to do: take photos with more overlap" in text
    assert "Its page in the outbox: garden-1/index.html" in text


def test_email_logs_in_with_the_password_from_its_file(notifier, tmp_path, notify_log):
    secret = tmp_path / "smtp-password"
    secret.write_text("c0rrect horse\n")
    with smtp_server(credentials=("instarecon", "c0rrect horse")) as mailbox:
        notifications = notifier(email_settings(mailbox, smtp_username="instarecon", smtp_password_file=str(secret)))
        notifications.observe([status("running")])
        notifications.observe([status("done")])
        assert notifications.wait_idle(10)
        assert [mail.login for mail in mailbox.received] == ["instarecon"]
        # a wrong password is refused and not retried
        secret.write_text("wrong\n")
        sleeps = Sleeps()
        wrong = notifier(email_settings(mailbox, smtp_username="instarecon", smtp_password_file=str(secret)),
                         sleep=sleeps)
        wrong.observe([status("running", job_id="pond-1")])
        wrong.observe([status("done", job_id="pond-1")])
        assert wrong.wait_idle(10)
    # one attempt, no retry (smtplib itself tries each mechanism the server offers: PLAIN, then LOGIN)
    assert len(mailbox.received) == 1 and mailbox.logins_refused == 2 and sleeps == []
    assert "not sent after 1 attempt, not worth retrying: login refused: 535" in notify_log.text
    assert "wrong" not in notify_log.text and "horse" not in notify_log.text


def test_email_over_starttls(notifier, tmp_path):
    certificate = self_signed_certificate(tmp_path)
    trust = ssl.create_default_context(cafile=str(certificate[0]))
    with smtp_server(certificate=certificate) as mailbox:
        notifications = notifier(email_settings(mailbox, smtp_security="starttls"), ssl_context=trust)
        notifications.observe([status("running")])
        notifications.observe([status("done")])
        assert notifications.wait_idle(10)
        # without trusting the certificate, nothing is sent and nothing is retried
        sleeps = Sleeps()
        untrusting = notifier(email_settings(mailbox, smtp_security="starttls"), sleep=sleeps)
        untrusting.observe([status("running", job_id="pond-1")])
        untrusting.observe([status("done", job_id="pond-1")])
        assert untrusting.wait_idle(10)
    assert [(mail.tls, mail.message["X-InstaRecon-Job"]) for mail in mailbox.received] == [(True, "garden-1")]
    assert sleeps == []


def test_email_over_implicit_tls(notifier, tmp_path):
    certificate = self_signed_certificate(tmp_path)
    trust = ssl.create_default_context(cafile=str(certificate[0]))
    with smtp_server(certificate=certificate, implicit_tls=True) as mailbox:
        notifications = notifier(email_settings(mailbox, smtp_security="ssl"), ssl_context=trust)
        notifications.observe([status("running")])
        notifications.observe([status("done")])
        assert notifications.wait_idle(10)
    assert [(mail.tls, mail.message["Subject"]) for mail in mailbox.received] == [
        (True, "InstaRecon3D: garden done, 25.1 dB")]


def test_a_mail_server_that_is_down_is_retried_then_given_up(notifier, notify_log):
    sleeps = Sleeps()
    settings = Settings(notify_email_to=("ops@example.org",), smtp_host="127.0.0.1", smtp_port=free_port(),
                        smtp_security="none", notify_email_from="instarecon@example.org")
    notifications = notifier(settings, sleep=sleeps)
    notifications.observe([status("running")])
    notifications.observe([status("done")])
    assert notifications.wait_idle(30)
    assert len(sleeps) == 4
    assert "e-mail notification job.done to 127.0.0.1:" in notify_log.text
    assert "not sent after 5 attempts: cannot reach" in notify_log.text


# --- configuration -----------------------------------------------------------------------------


def _load(tmp_path: Path, toml: str) -> Settings:
    config = tmp_path / "instarecon.toml"
    config.write_text(toml)
    return load_settings(config, {}, environ={})


def test_notification_settings_have_quiet_defaults(tmp_path):
    settings = _load(tmp_path, "")
    assert (settings.notify_webhook_url, settings.notify_webhook_headers, settings.notify_email_to) == ("", {}, ())
    assert settings.notify_on == ("done", "failed") and settings.public_url == ""
    assert (settings.smtp_host, settings.smtp_port, settings.smtp_security) == ("", 587, "starttls")
    assert (settings.smtp_username, settings.smtp_password_file, settings.notify_email_from) == ("", "", "")
    assert not Notifications(settings).enabled


def test_notification_settings_are_read(tmp_path):
    settings = _load(tmp_path, """
public_url = "https://splats.example.org"
notify_on = ["done", "failed", "cancelled"]
notify_webhook_url = "https://hooks.example.org/instarecon"
notify_email_to = ["ops@example.org"]
notify_email_from = "InstaRecon3D <instarecon@example.org>"
smtp_host = "mail.example.org"
smtp_port = 465
smtp_security = "ssl"
smtp_username = "instarecon"
smtp_password_file = "secrets/smtp"
[notify_webhook_headers]
Authorization = "Bearer abc"
""")
    assert settings.public_url == "https://splats.example.org/"
    assert settings.notify_on == ("done", "failed", "cancelled")
    assert settings.notify_webhook_headers == {"Authorization": "Bearer abc"}
    assert settings.smtp_password_file == str(tmp_path / "secrets" / "smtp")  # relative to the file
    assert "Bearer" not in repr(settings)


@pytest.mark.parametrize(
    "toml, expected",
    [
        ("notify_webhook_url = 'hooks.example.org'\n", "setting 'notify_webhook_url' must be an http:// or https:// address"),
        ("notify_webhook_url = 'ftp://example.org/x'\n", "setting 'notify_webhook_url' must be an http:// or https:// address"),
        ("public_url = 5\n", "setting 'public_url' must be an http:// or https:// address"),
        ("notify_on = ['finished']\n", "setting 'notify_on' must be a list of job states out of done, failed, cancelled"),
        ("notify_on = 'done'\n", "setting 'notify_on' must be a list"),
        ("notify_email_to = 'ops@example.org'\n", "setting 'notify_email_to' must be a list of e-mail addresses"),
        ("notify_email_to = ['ops']\nsmtp_host = 'mail'\n", "setting 'notify_email_to' must be a list of e-mail addresses"),
        ("notify_email_from = 'me'\n", "setting 'notify_email_from' must be an e-mail address"),
        ("smtp_port = 0\n", "setting 'smtp_port' must be a port number from 1 to 65535, got 0"),
        ("smtp_port = '587'\n", "setting 'smtp_port' must be a port number, got '587'"),
        ("smtp_security = 'tls'\n", "setting 'smtp_security' must be one of starttls, ssl, none, got 'tls'"),
        ("smtp_host = 'smtp://mail.example.org'\n", "setting 'smtp_host' must be a host name or address"),
        ("notify_webhook_headers = 'Bearer x'\n", "setting 'notify_webhook_headers' must be a table of header = value"),
        ("[notify_webhook_headers]\n'Bad Name' = 'x'\n", "setting 'notify_webhook_headers' has a bad header name 'Bad Name'"),
        ('[notify_webhook_headers]\nAuthorization = "Bearer x\\ny"\n', "setting 'notify_webhook_headers.Authorization' must be one line of ASCII text"),
        ("[notify_webhook_headers]\nAuthorization = 'Bearer x€'\n", "setting 'notify_webhook_headers.Authorization' must be one line"),
        ("notify_webhook_url = 'https://hooks.example.org/a b'\n", "setting 'notify_webhook_url' must be an http:// or https:// address"),
        ("smtp_host = 'mail.example.org:587'\n", "setting 'smtp_host' must be a host name or address"),
        ("notify_email_to = ['ops@example.org']\n", "setting 'smtp_host' must be set when 'notify_email_to' is"),
        ("smtp_username = 'me'\n", "setting 'smtp_password_file' must be set when 'smtp_username' is"),
        ("smtp_password_file = '/etc/pw'\n", "setting 'smtp_username' must be set when 'smtp_password_file' is"),
    ],
)
def test_bad_notification_settings_are_one_line_naming_the_key(tmp_path, toml, expected):
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, toml)
    message = str(caught.value)
    assert expected in message and "\n" not in message
    assert "Bearer x" not in message  # a header's value may be a secret


def test_an_unreadable_password_file_stops_the_start(tmp_path):
    for name in ("inbox", "outbox"):
        (tmp_path / name).mkdir()
    settings = _load(tmp_path, "inbox = 'inbox'\noutbox = 'outbox'\nstate = 'state'\n"
                               "smtp_username = 'me'\nsmtp_password_file = 'missing'\n")
    with pytest.raises(ConfigError, match=r"setting 'smtp_password_file': .*missing cannot be read: No such file"):
        check_folders(settings)
    (tmp_path / "missing").write_text("pw\n")
    check_folders(settings)


def test_the_example_configuration_has_notifications_off():
    settings = load_settings(REPO / "deploy" / "instarecon.example.toml", {}, environ={})
    assert not Notifications(replace(settings)).enabled
    assert settings.notify_on == ("done", "failed") and settings.smtp_port == 587


# --- wired into the real daemon -----------------------------------------------------------------


@pytest.mark.slow
def test_the_daemon_posts_each_job_that_ends_once_and_delivers_before_it_exits(tmp_path, receiver):
    hook = receiver()
    layout = make_layout(tmp_path, notify_webhook_url=hook.url)
    small_set(layout.inbox / "garden", ready=True)
    small_set(layout.inbox / "broken", ready=True)
    (layout.inbox / "broken" / "job.toml").write_text('stop_after = "nonsense"\n')
    with DaemonProcess(layout, until_idle=True) as daemon:
        assert daemon.wait(120) == 0, daemon.log()
    events = sorted((body["event"], body["name"], body["page"]) for body in hook.bodies())
    assert events == [("job.done", "garden", f"{layout.status('garden')['job_id']}/index.html"),
                      ("job.failed", "broken", f"{layout.status('broken')['job_id']}/index.html")]

    with DaemonProcess(layout, until_idle=True) as again:  # a restart announces nothing old
        assert again.wait(60) == 0, again.log()
    assert len(hook.requests) == 2
