"""The ingest stage: turn the user's set (a folder or a .zip) into upright, stripped, sized JPEGs.

The set itself is only ever read. A set over the size limits (inbox_protocol/set_limits.py) fails
before any photo is read or extracted. Photos are checked in a thread pool, which decodes no
more at once than ingest's memory budget allows (stages/memory_budget.py); the usable ones land
in ``images/`` and ``manifest.json`` says which file each came from and why others were not
used, so that later stages never open the user's files again; ``photo-digests.json`` holds the
SHA-256 of each photo read (of the .zip, for a zip set), which a retry compares with the set to
tell whether this attempt's stages can be reused (inbox_protocol/photo_digests.py). ``cover.jpg``, the first usable
photo in name order at most ``COVER_LONG_SIDE`` on its long side and without metadata, goes to
the outbox as soon as ingest is done: the set's card shows it while the job runs, or after it failed.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

from PIL import Image

from inbox_protocol.file_names import display_name
from inbox_protocol.photo_digests import DIGESTS_FILE, file_sha256, listing_digests
from inbox_protocol.photo_set import MAX_FOLDER_DEPTH, FileEntry, FileRules, SetListing, walk_set
from inbox_protocol.refusal import SetRefused
from inbox_protocol.set_limits import PhotoSize, SetLimits, first_violation, listed_photos, zip_photos
from inbox_protocol.zip_extract import ZipLimits, extract_zip
from stages.atomic_files import atomic_write_json
from stages.base import ProgressReporter, Stage, StageContext, StageFailed, StageResult
from stages.memory_budget import MemoryBudget, decoding_budget_bytes, return_freed_memory_promptly
from stages.photo_checks import (
    NormalisedPhoto,
    PhotoRejected,
    PhotoRules,
    enable_heif,
    normalise_photo,
    own_pixel_limit,
)
from stages.web_images import write_web_jpeg

log = logging.getLogger("stages.ingest")

MIN_PHOTOS = 3
IMAGES_DIR = "images"
MANIFEST_FILE = "manifest.json"
EXTRACTED_DIR = "extracted"
COVER_FILE = "cover.jpg"
COVER_LONG_SIDE = 640
_SYMLINK_REASON = "symbolic link: not followed"
_TOO_FEW_HINT = (
    "add more photos of the scene taken from different positions, with plenty of overlap "
    "between neighbouring shots; see images.rejected for why photos were not used"
)
_MAX_NAME_BYTES = 200  # file systems allow 255; leaves room for "-N.jpg"
_UNUSUAL_NAME_CHARACTERS = re.compile(r"[^\w.-]+")  # COLMAP's text files split names on spaces


@dataclass(frozen=True)
class _Accepted:
    file: str  # the source path relative to the set, for people
    image: str  # the normalised copy, relative to the output folder
    photo: NormalisedPhoto


@dataclass(frozen=True)
class _Rejected:
    file: str
    reason: str


@dataclass(frozen=True)
class _Outcome:
    found: int
    accepted: tuple[_Accepted, ...]  # name order
    rejected: tuple[_Rejected, ...]  # name order
    notes: tuple[str, ...]  # warnings beyond the rejected photos


class IngestStage(Stage):
    name = "ingest"

    def run(self, context: StageContext, report: ProgressReporter) -> StageResult:
        started = time.monotonic()
        try:
            outcome, digests = _ingest_source(context, report)
        except SetRefused as refusal:  # the inbox protocol's refusal is this stage's failure
            raise StageFailed(refusal.message, hint=refusal.hint) from refusal
        images = {
            "found": outcome.found,
            "accepted": len(outcome.accepted),
            "rejected": [{"file": item.file, "reason": item.reason} for item in outcome.rejected],
        }
        if len(outcome.accepted) < MIN_PHOTOS:
            raise StageFailed(_too_few_message(outcome), hint=_TOO_FEW_HINT, images=images)
        atomic_write_json(context.output_dir / MANIFEST_FILE, _manifest(outcome))
        atomic_write_json(context.output_dir / DIGESTS_FILE, digests)  # what a retry compares the set with
        _write_cover(context.output_dir / outcome.accepted[0].image, context.output_dir / COVER_FILE)
        warnings = outcome.notes
        if outcome.rejected:
            rejected = f"{len(outcome.rejected)} of {outcome.found} photos rejected"
            warnings = (f"{rejected}: see images.rejected",) + warnings
        stage_folder = context.output_dir.relative_to(context.job_dir).as_posix()
        return StageResult(
            metrics={
                "found": outcome.found,
                "accepted": len(outcome.accepted),
                "rejected": len(outcome.rejected),
                "seconds": round(time.monotonic() - started, 3),
            },
            outputs={
                "images": f"{stage_folder}/{IMAGES_DIR}",
                "manifest": f"{stage_folder}/{MANIFEST_FILE}",
                "digests": f"{stage_folder}/{DIGESTS_FILE}",
                "cover": f"{stage_folder}/{COVER_FILE}",
            },
            warnings=warnings,
            images=images,
            to_outbox=("cover",),
        )


def _write_cover(image: Path, cover: Path) -> None:
    """The set's cover from a normalised copy (upright already); its camera EXIF stays behind."""
    with Image.open(image) as picture:
        picture.draft("RGB", (COVER_LONG_SIDE, COVER_LONG_SIDE))  # a JPEG decoded at 1/2, 1/4, 1/8 when that is enough
        write_web_jpeg(cover, picture, COVER_LONG_SIDE)


def _ingest_source(context: StageContext, report: ProgressReporter) -> tuple[_Outcome, dict[str, str]]:
    """The set's size limits are checked first, before any photo is read or extracted. Also the
    digests of the photos read (inbox_protocol/photo_digests.py)."""
    source = context.source
    rules = FileRules(tuple(context.settings.get("ignore_patterns", ())))
    limits = SetLimits.from_settings(context.settings)
    if source.is_dir():
        listing = walk_set(source, context.inbox, rules)
        _refuse_escaping_symlinks(listing)
        _refuse_over_limits(listed_photos(listing), limits)
        return _ingest_folder(source, listing, context, report), listing_digests(source, listing)
    if source.is_file() and source.suffix.lower() == ".zip":
        _refuse_over_limits(zip_photos(source, rules), limits)
        digests = {source.name: file_sha256(source)}
        extracted = context.output_dir / EXTRACTED_DIR
        zip_limits = ZipLimits(  # checked again as the bytes come out, in case the headers lie
            max_files=int(context.settings["zip_max_files"]),
            max_bytes=int(context.settings["zip_max_bytes"]),
            max_file_bytes=limits.max_file_bytes,
            max_set_bytes=limits.max_set_bytes,
        )
        try:
            report(0.0, "extracting zip archive")
            extract_zip(source, extracted, zip_limits, rules)  # its photos (and job.toml) only
            listing = walk_set(extracted, extracted, rules)
            return _ingest_folder(extracted, listing, context, report), digests
        finally:
            shutil.rmtree(extracted, ignore_errors=True)  # the normalised copies are what stays
    raise StageFailed(f"the set '{source.name}' is missing, or is neither a folder nor a .zip file")


def _refuse_over_limits(photos: tuple[PhotoSize, ...], limits: SetLimits) -> None:
    violation = first_violation(photos, limits)
    if violation is not None:
        log.warning("over the limit of the setting %s", violation.setting)  # the operator's half of the message
        raise StageFailed(violation.message, hint=violation.hint)


def _ingest_folder(
    folder: Path, listing: SetListing, context: StageContext, report: ProgressReporter
) -> _Outcome:
    images_dir = context.output_dir / IMAGES_DIR
    images_dir.mkdir(parents=True, exist_ok=True)
    original_resolution = bool(context.options.get("original_resolution"))
    photo_rules = PhotoRules(
        max_long_side=None if original_resolution else int(context.options["max_image_size"]),
        max_image_pixels=int(context.settings["max_image_pixels"]),
        heif_supported=enable_heif(),
    )
    threads = int(context.settings.get("threads") or os.cpu_count() or 1)
    # 0 (or a context written before the setting existed): a share of the service's memory
    budget = MemoryBudget(decoding_budget_bytes(float(context.settings.get("ingest_memory_mb") or 0)))
    results = _normalise_all(folder, listing.photos, images_dir, photo_rules, budget, threads, report)
    candidates = [item for item in results if isinstance(item, _Accepted)]
    accepted, duplicates = _split_duplicates(candidates, context.output_dir)
    rejected = [item for item in results if isinstance(item, _Rejected)] + duplicates
    rejected += [_Rejected(display_name(link.path), _SYMLINK_REASON) for link in listing.symlinks]
    return _Outcome(
        found=len(listing.photos) + len(listing.symlinks),
        accepted=tuple(accepted),
        rejected=tuple(sorted(rejected, key=lambda item: item.file)),
        notes=tuple(
            f"folder '{display_name(name)}' could not be read; photos in it were skipped"
            for name in listing.unreadable
        ) + tuple(
            f"folder '{display_name(name)}' is nested more than {MAX_FOLDER_DEPTH} folders deep; photos in it "
            "were skipped"
            for name in listing.too_deep
        ),
    )


def _refuse_escaping_symlinks(listing: SetListing) -> None:
    refusal = listing.escaping_symlink_refusal()
    if refusal is not None:
        message, hint = refusal
        raise StageFailed(message, hint=hint)


def _normalise_all(
    folder: Path,
    photos: tuple[FileEntry, ...],
    images_dir: Path,
    rules: PhotoRules,
    budget: MemoryBudget,
    threads: int,
    report: ProgressReporter,
) -> list[_Accepted | _Rejected]:
    """Check every photo in parallel, each thread waiting for its photo's share of ``budget``;
    report progress from this thread as each one finishes."""
    names = output_names(entry.path for entry in photos)

    def normalise(entry: FileEntry) -> _Accepted | _Rejected:
        name = names[entry.path]
        try:
            photo = normalise_photo(folder / entry.path, images_dir / name, rules, budget)
        except PhotoRejected as rejection:
            return _Rejected(display_name(entry.path), rejection.reason)
        return _Accepted(display_name(entry.path), f"{IMAGES_DIR}/{name}", photo)

    report(0.0, f"checking {len(photos)} photos")
    return_freed_memory_promptly()  # process-wide: the daemon runs ingest in a process of its own
    results = []
    with own_pixel_limit(), ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(normalise, entry) for entry in photos]
        for done, future in enumerate(as_completed(futures), start=1):
            results.append(future.result())
            report(100.0 * done / len(futures), f"photo {done}/{len(futures)}")
    return results


def _split_duplicates(
    accepted: list[_Accepted], output_dir: Path
) -> tuple[list[_Accepted], list[_Rejected]]:
    """Of photos with identical pixels keep the first in name order; delete the others' copies."""
    first_by_digest: dict[str, _Accepted] = {}
    kept: list[_Accepted] = []
    duplicates: list[_Rejected] = []
    for item in sorted(accepted, key=lambda item: item.file):
        first = first_by_digest.setdefault(item.photo.pixel_digest, item)
        if first is item:
            kept.append(item)
        else:
            (output_dir / item.image).unlink()
            duplicates.append(_Rejected(item.file, f"duplicate of {first.file}"))
    return kept, duplicates


def output_names(relative_paths: Iterable[str]) -> dict[str, str]:
    """Flat, unique JPEG names: 'a/b/IMG_1.JPG' -> 'a__b__IMG_1.jpg'.

    Unusual characters become '_'; names stay unique on case-insensitive disks too, later
    paths in name order getting '-2', '-3'.
    """
    taken: set[str] = set()
    names: dict[str, str] = {}
    for path in sorted(relative_paths):
        parts = PurePosixPath(path).with_suffix("").parts
        stem = "__".join(_UNUSUAL_NAME_CHARACTERS.sub("_", part) for part in parts).lstrip(".")
        stem = stem.encode()[:_MAX_NAME_BYTES].decode(errors="ignore") or "photo"
        candidate, counter = f"{stem}.jpg", 1
        while candidate.casefold() in taken:
            counter += 1
            candidate = f"{stem}-{counter}.jpg"
        taken.add(candidate.casefold())
        names[path] = candidate
    return names


def _too_few_message(outcome: _Outcome) -> str:
    usable = len(outcome.accepted)
    noun = "photo" if usable == 1 else "photos"
    return (
        f"only {usable} usable {noun} ({outcome.found} found, {len(outcome.rejected)} rejected); "
        f"at least {MIN_PHOTOS} are needed"
    )


def _manifest(outcome: _Outcome) -> dict[str, Any]:
    return {
        "images": [
            {
                "file": item.file,
                "image": item.image,
                "width": item.photo.width,
                "height": item.photo.height,
                "original_width": item.photo.original_width,
                "original_height": item.photo.original_height,
                "focal_length_mm": item.photo.camera.focal_length_mm,
                "focal_length_35mm": item.photo.camera.focal_length_35mm,
                "make": item.photo.camera.make,
                "model": item.photo.camera.model,
            }
            for item in outcome.accepted
        ],
        "rejected": [{"file": item.file, "reason": item.reason} for item in outcome.rejected],
    }
