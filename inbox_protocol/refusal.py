"""The one exception of the inbox protocol."""

from __future__ import annotations


class SetRefused(Exception):
    """The set breaks the protocol (not a zip, a link out of the set, over a limit) for a reason the
    person who dropped it can act on: ``message`` says what is wrong, ``hint`` what to do."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
