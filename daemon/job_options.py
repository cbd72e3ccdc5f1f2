"""Per-set options from an optional ``job.toml``, checked against the published schema.

A typo must fail the job with the reason rather than run an hour with the defaults.
"""

from __future__ import annotations

import json
import re
import tomllib
import zipfile
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from stages.photo_set import JOB_OPTIONS_FILE


# "... At most 8192: <why>." in an option's description
_UPPER_BOUND_REASON = re.compile(r"At most [0-9,]+: (.*?)\.?$")


class JobOptionsError(Exception):
    """job.toml cannot be used; str() says which key and why."""


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


def read_job_options(source: Path) -> dict[str, Any]:
    """Options of a set folder or .zip set; defaults when it has no job.toml."""
    text = _job_toml_text(source)
    if text is None:
        return default_options()
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise JobOptionsError(f"job.toml is not valid TOML: {error}") from None
    return validate_options(document)


def _job_toml_text(source: Path) -> str | None:
    try:
        if source.is_file() and zipfile.is_zipfile(source):
            with zipfile.ZipFile(source) as archive:
                names = {name.lower(): name for name in archive.namelist()}
                if JOB_OPTIONS_FILE not in names:
                    return None
                return archive.read(names[JOB_OPTIONS_FILE]).decode("utf-8")
        for candidate in source.iterdir():
            if candidate.name.lower() == JOB_OPTIONS_FILE and candidate.is_file() and not candidate.is_symlink():
                return candidate.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise JobOptionsError("job.toml is not UTF-8 text") from None
    except (OSError, zipfile.BadZipFile) as error:
        raise JobOptionsError(f"job.toml cannot be read: {error}") from None
    return None
