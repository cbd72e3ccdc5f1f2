"""Set size limits (max_photos, max_file_mb, max_set_mb): measured on real files and real
archives, then through the real daemon, where a set over a limit fails at ingest and SfM never
starts."""

from __future__ import annotations

import json
import os
import struct
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from inbox_protocol.photo_set import FileRules, walk_set
from inbox_protocol.refusal import SetRefused
from inbox_protocol.set_limits import (
    LimitViolation,
    PhotoSize,
    SetLimits,
    first_violation,
    listed_photos,
    zip_photos,
)
from inbox_protocol.zip_extract import ZipLimits, extract_zip
from stages.base import StageContext, StageFailed
from stages.ingest import IngestStage
from tests.daemon_harness import DaemonProcess, make_layout, stage_starts
from tests.file_states import file_states
from tests.photo_sets import small_set

NO_RULES = FileRules()
SMALL = SetLimits(max_photos=3, max_file_mb=0.01, max_set_mb=0.025)  # 10,000 and 25,000 bytes


def write(path: Path, size: int) -> Path:
    """A file of ``size`` bytes; large ones are sparse (no disk used, but a real size)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as output:
        output.truncate(size)
    return path


def photos(*sizes: int) -> list[PhotoSize]:
    return [PhotoSize(f"IMG_{index:04d}.jpg", size) for index, size in enumerate(sizes, start=1)]


def folder_violation(folder: Path, limits: SetLimits, rules: FileRules = NO_RULES) -> LimitViolation | None:
    return first_violation(listed_photos(walk_set(folder, folder.parent, rules)), limits)


# --- what counts as a photo -------------------------------------------------------------------

# Everything a set may hold beside its photos: markers, options, our status file, OS and sync
# litter (files and whole folders), files still being written, hidden folders, user patterns.
NOT_PHOTOS = (
    "READY", "ready.txt", ".ready", "CANCEL", "RETRY", "job.toml", "status.json",
    ".DS_Store", "Thumbs.db", "desktop.ini", "._IMG_0001.jpg", "__MACOSX/trip/._IMG_0002.jpg",
    "@eaDir/IMG_0001.jpg/SYNOPHOTO_THUMB_XL.jpg", "#recycle/old.jpg",
    ".IMG_0009.jpg.a1B2c3", "IMG_0010.jpg.part", "IMG_0011.jpg.crdownload", "~$notes.docx",
    ".~tmp~/IMG_0012.jpg", ".partial/IMG_0013.jpg", "IMG_0001.xmp",
)
PHOTOS = ("IMG_0001.jpg", "trip/IMG_0002.JPG", "trip/deeper/IMG_0003.png", "trip/READY")


def test_a_folder_counts_exactly_the_files_ingest_takes_as_photos(tmp_path):
    folder = tmp_path / "inbox" / "set1"
    for name in NOT_PHOTOS:
        write(folder / name, 80_000_000)  # each far over max_file_mb: none may count
    for index, name in enumerate(PHOTOS):
        write(folder / name, 1000 + index)
    listed = listed_photos(walk_set(folder, folder.parent, FileRules(("*.xmp",))))
    assert listed == tuple(
        PhotoSize(name, 1000 + index) for index, name in sorted(enumerate(PHOTOS), key=lambda item: item[1])
    )
    assert folder_violation(folder, SetLimits(max_photos=4), FileRules(("*.xmp",))) is None
    assert folder_violation(folder, SetLimits(max_photos=3), FileRules(("*.xmp",))).message == (
        "the set has 4 photos; at most 3 are allowed on this server"
    )
    (folder / "status.json").unlink()  # not a status document: the autouse check would refuse it


def test_the_count_is_the_one_ingest_reports_as_found(tmp_path):
    folder = small_set(tmp_path / "inbox" / "set1", views=4, ready=True)[0].parent  # with job.toml
    write(folder / ".DS_Store", 10)
    write(folder / "upload.jpg.part", 10)
    result = IngestStage().run(make_context(tmp_path, folder), lambda *_: None)
    assert result.images["found"] == 4
    assert len(listed_photos(walk_set(folder, folder.parent, NO_RULES))) == 4


def zip_with(path: Path, entries: list[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return path


def test_a_zip_counts_the_same_photos_its_extraction_would_give(tmp_path):
    entries = [(name, b"x" * (100 + index)) for index, name in enumerate(NOT_PHOTOS + PHOTOS)]
    entries += [
        ("trip/", b""),  # a folder entry
        ("windows\\IMG_0020.jpg", b"y" * 20),  # a Windows tool's backslashes
        ("./dot/IMG_0021.jpg", b"z" * 21),
    ]
    archive = zip_with(tmp_path / "inbox" / "set1.zip", entries)
    rules = FileRules(("*.xmp",))

    counted = zip_photos(archive, rules)

    extracted = tmp_path / "extracted"
    extract_zip(archive, extracted, ZipLimits(max_files=1000, max_bytes=10**6), rules)
    walked = listed_photos(walk_set(extracted, extracted, rules))
    assert counted == walked
    assert [photo.name for photo in counted] == sorted(
        PHOTOS + ("windows/IMG_0020.jpg", "dot/IMG_0021.jpg")
    )
    # nothing else was written: no markers, litter, hidden folders or status.json; job.toml only
    written = sorted(path.relative_to(extracted).as_posix() for path in extracted.rglob("*") if path.is_file())
    assert written == sorted([photo.name for photo in counted] + ["job.toml"])


def test_a_zip_symlink_entry_is_not_counted(tmp_path):
    link = zipfile.ZipInfo("IMG_0002.jpg")
    link.external_attr = (0o120777 << 16)
    archive = zip_with(tmp_path / "set1.zip", [("IMG_0001.jpg", b"a" * 10), (link, b"/etc/passwd")])
    assert zip_photos(archive, NO_RULES) == (PhotoSize("IMG_0001.jpg", 10),)


def test_a_file_that_is_not_a_zip_is_refused_as_such(tmp_path):
    archive = write(tmp_path / "set1.zip", 100)
    with pytest.raises(SetRefused) as failure:
        zip_photos(archive, NO_RULES)
    assert failure.value.message == "not a valid zip archive (truncated or still being copied?)"


# --- each limit -------------------------------------------------------------------------------


def test_max_photos_allows_exactly_the_limit(tmp_path):
    folder = tmp_path / "inbox" / "set1"
    for index in range(3):
        write(folder / f"IMG_{index}.jpg", 10)
    assert folder_violation(folder, SMALL) is None
    write(folder / "IMG_3.jpg", 10)
    violation = folder_violation(folder, SMALL)
    assert violation.message == "the set has 4 photos; at most 3 are allowed on this server"
    assert "at most 3" in violation.hint and "operator" in violation.hint and "max_photos" not in violation.hint
    assert violation.setting == "max_photos"  # for the journal: the person cannot change it


def test_max_file_mb_allows_exactly_the_limit_and_names_the_first_photo_over_it(tmp_path):
    folder = tmp_path / "inbox" / "set1"
    write(folder / "IMG_b.jpg", 10_000)
    assert folder_violation(folder, SMALL) is None
    write(folder / "IMG_c.jpg", 10_001)
    violation = folder_violation(folder, SMALL)
    # one byte over must not read as the limit itself
    assert violation.message == "IMG_c.jpg is 0.010001 MB; photos may be at most 0.01 MB on this server"
    assert "operator" in violation.hint and "max_file_mb" not in violation.hint and violation.setting == "max_file_mb"
    write(folder / "sub/IMG_a.jpg", 12_000)  # after the others in name order
    write(folder / "IMG_d.jpg", 15_000)
    assert folder_violation(folder, replace(SMALL, max_photos=10)).message == (
        "IMG_c.jpg is 0.010001 MB; photos may be at most 0.01 MB on this server; 2 other photos are over it too"
    )


def test_the_default_limits_in_megabytes_as_a_user_reads_them(tmp_path):
    folder = tmp_path / "inbox" / "set1"
    write(folder / "IMG_0041.jpg", 50_000_000)  # exactly 50 MB: allowed
    assert folder_violation(folder, SetLimits()) is None
    write(folder / "IMG_0042.jpg", 73_400_000)
    write(folder / "IMG_0043.jpg", 51_000_000)
    assert folder_violation(folder, SetLimits()).message == (
        "IMG_0042.jpg is 73.4 MB; photos may be at most 50 MB on this server; 1 other photo is over it too"
    )

    heavy = tmp_path / "inbox" / "heavy"
    for index in range(100):
        write(heavy / f"IMG_{index:04d}.jpg", 50_000_000)
    assert folder_violation(heavy, SetLimits()) is None  # 5000 MB exactly
    write(heavy / "IMG_0100.jpg", 3_456_789)
    violation = folder_violation(heavy, SetLimits())
    assert violation.message == (
        "the set's 101 photos come to 5003.5 MB; at most 5000 MB in total are allowed on this server"
    )
    assert "operator" in violation.hint and "max_set_mb" not in violation.hint and violation.setting == "max_set_mb"


def test_max_set_mb_allows_exactly_the_limit(tmp_path):
    folder = tmp_path / "inbox" / "set1"
    for name, size in (("IMG_1.jpg", 9_000), ("IMG_2.jpg", 8_000), ("sub/IMG_3.jpg", 8_000)):
        write(folder / name, size)
    assert folder_violation(folder, SMALL) is None  # 25,000 bytes
    write(folder / "IMG_1.jpg", 9_001)
    assert folder_violation(folder, SMALL).message == (
        "the set's 3 photos come to 0.025001 MB; at most 0.025 MB in total are allowed on this server"
    )


def test_limits_are_checked_in_order_count_then_one_photo_then_total():
    over_all = photos(20_000, 20_000, 20_000, 20_000)
    assert first_violation(over_all, SMALL).message.startswith("the set has 4 photos")
    assert first_violation(over_all[:3], SMALL).message.startswith("IMG_0001.jpg is 0.02 MB")
    assert first_violation(photos(9_000, 9_000, 9_000), SMALL).message.startswith("the set's 3 photos come to 0.027 MB")
    assert first_violation([], SMALL) is None


def test_a_name_that_is_not_utf8_still_fits_in_the_message(tmp_path):
    folder = tmp_path / "inbox" / "set1"
    write(folder / os.fsdecode(b"caf\xe9.jpg"), 20_000)
    message = folder_violation(folder, SMALL).message
    assert message.startswith("caf\\xe9.jpg is 0.02 MB")  # the byte shown exactly (inbox_protocol/file_names.py)
    json.dumps(message).encode("utf-8")


def test_limits_come_from_the_stage_settings_with_defaults_for_missing_keys():
    assert SetLimits.from_settings({}) == SetLimits(max_photos=500, max_file_mb=50.0, max_set_mb=5000.0)
    assert SetLimits.from_settings({"max_photos": 7, "max_file_mb": 1, "max_set_mb": 2.5}) == SetLimits(7, 1.0, 2.5)


def test_zip_limits_use_the_declared_sizes_and_count_only_photos(tmp_path):
    archive = zip_with(tmp_path / "set1.zip", [
        ("IMG_0001.jpg", b"\0" * 60_000_000),  # compresses to a few tens of kilobytes
        ("__MACOSX/._IMG_0001.jpg", b"\0" * 70_000_000),
        ("READY", b""),
    ])
    assert archive.stat().st_size < 1_000_000
    assert zip_photos(archive, NO_RULES) == (PhotoSize("IMG_0001.jpg", 60_000_000),)
    assert first_violation(zip_photos(archive, NO_RULES), SetLimits()).message == (
        "IMG_0001.jpg is 60.0 MB; photos may be at most 50 MB on this server"
    )


# --- in the ingest stage ----------------------------------------------------------------------

SETTINGS = {"threads": 1, "max_image_pixels": 178956970, "zip_max_bytes": 2 * 1024**3,
            "zip_max_files": 10000, "ignore_patterns": []}


def make_context(tmp_path: Path, source: Path, **settings) -> StageContext:
    job_dir = tmp_path / "jobs" / "t-1"
    (job_dir / "ingest").mkdir(parents=True, exist_ok=True)
    return StageContext(
        job_id="t-1", set_name=source.name, source=source, inbox=tmp_path / "inbox", job_dir=job_dir,
        output_dir=job_dir / "ingest",
        options={"max_image_size": 1600, "original_resolution": False, "iterations": 10, "stop_after": "publish"},
        settings={**SETTINGS, **settings},
    )


def test_ingest_refuses_a_folder_over_a_limit_before_reading_any_photo(tmp_path):
    folder = tmp_path / "inbox" / "set1"
    small_set(folder, views=4)
    before = file_states(folder)
    context = make_context(tmp_path, folder, max_photos=3)
    calls = []
    with pytest.raises(StageFailed) as failure:
        IngestStage().run(context, lambda *args: calls.append(args))
    assert failure.value.message == "the set has 4 photos; at most 3 are allowed on this server"
    assert failure.value.hint
    assert calls == []  # not even "checking 4 photos"
    assert list(context.output_dir.iterdir()) == []  # no images/ folder, no manifest
    assert file_states(folder) == before


def test_ingest_refuses_a_zip_over_a_limit_before_extracting_anything(tmp_path):
    made = small_set(tmp_path / "made", views=4)
    archive = zip_with(tmp_path / "inbox" / "set1.zip", [(photo.name, photo.read_bytes()) for photo in made])
    # the central directory says the first photo unpacks to 73.4 MB; its data is still the small
    # photo, which extraction would give (zipfile stops at the data's end, the CRC matches)
    patch_central_sizes(archive, made[0].name, 73_400_000)
    before = file_states(archive.parent)
    context = make_context(tmp_path, archive)
    calls = []
    with pytest.raises(StageFailed) as failure:
        IngestStage().run(context, lambda *args: calls.append(args))
    assert failure.value.message == f"{made[0].name} is 73.4 MB; photos may be at most 50 MB on this server"
    assert calls == []  # not even "extracting zip archive"
    assert list(context.output_dir.iterdir()) == []
    assert file_states(archive.parent) == before


def patch_central_sizes(archive: Path, name: str, size: int) -> None:
    """Set one entry's uncompressed size in its central directory header (PK\\1\\2, offset 24)."""
    data = bytearray(archive.read_bytes())
    start = data.find(b"PK\x01\x02")
    while start != -1:
        name_length = struct.unpack_from("<H", data, start + 28)[0]
        if data[start + 46:start + 46 + name_length] == name.encode():
            struct.pack_into("<I", data, start + 24, size)
        start = data.find(b"PK\x01\x02", start + 4)
    archive.write_bytes(bytes(data))
    with zipfile.ZipFile(archive) as opened:
        assert opened.getinfo(name).file_size == size


# --- through the real daemon ------------------------------------------------------------------



def pad(photo: Path, size: int) -> None:
    """A real photo with bytes appended (JPEG readers ignore them): a larger file, same pixels."""
    data = photo.read_bytes()
    assert len(data) < size
    photo.write_bytes(data + b"\0" * (size - len(data)))


def paced_set(folder: Path, views: int) -> list[Path]:
    """Photos and a job.toml for the paced pipeline: SfM would follow ingest within a second."""
    made = small_set(folder, views=views, stop_after=None)
    (folder / "job.toml").write_text("iterations = 3\n")
    return made


def assert_refused_before_any_stage(layout, daemon, set_name: str, message: str) -> None:
    """Refused as the set became complete, before it was queued: no stage ran (ingest checks
    again, for `instarecon retry` and sets changed after queueing: the tests above)."""
    document = layout.status(set_name)
    job_id = document["job_id"]
    assert stage_starts(layout, job_id, "ingest") == 0
    assert not (layout.state / "jobs" / job_id).exists()
    assert document["state"] == "failed", document
    assert document["error"]["stage"] == "ingest"
    assert document["error"]["message"] == message
    assert document["error"]["hint"]
    assert document["stages"]["ingest"]["state"] == "failed"
    assert document["stages"]["sfm"]["state"] == "pending"
    assert stage_starts(layout, job_id, "sfm") == 0
    assert not (layout.state / "jobs" / job_id / "sfm").exists()
    assert not (layout.state / "jobs" / job_id / "ingest" / "images").exists()
    assert layout.outbox_status(job_id)["error"]["message"] == message
    assert message in daemon.log()  # the journal


@pytest.mark.slow
def test_the_daemon_fails_each_set_over_a_limit_before_any_stage_and_runs_the_one_within(tmp_path):
    layout = make_layout(tmp_path, max_photos=5, max_file_mb=0.05, max_set_mb=0.1)
    paced_set(layout.inbox / "crowd", views=6)
    bulky = paced_set(layout.inbox / "bulky", views=4)
    pad(bulky[1], 60_000)
    for photo in paced_set(layout.inbox / "heavy", views=4):
        pad(photo, 30_000)
    made = paced_set(tmp_path / "made", views=6)
    zip_with(layout.inbox / "crowd.zip", [("job.toml", b"iterations = 3\n")]
             + [(f"trip/{photo.name}", photo.read_bytes()) for photo in made])
    # exactly max_photos photos, and a junk file over max_file_mb that must not count
    fine = paced_set(layout.inbox / "fine", views=5)
    write(layout.inbox / "fine" / ".DS_Store", 200_000)
    for name in ("crowd", "bulky", "heavy", "fine"):
        (layout.inbox / name / "READY").touch()
    before = file_states(layout.inbox)

    with DaemonProcess(layout, until_idle=True, paced=True) as daemon:
        assert daemon.wait(180) == 0, daemon.log()

    assert_refused_before_any_stage(layout, daemon, "crowd", "the set has 6 photos; at most 5 are allowed on this server")
    assert_refused_before_any_stage(layout, daemon, "crowd.zip", "the set has 6 photos; at most 5 are allowed on this server")
    assert_refused_before_any_stage(
        layout, daemon, "bulky", f"{bulky[1].name} is 0.06 MB; photos may be at most 0.05 MB on this server"
    )
    assert_refused_before_any_stage(
        layout, daemon, "heavy",
        "the set's 4 photos come to 0.12 MB; at most 0.1 MB in total are allowed on this server",
    )
    passed = layout.status("fine")
    assert passed["state"] == "done", passed
    assert passed["images"]["accepted"] == len(fine) == 5
    assert stage_starts(layout, passed["job_id"], "sfm") == 1  # the paced SfM does run for a set within
    after = file_states(layout.inbox)
    assert {name: value for name, value in after.items() if not name.endswith("status.json")} == before


@pytest.mark.slow
def test_the_daemon_applies_the_default_limits(tmp_path):
    layout = make_layout(tmp_path)  # max_photos, max_file_mb and max_set_mb not set
    paced_set(layout.inbox / "tall", views=4)
    write(layout.inbox / "tall" / "IMG_0042.jpg", 73_400_000)  # sparse: 73.4 MB of nothing
    (layout.inbox / "tall" / "READY").touch()
    before = file_states(layout.inbox)

    with DaemonProcess(layout, until_idle=True, paced=True) as daemon:
        assert daemon.wait(120) == 0, daemon.log()

    assert_refused_before_any_stage(
        layout, daemon, "tall", "IMG_0042.jpg is 73.4 MB; photos may be at most 50 MB on this server"
    )
    after = file_states(layout.inbox)
    assert {name: value for name, value in after.items() if not name.endswith("status.json")} == before
