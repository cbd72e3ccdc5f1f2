"""Which stages a retry takes over from an earlier attempt of its set, and taking them over.

A retry (``instarecon retry JOB --from STAGE``, or a RETRY file, whose content may name the stage:
``from = "publish"``) is a new attempt. The stages before the one it starts from are the earlier
attempt's results, taken over as they are, when they would come out the same: the set's photos
are byte for byte those the earlier attempt read (the SHA-256 that its ingest recorded,
inbox_protocol/photo_digests.py), and the job.toml options each of those stages depends on
(``StageSpec.options``) are equal. Otherwise it takes over as many stages as are still valid (none
when a photo changed) and says why. A retry of a failed or cancelled attempt starts by default
from the stage that attempt ended in; of a done one, from the beginning.

The earlier stage folders are hard-linked into the new attempt's folder (copied where a link
cannot be made): stages write each file once, by rename, and never change one in place, so the
two attempts share bytes that neither alters. Each folder is linked under a temporary name and
renamed into place, so that the runner, which takes a stage as done once its result.json is
there, never sees half a folder.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from daemon.jobs.folders import JobFolders, link_tree
from daemon.jobs.records import RetryRequest
from daemon.store import JobRecord, JobState
from inbox_protocol.photo_digests import changed_photos
from stages.registry import StageSpec

_TEMPORARY_SUFFIX = ".reusing"  # a stage folder being linked in; removed when found later
_NAMED_PHOTOS = 5  # a message names at most this many changed photos, then counts the rest


@dataclass(frozen=True)
class Reuse:
    earlier_job: str
    asked_from: str  # the stage the retry asked to start from
    stages: tuple[str, ...]  # taken over, in pipeline order; the attempt starts at the stage after them
    why_not: str | None  # why fewer stages are taken over than asked for; None when all are


def default_start(earlier: JobRecord, pipeline: Sequence[StageSpec]) -> str:
    """Where a retry that names no stage starts: the stage a failed or cancelled attempt ended in."""
    first = pipeline[0].name
    if earlier.state not in (JobState.FAILED, JobState.CANCELLED):
        return first
    ended_in = earlier.error.stage if earlier.error is not None and earlier.error.stage else earlier.stage
    return ended_in if ended_in in {spec.name for spec in pipeline} else first


def plan_reuse(pipeline: Sequence[StageSpec], request: RetryRequest, earlier: JobRecord | None,
               earlier_folders: JobFolders | None, options: Mapping[str, Any],
               photo_digests_now: Callable[[], Mapping[str, str]]) -> Reuse:
    """Decide, reading only the earlier attempt's folder and the set (``photo_digests_now``, asked
    only when some stage could be taken over: it reads every photo)."""
    names = [spec.name for spec in pipeline]
    if earlier is None or earlier_folders is None:
        return Reuse(request.earlier_job, request.from_stage or names[0], (),
                     f"the earlier attempt {request.earlier_job} is not in the job store")
    start = request.from_stage or default_start(earlier, pipeline)
    if start not in names:
        return Reuse(earlier.id, start, (), f"'{start}' is not a stage (stages: {', '.join(names)})")
    wanted = pipeline[:names.index(start)]
    kept: list[str] = []
    why_not = None
    for spec in wanted:
        why_not = _why_not_reusable(spec, earlier, earlier_folders, options)
        if why_not is not None:
            break
        kept.append(spec.name)
    if kept:
        why_photos = _why_photos_differ(earlier, earlier_folders, photo_digests_now)
        if why_photos is not None:
            kept, why_not = [], why_photos
    return Reuse(earlier.id, start, tuple(kept), why_not)


def _why_not_reusable(spec: StageSpec, earlier: JobRecord, folders: JobFolders,
                      options: Mapping[str, Any]) -> str | None:
    if not folders.work.is_dir():
        return f"the work folder of {earlier.id} has been removed (retention)"
    if not folders.result(spec.name).is_file():
        return f"{earlier.id} has no finished {spec.name} stage to reuse"
    earlier_options = earlier.options or {}
    for option in spec.options:
        if earlier_options.get(option) != options.get(option):
            return (f"job.toml's {option} is {_shown(options.get(option))} now and was "
                    f"{_shown(earlier_options.get(option))} for {earlier.id}, and {spec.name} depends on it")
    return None


def _why_photos_differ(earlier: JobRecord, folders: JobFolders,
                       photo_digests_now: Callable[[], Mapping[str, str]]) -> str | None:
    try:
        ingested = json.loads(folders.result("ingest").read_text(encoding="utf-8"))
        before = json.loads(folders.output(ingested["outputs"]["digests"]).read_text(encoding="utf-8"))
    except (OSError, KeyError, ValueError):
        return f"{earlier.id} recorded no digests of the photos it read (it ran before retries could reuse stages)"
    try:
        now = photo_digests_now()
    except OSError as error:
        return f"the set could not be read to compare its photos with those {earlier.id} read ({error.strerror})"
    changed = changed_photos(before, now)
    if not changed:
        return None
    named = ", ".join(changed[:_NAMED_PHOTOS]) + (f" and {len(changed) - _NAMED_PHOTOS} more"
                                                   if len(changed) > _NAMED_PHOTOS else "")
    noun = "photo" if len(changed) == 1 else "photos"
    return f"{len(changed)} {noun} changed, came or went since {earlier.id} read the set: {named}"


def _shown(value: Any) -> str:
    return "unset" if value is None else json.dumps(value)


def take_over(earlier: JobFolders, target: JobFolders, stages: Sequence[str]) -> None:
    """Link each stage's folder of the earlier attempt into ``target``, replacing whatever an
    interrupted run left there."""
    target.work.mkdir(parents=True, exist_ok=True)
    for name in stages:
        destination = target.stage(name)
        temporary = destination.with_name(destination.name + _TEMPORARY_SUFFIX)
        shutil.rmtree(temporary, ignore_errors=True)
        link_tree(earlier.stage(name), temporary)
        if destination.exists():
            shutil.rmtree(destination)
        os.rename(temporary, destination)
