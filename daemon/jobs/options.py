"""Per-set options from an optional ``job.toml``, checked against the published schema.

A typo must fail the job with the reason rather than run an hour with the defaults. It is read
here, in the daemon process, so never more than 64 KB of it: a few megabytes of zip can unpack
to gigabytes.
"""

from __future__ import annotations

import json
import re
import tomllib
import zipfile
import zlib
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from inbox_protocol.photo_set import JOB_OPTIONS_FILE, JOB_OPTIONS_MAX_BYTES, JOB_OPTIONS_TOO_LARGE, FileRules
from inbox_protocol.zip_extract import NOT_A_ZIP, ZIP_HINT
from inbox_protocol.zip_layout import zip_set_layout

_FOLDER_MESSAGE = "job.toml is a folder, not a file; options go in a text file named job.toml at the top of the set"


# "... At most 8192: <why>." in an option's description
_UPPER_BOUND_REASON = re.compile(r"At most [0-9,]+: (.*?)\.?$")


class JobOptionsError(Exception):
    """job.toml cannot be used; str() says which key and why, ``hint`` (if any) what to do."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


@cache
def job_options_schema() -> dict[str, Any]:
    return json.loads((resources.files("daemon") / "schemas" / "job-options.schema.json").read_text())


def default_options() -> dict[str, Any]:
    return {key: spec["default"] for key, spec in job_options_schema()["properties"].items()}


def validate_options(document: dict[str, Any]) -> dict[str, Any]:
    """Return the options with defaults filled in, or raise with the first problem found."""
    schema = job_options_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
    if errors:
        error = errors[0]
        if error.validator == "additionalProperties":
            unknown = sorted(set(document) - set(schema["properties"]))
            known = ", ".join(schema["properties"])
            raise JobOptionsError(f"job.toml: unknown key '{unknown[0]}' (known keys: {known})")
        key = ".".join(str(part) for part in error.path)
        if error.validator == "maximum":
            # the bound and why it is there (the schema's description says), rather than jsonschema's words
            why = _UPPER_BOUND_REASON.search(schema["properties"][key]["description"])
            raise JobOptionsError(f"job.toml: '{key}' is {error.instance:,}, more than the {error.validator_value:,} "
                                  f"a job may ask for" + (f": {why.group(1)}" if why else ""))
        raise JobOptionsError(f"job.toml: '{key}': {error.message}")
    return {**default_options(), **document}


def read_job_options(source: Path, rules: FileRules) -> dict[str, Any]:
    """Options of a set folder or .zip set; defaults when it has no job.toml. ``rules`` tell
    litter apart, to find a zip's one top folder as ingest does (inbox_protocol/zip_layout.py)."""
    document = _job_toml_document(source, rules)
    return default_options() if document is None else validate_options(document)


def job_privacy(source: Path, rules: FileRules, by_default: bool) -> bool:
    """Whether the set's job is private: its job.toml's ``private``, or ``by_default`` where it says
    nothing. A job.toml that cannot be read as TOML, or whose ``private`` is neither true nor false
    (either fails the job), keeps the job private, as it may have asked to be: its page then shows
    only what is wrong, to whoever has the link beside the set. So does a zip still being copied,
    whose job.toml cannot be read yet. Another key's mistake does not change it."""
    try:
        document = _job_toml_document(source, rules)
    except JobOptionsError:
        return True
    private = (document or {}).get("private")
    if private is None:
        return by_default
    return private if isinstance(private, bool) else True


def _job_toml_document(source: Path, rules: FileRules) -> dict[str, Any] | None:
    """The set's job.toml as TOML, unchecked; None when it has none."""
    data = _zip_job_toml(source, rules) if source.is_file() else _folder_job_toml(source)
    if data is None:
        return None
    if len(data) > JOB_OPTIONS_MAX_BYTES:
        raise JobOptionsError(JOB_OPTIONS_TOO_LARGE)
    try:
        text = data.decode("utf-8-sig")  # Windows Notepad may start the file with a BOM
    except UnicodeDecodeError:
        raise JobOptionsError("job.toml is not UTF-8 text") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise JobOptionsError(f"job.toml is not valid TOML: {error}") from None


def _folder_job_toml(folder: Path) -> bytes | None:
    """At most JOB_OPTIONS_MAX_BYTES + 1 bytes of the folder's job.toml; None if it has none
    (or only a link by that name: links are never followed)."""
    try:
        for candidate in sorted(folder.iterdir()):
            if candidate.name.lower() != JOB_OPTIONS_FILE or candidate.is_symlink():
                continue
            if candidate.is_dir():
                raise JobOptionsError(_FOLDER_MESSAGE)
            if candidate.is_file():
                with open(candidate, "rb") as file:
                    return file.read(JOB_OPTIONS_MAX_BYTES + 1)
    except FileNotFoundError:
        return None  # the set is gone: ingest says so
    except OSError as error:
        raise JobOptionsError(f"job.toml cannot be read: {error.strerror}") from None
    return None


def _zip_job_toml(archive: Path, rules: FileRules) -> bytes | None:
    """At most JOB_OPTIONS_MAX_BYTES + 1 bytes of the job.toml at the zip set's root, streamed:
    whatever its header declares, no more is ever decompressed."""
    try:
        opened = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, EOFError):
        raise JobOptionsError(NOT_A_ZIP, hint=ZIP_HINT) from None
    except FileNotFoundError:
        return None  # the set is gone: ingest says so
    except OSError as error:
        raise JobOptionsError(f"the zip archive cannot be read: {error.strerror}") from None
    with opened:
        layout = zip_set_layout(opened.infolist(), rules)
        if layout.job_options_is_folder:
            raise JobOptionsError(_FOLDER_MESSAGE)
        if layout.job_options is None:
            return None
        entry = layout.job_options.entry
        if entry.file_size > JOB_OPTIONS_MAX_BYTES:
            raise JobOptionsError(JOB_OPTIONS_TOO_LARGE)
        try:
            with opened.open(entry) as member:
                return member.read(JOB_OPTIONS_MAX_BYTES + 1)
        # corrupt (a CRC that does not match), Deflate64, encrypted, or the file cut short
        except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, EOFError, OSError) as error:
            raise JobOptionsError(f"job.toml in the zip archive cannot be read: {error}", hint=ZIP_HINT) from None
