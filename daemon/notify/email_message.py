"""The e-mail for an event: a short plain-text message, its subject saying what happened."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Any, Mapping, Sequence

from daemon.notify.events import TRAINING_VIEWS, Event, metrics_summary, seconds_taken
from site_builder import page_url

SUBJECT_PREFIX = "InstaRecon3D"
_SUBJECT_REASON_CHARS = 120


def _one_line(text: Any, limit: int | None = None) -> str:
    """No line breaks or control characters (they would break a header); shortened with an ellipsis."""
    line = " ".join("".join(c if c.isprintable() else " " for c in str(text)).split())
    if limit is not None and len(line) > limit:
        line = line[: limit - 1].rstrip() + "…"
    return line


def _reason(document: Mapping[str, Any]) -> str:
    error = document.get("error")
    if isinstance(error, Mapping) and error.get("message"):
        return str(error["message"])
    return str(document.get("message") or "no reason given")


def subject(event: Event) -> str:
    name = _one_line(event.set_name, 80)
    if event.kind == "done":
        metrics = metrics_summary(event.document)
        psnr = metrics["psnr"]
        on_training = " on its training photos" if metrics["scored_on"] == TRAINING_VIEWS else ""
        return f"{SUBJECT_PREFIX}: {name} done" + (f", {psnr:.1f} dB{on_training}" if psnr is not None else "")
    if event.kind == "failed":
        return f"{SUBJECT_PREFIX}: {name} failed: {_one_line(_reason(event.document), _SUBJECT_REASON_CHARS)}"
    return f"{SUBJECT_PREFIX}: {name} {event.kind}"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def body(event: Event, public_url: str = "") -> str:
    document = event.document
    lines = []
    if event.kind == "done":
        lines.append(f"Job {event.id} ({event.set_name}) is done.")
    elif event.kind == "failed":
        error = document.get("error") if isinstance(document.get("error"), Mapping) else {}
        where = f" in {error['stage']}" if error.get("stage") else ""
        lines.append(f"Job {event.id} ({event.set_name}) failed{where}: {_reason(document)}")
        if error.get("hint"):
            lines.append(f"What to do: {error['hint']}")
    else:
        lines.append(f"Job {event.id} ({event.set_name}) was {event.kind}." + (
            f" {document['message']}" if document.get("message") else ""))
    metrics = metrics_summary(document)
    scores = [f"PSNR {metrics['psnr']:.2f} dB" if metrics["psnr"] is not None else None,
              f"SSIM {metrics['ssim']:.3f}" if metrics["ssim"] is not None else None,
              f"LPIPS {metrics['lpips']:.3f}" if metrics["lpips"] is not None else None]
    if any(scores):
        scored_on = ("Training photos (too few photos to hold one out: these scores flatter the model)"
                     if metrics["scored_on"] == TRAINING_VIEWS else "Held-out photos")
        lines.append(f"{scored_on}: " + ", ".join(s for s in scores if s))
    if metrics["gaussians"] is not None:
        lines.append(f"Gaussians: {int(metrics['gaussians']):,}")
    for warning in document.get("warnings") or []:
        lines.append(f"Warning: {warning}")
    taken = seconds_taken(document)
    timing = f"Created {document.get('created_at')}, finished {document.get('finished_at')}"
    lines.append(timing + (f" ({_duration(taken)})." if taken is not None else "."))
    url = page_url(event.id, public_url) if event.page else None
    if event.private:  # as the webhook's: its link is in the status.json beside the set, for its owner
        lines.append("Its page is private: the link is in the status.json beside the set.")
    else:
        lines.append(f"See it: {url}" if url else f"Its page in the outbox: {event.page}")
    lines.append("")
    lines.append(f"-- \nInstaRecon3D on {document.get('host') or 'this host'}")
    return "\n".join(lines) + "\n"


def build_message(event: Event, sender: str, recipients: Sequence[str], public_url: str = "") -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject(event)
    message["Date"] = formatdate(localtime=True)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    message["Message-ID"] = make_msgid("instarecon", domain=domain)  # a domain given: no DNS look-up
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to this
    message["X-InstaRecon-Job"] = _one_line(event.id)
    message["X-InstaRecon-Event"] = event.name
    message.set_content(body(event, public_url))
    return message
