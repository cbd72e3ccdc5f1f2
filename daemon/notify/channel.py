"""What every way of sending a notification has in common: one attempt, success or a reason."""

from __future__ import annotations

from typing import Protocol

from daemon.notify.events import Event


class DeliveryError(Exception):
    """One attempt failed; ``retryable`` says whether trying again later can help (a server
    down or busy) or not (a wrong password, a refused address, a redirect)."""

    def __init__(self, reason: str, retryable: bool):
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class Channel(Protocol):
    name: str  # "webhook", "e-mail": for the journal
    target: str  # where it goes, with no secret in it: for the journal

    def deliver(self, event: Event) -> str:
        """Send the event once; returns a few words for the journal ("HTTP 204"), raises DeliveryError."""
        ...
