"""``<outbox>/health.html``: the daemon's last heartbeat, queue and version, read live from the
``health.json`` the daemon rewrites at every heartbeat (the page itself never changes)."""

from __future__ import annotations

from pathlib import Path

from site_builder.asset_release import assets_url
from site_builder.site_files import write_if_changed
from site_builder.templates import render

HEALTH_PAGE = "health.html"
HEALTH_JSON = "health.json"


def write_health_page(outbox: Path, generator_version: str) -> bool:
    page = render("health.html", version=generator_version, assets=assets_url(""))
    return write_if_changed(outbox / HEALTH_PAGE, page)
