"""One JSON POST per event, with the standard library (urllib), a timeout, and no redirects:
a POST redirected would arrive as a GET without its body, so a redirect is reported instead."""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.error
import urllib.request
from typing import Any, Mapping
from urllib.parse import urlsplit

from daemon.notify.channel import DeliveryError
from daemon.notify.events import Event, payload

TIMEOUT_SECONDS = 10.0
_RETRYABLE_STATUS = {408, 425, 429}  # and every 5xx
_MAX_RESPONSE_BYTES = 64 * 1024


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: PLR0913 (urllib's signature)
        return None  # urllib then raises HTTPError with the 3xx


def post_json(
    url: str,
    body: Mapping[str, Any],
    headers: Mapping[str, str] | None = None,
    timeout: float = TIMEOUT_SECONDS,
    ssl_context: ssl.SSLContext | None = None,
) -> int:
    """POST ``body`` as JSON; returns the 2xx status, raises DeliveryError."""
    data = json.dumps(body, ensure_ascii=False, allow_nan=False).encode("utf-8")
    request = urllib.request.Request(url, data=data, method="POST")
    request.add_header("Content-Type", "application/json; charset=utf-8")
    for name, value in (headers or {}).items():
        request.add_header(name, value)  # after ours: a configured header may replace one
    opener = urllib.request.build_opener(_NoRedirect, urllib.request.HTTPSHandler(context=ssl_context))
    try:
        with opener.open(request, timeout=timeout) as response:
            response.read(_MAX_RESPONSE_BYTES)
            return response.status
    except urllib.error.HTTPError as error:
        error.close()
        code = error.code
        if 300 <= code < 400:
            where = error.headers.get("Location", "elsewhere")
            raise DeliveryError(f"HTTP {code}: redirected to {where}; set notify_webhook_url to the final address", False) from None
        raise DeliveryError(f"HTTP {code} {error.reason}", code >= 500 or code in _RETRYABLE_STATUS) from None
    except urllib.error.URLError as error:
        reason = error.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise DeliveryError(f"TLS certificate not accepted: {reason.verify_message or reason}", False) from None
        raise DeliveryError(f"cannot connect: {_words(reason)}", True) from None
    except (TimeoutError, http.client.HTTPException, OSError) as error:
        raise DeliveryError(f"no answer: {_words(error)}", True) from None


def _words(reason: Any) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    text = str(reason)
    return text or type(reason).__name__


def safe_target(url: str) -> str:
    """scheme://host[:port]: a webhook's path or query often is its secret (Slack, Discord)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


class WebhookChannel:
    name = "webhook"

    def __init__(self, url: str, headers: Mapping[str, str], public_url: str, user_agent: str,
                 timeout: float = TIMEOUT_SECONDS, ssl_context: ssl.SSLContext | None = None):
        self._url = url
        self._headers = {"User-Agent": user_agent, **headers}
        self._public_url = public_url
        self._timeout = timeout
        self._ssl_context = ssl_context
        self.target = safe_target(url)

    def deliver(self, event: Event) -> str:
        headers = {"X-InstaRecon-Event": event.name, **self._headers}
        status = post_json(self._url, payload(event, self._public_url), headers, self._timeout, self._ssl_context)
        return f"HTTP {status}"
