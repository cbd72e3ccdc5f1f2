"""What a RETRY file asks for: run the set again, from the stage its content names, if any.

An empty RETRY (the usual ``touch RETRY``) leaves the stage to the daemon: the one a failed or
cancelled attempt ended in. One line of TOML names it: ``from = "publish"``. Anything else in the
file is refused with a message that says what a RETRY file may hold, rather than guessed at.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Sequence

from inbox_protocol.refusal import SetRefused

MAX_RETRY_BYTES = 4096  # a line or two; a larger file is not a RETRY marker anyone meant


def read_retry_file(path: Path, stage_names: Sequence[str]) -> str | None:
    """The stage the RETRY file at ``path`` names (None: it names none); SetRefused when its content
    is not what a RETRY file may hold. The file is read without following a link."""
    stages = ", ".join(f'"{name}"' for name in stage_names)
    hint = f'leave RETRY empty, or write one line such as from = "{stage_names[-1]}" (stages: {stages})'
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(descriptor, "rb") as handle:
            content = handle.read(MAX_RETRY_BYTES + 1)
    except OSError as error:
        raise SetRefused(f"the RETRY file could not be read ({error.strerror})", hint) from error
    if len(content) > MAX_RETRY_BYTES:
        raise SetRefused(f"the RETRY file is larger than {MAX_RETRY_BYTES} bytes", hint)
    try:
        request = tomllib.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise SetRefused(f"the RETRY file is not valid TOML ({error})", hint) from error
    unknown = sorted(set(request) - {"from"})
    if unknown:
        raise SetRefused(f"the RETRY file names {', '.join(unknown)}; it may only say which stage to start from", hint)
    stage = request.get("from")
    if stage is not None and stage not in stage_names:
        raise SetRefused(f"the RETRY file asks to start from {stage!r}, which is not a stage", hint)
    return stage
