"""The jinja2 environment of the site: autoescaping everywhere, and the few formats pages share.

Every name that reaches a page (a set is named by whoever drops it) goes through autoescape;
nothing is marked safe. Pages carry no inline script or style, so they work under a strict
Content-Security-Policy.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache

import jinja2


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("site_builder", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a misspelt field fails the build, not the reader
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        decibels=lambda value: "–" if value is None else f"{value:.2f} dB",
        fraction=lambda value: "–" if value is None else f"{value:.3f}",
        count=lambda value: "–" if value is None else f"{value:,}",
        size=human_size,
        duration=human_duration,
        moment=human_moment,
    )
    return env


def render(template: str, **values) -> bytes:
    return environment().get_template(template).render(**values).encode("utf-8")


def human_size(size_bytes: int | None) -> str:
    if size_bytes is None:
        return ""
    size = float(size_bytes)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, second = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {second:02d} s"
    hours, minute = divmod(minutes, 60)
    return f"{hours} h {minute:02d} min"


def human_moment(stamp: str | None) -> str:
    """status.json's ISO time (UTC, ending in Z) as "2026-11-27 03:56 UTC"."""
    if not stamp:
        return "–"
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    return moment.strftime("%Y-%m-%d %H:%M UTC")
