"""What a .zip set is: its photos and its job.toml, read below the one top folder that "Compress"
on macOS and Windows puts everything in, and nothing else extracted, however large; job.toml read
with a small cap, from a zip or a folder. Real archives, then the real daemon."""

from __future__ import annotations

import os
import stat
import threading
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from daemon.intake.set_intake import could_be_set
from daemon.jobs.options import JobOptionsError, read_job_options
from inbox_protocol.photo_set import FileRules, walk_set
from inbox_protocol.refusal import SetRefused
from inbox_protocol.set_limits import PhotoSize, zip_photos
from inbox_protocol.zip_extract import NOT_A_ZIP, ZipLimits, extract_zip
from tests.daemon_harness import DaemonProcess, make_layout
from tests.photo_sets import small_set

NO_RULES = FileRules()
GENEROUS = ZipLimits(max_files=1000, max_bytes=10**9)
MIB = 1024 * 1024


def zip_with(path: Path, entries: list[tuple[str, bytes]], big: tuple[str, int] | None = None) -> Path:
    """A deflated archive; ``big`` adds an entry of that many zero bytes, written 1 MiB at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
        if big is not None:
            name, size = big
            with archive.open(name, "w", force_zip64=True) as member:
                for start in range(0, size, MIB):
                    member.write(bytes(min(MIB, size - start)))
    return path


def files_under(folder: Path) -> dict[str, bytes]:
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in files}


def folder_size(folder: Path) -> int:
    """Bytes in the files under ``folder`` while the daemon works in it: a file or a whole folder
    (a finished claim's) may go while this walks, which os.walk skips and rglob raises on."""
    total = 0
    for parent, _, names in os.walk(folder):
        for name in names:
            try:
                found = os.lstat(os.path.join(parent, name))
            except OSError:
                continue  # removed while looking
            total += found.st_size if stat.S_ISREG(found.st_mode) else 0
    return total


# --- only photos and job.toml are extracted ----------------------------------------------------

LITTER = [
    ("__MACOSX/._IMG_1.jpg", b"apple double"),
    (".DS_Store", b"finder"),
    ("Thumbs.db", b"windows"),
    ("READY", b""),
    ("status.json", b"{}"),
    ("upload.jpg.part", b"half"),
    (".cache/thumb.jpg", b"hidden folder"),
]


def test_only_photos_and_job_toml_are_extracted_and_a_huge_other_entry_is_never_written(tmp_path):
    archive = zip_with(
        tmp_path / "set.zip",
        [("IMG_1.jpg", b"one"), ("day2/IMG_2.jpg", b"two"), ("job.toml", b"iterations = 3\n")] + LITTER,
        big=(".cache/notes.bin", 200 * MIB),  # not a photo: ingest never looks into hidden folders
    )
    assert archive.stat().st_size < 1_000_000

    extract_zip(archive, tmp_path / "out", ZipLimits(max_files=100, max_bytes=MIB))

    assert files_under(tmp_path / "out") == {
        "IMG_1.jpg": b"one", "day2/IMG_2.jpg": b"two", "job.toml": b"iterations = 3\n",
    }


def test_a_photo_over_max_file_bytes_is_refused_before_anything_is_written(tmp_path):
    archive = zip_with(tmp_path / "set.zip", [("IMG_1.jpg", b"x" * 100), ("IMG_2.jpg", b"y" * 2000)])

    with pytest.raises(SetRefused) as failure:
        extract_zip(archive, tmp_path / "out", ZipLimits(max_files=10, max_bytes=MIB, max_file_bytes=1000))

    assert failure.value.message == (
        "zip entry 'IMG_2.jpg' unpacks to 2000 bytes; a photo may be at most 1000 bytes on this server"
    )
    assert not (tmp_path / "out").exists()


# --- one top folder is read as the set ----------------------------------------------------------

MACOS = [  # Finder's "Compress": folder entries, and AppleDouble litter beside the folder
    ("garden/", b""), ("garden/IMG_1.jpg", b"one"), ("garden/day2/", b""), ("garden/day2/IMG_2.jpg", b"two"),
    ("garden/job.toml", b'stop_after = "sfm"\n'), ("garden/.DS_Store", b"finder"),
    ("__MACOSX/", b""), ("__MACOSX/garden/", b""), ("__MACOSX/garden/._IMG_1.jpg", b"apple double"),
    ("__MACOSX/garden/day2/._IMG_2.jpg", b"apple double"),
]
WINDOWS = [  # Explorer's "Send to > Compressed folder": no folder entries; some tools write backslashes
    ("garden/IMG_1.jpg", b"one"), ("garden\\day2\\IMG_2.jpg", b"two"), ("garden/JOB.TOML", b'stop_after = "sfm"\n'),
]


@pytest.mark.parametrize("entries", [MACOS, WINDOWS], ids=["macos", "windows"])
def test_a_zip_of_one_folder_is_read_as_that_folder(tmp_path, entries):
    archive = zip_with(tmp_path / "garden.zip", entries)

    assert zip_photos(archive, NO_RULES) == (PhotoSize("IMG_1.jpg", 3), PhotoSize("day2/IMG_2.jpg", 3))
    assert read_job_options(archive, NO_RULES)["stop_after"] == "sfm"
    extract_zip(archive, tmp_path / "out", GENEROUS)
    extracted = files_under(tmp_path / "out")
    assert extracted.pop("IMG_1.jpg") == b"one" and extracted.pop("day2/IMG_2.jpg") == b"two"
    assert list(extracted) in (["job.toml"], ["JOB.TOML"])
    listing = walk_set(tmp_path / "out", tmp_path / "out", NO_RULES)
    assert [photo.path for photo in listing.photos] == ["IMG_1.jpg", "day2/IMG_2.jpg"]


def test_only_an_archive_wholly_in_one_folder_is_read_as_that_folder(tmp_path):
    # below the set's top, job.toml is just a file (a folder set's is too): never read as options
    broken = ("garden/job.toml", b"x = ")
    cases = {
        "one": ([("garden/IMG_1.jpg", b"1"), ("Thumbs.db", b"litter"), ("garden/job.toml", b"iterations = 3\n")],
                ["IMG_1.jpg"], 3),
        # a file beside the folder: the archive itself is the set's folder
        "beside": ([("garden/IMG_1.jpg", b"1"), broken, ("IMG_0.jpg", b"0")], ["IMG_0.jpg", "garden/IMG_1.jpg", "garden/job.toml"], None),
        "two": ([("garden/IMG_1.jpg", b"1"), ("yard/IMG_2.jpg", b"2"), broken],
                ["garden/IMG_1.jpg", "garden/job.toml", "yard/IMG_2.jpg"], None),
        "hidden": ([(".garden/IMG_1.jpg", b"1"), (".garden/job.toml", b"x = ")], [], None),  # never looked into
    }
    for name, (entries, photos, iterations) in cases.items():
        archive = zip_with(tmp_path / f"{name}.zip", entries)
        assert [photo.name for photo in zip_photos(archive, NO_RULES)] == photos, name
        assert read_job_options(archive, NO_RULES)["iterations"] == iterations, name
        extract_zip(archive, tmp_path / name, GENEROUS)
        assert sorted(files_under(tmp_path / name)) == sorted(photos + (["job.toml"] if iterations else [])), name


def test_macos_litter_folders_are_junk_everywhere(tmp_path):
    folder = tmp_path / "inbox" / "garden"
    (folder / "__MACOSX").mkdir(parents=True)
    (folder / "__MACOSX" / "IMG_9.jpg").write_bytes(b"not a photo of the set")
    (folder / "IMG_1.jpg").write_bytes(b"one")

    assert [photo.path for photo in walk_set(folder, folder.parent, NO_RULES).photos] == ["IMG_1.jpg"]
    assert not could_be_set("__MACOSX", NO_RULES)  # left in the inbox by unzipping on a Mac


# --- job.toml: cap, BOM, broken zip, a folder --------------------------------------------------


def test_a_huge_job_toml_in_a_zip_is_refused_without_reading_it(tmp_path):
    archive = zip_with(tmp_path / "set.zip", [("IMG_1.jpg", b"one")], big=("job.toml", 50 * MIB))
    assert archive.stat().st_size < 200_000

    tracemalloc.start()
    try:
        with pytest.raises(JobOptionsError) as failure:
            read_job_options(archive, NO_RULES)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert str(failure.value).startswith("job.toml is larger than 64 KB; ")
    assert peak < 2 * MIB


@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_job_toml_is_capped_at_64_kb(tmp_path, kind):
    fits = b'stop_after = "sfm"\n' + b"#" * (64 * 1024 - 20) + b"\n"
    assert len(fits) == 64 * 1024
    for name, data in (("fits", fits), ("over", fits + b"\n")):
        if kind == "folder":
            (tmp_path / name).mkdir()
            (tmp_path / name / "job.toml").write_bytes(data)
            source = tmp_path / name
        else:
            source = zip_with(tmp_path / f"{name}.zip", [("job.toml", data)])
        if name == "fits":
            assert read_job_options(source, NO_RULES)["stop_after"] == "sfm"
        else:
            with pytest.raises(JobOptionsError, match=r"^job\.toml is larger than 64 KB; "):
                read_job_options(source, NO_RULES)


@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_a_job_toml_with_a_byte_order_mark_is_read(tmp_path, kind):
    text = '\ufeffstop_after = "sfm"\r\niterations = 7\r\n'.encode()  # Notepad's "UTF-8 with BOM"
    if kind == "folder":
        (tmp_path / "set").mkdir()
        (tmp_path / "set" / "job.toml").write_bytes(text)
        source = tmp_path / "set"
    else:
        source = zip_with(tmp_path / "set.zip", [("job.toml", text)])

    options = read_job_options(source, NO_RULES)

    assert (options["stop_after"], options["iterations"]) == ("sfm", 7)


@pytest.mark.parametrize("cut", [0, 100, -30])
def test_a_broken_zip_says_it_is_not_a_zip(tmp_path, cut):
    good = zip_with(tmp_path / "good.zip", [("IMG_1.jpg", b"x" * 5000), ("job.toml", b"iterations = 3\n")])
    archive = tmp_path / "set.zip"
    archive.write_bytes(good.read_bytes()[:cut] if cut else b"JFIF this is a photo, not a zip")

    with pytest.raises(JobOptionsError) as failure:
        read_job_options(archive, NO_RULES)

    assert str(failure.value) == NOT_A_ZIP
    assert "zip tool" in failure.value.hint


@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_a_job_toml_folder_fails_with_that_reason(tmp_path, kind):
    if kind == "folder":
        (tmp_path / "set" / "job.toml").mkdir(parents=True)
        source = tmp_path / "set"
    else:
        source = zip_with(tmp_path / "set.zip", [("IMG_1.jpg", b"one"), ("job.toml/", b"")])

    with pytest.raises(JobOptionsError) as failure:
        read_job_options(source, NO_RULES)

    assert str(failure.value).startswith("job.toml is a folder, not a file")


# --- through the real daemon -------------------------------------------------------------------


@pytest.mark.slow
def test_the_daemon_reads_a_zipped_folder_and_never_writes_a_huge_entry(tmp_path):
    layout = make_layout(tmp_path, max_set_mb=1)
    photos = small_set(tmp_path / "made", views=4, stop_after=None)
    photo_entries = [(photo.name, photo.read_bytes()) for photo in photos]
    stop_after_ingest = ("job.toml", b'stop_after = "ingest"\n')
    # Finder's "Compress" of a folder: everything below garden/, litter beside it; a file that
    # is no photo, to see the name ingest gives it
    zip_with(layout.inbox / "garden.zip",
             [(f"garden/{name}", data) for name, data in photo_entries + [stop_after_ingest]]
             + [("garden/notes.txt", b"not a photo"), ("__MACOSX/garden/._notes.txt", b"apple double")])
    # 300 MB of zeros in a hidden folder, in a 0.3 MB archive: never a photo, never written
    flood = zip_with(layout.inbox / "flood.zip", photo_entries + [stop_after_ingest],
                     big=(".cache/notes.bin", 300 * MIB))
    assert flood.stat().st_size < 1_000_000

    peak = 0
    finished = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not finished.is_set():
            peak = max(peak, folder_size(layout.state))
            finished.wait(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with DaemonProcess(layout, until_idle=True, paced=True) as daemon:
            assert daemon.wait(120) == 0, daemon.log()
    finally:
        finished.set()
        sampler.join()

    garden = layout.status("garden.zip")
    assert garden["state"] == "done" and garden["message"] == "done after ingest", garden
    assert garden["images"]["accepted"] == 4
    assert garden["images"]["rejected"][0]["file"] == "notes.txt"
    flooded = layout.status("flood.zip")
    assert flooded["state"] == "done" and flooded["images"]["accepted"] == 4, flooded
    assert peak < 5_000_000, f"the state folder reached {peak} bytes"
