"""Names as the file system holds them, which need not be text.

A Linux file name is bytes. One that is not valid UTF-8 (``caf\\xe9.jpg``, as old SMB and FTP
clients write Latin-1) reaches Python with each undecodable byte as a lone surrogate (PEP 383),
and such a string cannot be encoded as UTF-8: not into a database, a journal field, an HTML page
or an e-mail. A name may also hold a newline or a terminal escape. Every place that stores a name
or shows it to a person goes through here; the name itself stays exact wherever files are opened.

A leaf module of the standard library only: the site builder and the stages import it too.
"""

from __future__ import annotations

import re

# Characters that would break a line or fool a reader: C0 and C1 controls (a newline, an escape
# sequence), Unicode's line and paragraph separators, and the bidirectional overrides that can
# make "gpj.exe" read as "exe.jpg".
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_SURROGATE = re.compile("[\udc80-\udcff]")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# The job store keeps names as text: '%' and each undecodable byte are written as %XX, so that
# every name the file system can hold is stored, and read back, exactly.
_STORED_ESCAPE = re.compile("[%\udc80-\udcff]")
_STORED_UNESCAPE = re.compile("%(25|[89A-F][0-9A-F])")


def display_name(name: str) -> str:
    """One line of text that shows ``name`` exactly: each undecodable byte as ``\\xNN``, control
    characters as ``\\n``, ``\\t`` or ``\\xNN`` (``\\uNNNN`` above U+00FF); the rest as it is."""
    return _UNPRINTABLE.sub(_escape_character, without_surrogates(name))


def without_surrogates(text: str) -> str:
    """``text`` (a message that quotes a name) made valid UTF-8: undecodable bytes as ``\\xNN``."""
    return _SURROGATE.sub(_byte_escape, text)


def _byte_escape(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()) - 0xDC00:02x}"


def _escape_character(match: re.Match[str]) -> str:
    character = match.group()
    if character in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[character]
    code = ord(character)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def stored_name(name: str) -> str:
    """``name`` as valid text for the job store; ``name_from_store`` gives it back exactly."""
    return _STORED_ESCAPE.sub(_stored_escape, name)


def _stored_escape(match: re.Match[str]) -> str:
    character = match.group()
    return "%25" if character == "%" else f"%{ord(character) - 0xDC00:02X}"


def name_from_store(text: str) -> str:
    return _STORED_UNESCAPE.sub(lambda match: _byte_as_name(int(match.group(1), 16)), text)


def _byte_as_name(value: int) -> str:
    """%25 is '%'; any other %XX is a byte that was not UTF-8, a lone surrogate again."""
    return "%" if value == 0x25 else chr(0xDC00 + value)
