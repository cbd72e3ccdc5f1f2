"""The manual holds together: the configuration page is what the settings' own definitions say,
every setting and job.toml option says what it is for, every link leads to a file and heading that
exist, and the README stays a front door (the rest lives in docs/)."""

from __future__ import annotations

import difflib
import json
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from daemon.config import SETTING_GROUPS, Settings
from tests.daemon_harness import REPO

README_MAX_BYTES = 12_000
MANUAL = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

_FENCE = re.compile(r"^\s*(```|~~~)")
_CODE_SPAN = re.compile(r"(`+).+?\1")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")


def test_the_configuration_page_is_what_make_docs_writes():
    written = subprocess.run([sys.executable, "-m", "daemon.config_reference"], cwd=REPO, capture_output=True,
                             text=True, timeout=60, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert written.returncode == 0, written.stderr[-2000:]
    page = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    difference = "".join(difflib.unified_diff(page.splitlines(True), written.stdout.splitlines(True),
                                              "docs/configuration.md", "the settings' definitions", n=0))
    if page != written.stdout:
        pytest.fail(f"docs/configuration.md is out of date: run `make docs`\n{difference[:3000]}")


def test_every_setting_and_job_option_says_what_it_is_for():
    undescribed = [f.name for f in fields(Settings) if not f.metadata.get("doc", "").strip()]
    assert undescribed == [], f"settings without a description (setting(..., doc) in daemon/config.py): {undescribed}"
    grouped = [name for _, names in SETTING_GROUPS for name in names]
    assert sorted(grouped) == sorted(f.name for f in fields(Settings)), "every setting in exactly one SETTING_GROUPS entry"
    schema = json.loads((REPO / "daemon" / "schemas" / "job-options.schema.json").read_text(encoding="utf-8"))
    undescribed = [key for key, spec in schema["properties"].items() if not spec.get("description", "").strip()]
    assert undescribed == [], f"job.toml options without a description in the schema: {undescribed}"


def test_every_link_in_the_manual_leads_to_a_file_and_heading_that_exist():
    broken = []
    for page in MANUAL:
        for target in links(page):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...: not ours to check
                continue
            path, _, anchor = target.partition("#")
            destination = (page.parent / path).resolve() if path else page
            if not destination.exists():
                broken.append(f"{page.relative_to(REPO)}: {target} (no such file)")
            elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
                broken.append(f"{page.relative_to(REPO)}: {target} (no such heading in {destination.name})")
    assert broken == [], "links that lead nowhere:\n" + "\n".join(broken)


def test_the_readme_is_a_front_door():
    size = (REPO / "README.md").stat().st_size
    assert size <= README_MAX_BYTES, f"README.md is {size:,} bytes, at most {README_MAX_BYTES:,}: move detail to docs/"


def links(page: Path) -> list[str]:
    """Link and image targets outside code blocks and code spans."""
    return [target for line in _prose_lines(page) for target in _LINK.findall(_CODE_SPAN.sub("code", line))]


def anchors(page: Path) -> set[str]:
    """The fragments GitHub gives the page's headings (and any <a id>)."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in _prose_lines(page):
        found.update(_HTML_ANCHOR.findall(line))
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            slug = github_slug(heading.group(1))
            found.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return found


def github_slug(heading: str) -> str:
    """GitHub's rule: the heading's text, lower case, without punctuation, each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link counts by its text
    text = re.sub(r"[^\w\- ]", "", text.replace("`", "").lower())
    return text.replace(" ", "-")


def _prose_lines(page: Path) -> list[str]:
    """The page without its fenced code blocks and indented ones (four spaces after a blank line)."""
    lines, fenced, indented_code, previous = [], False, False, ""
    for line in page.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            indented_code = line.startswith("    ") and (indented_code or not previous.strip())
            if not indented_code:
                lines.append(line)
        previous = line
    return lines
