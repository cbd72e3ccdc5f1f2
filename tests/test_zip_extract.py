"""Safe extraction of zip sets: real archives, some of them hand-crafted to lie or to escape."""

from __future__ import annotations

import os
import stat
import struct
import warnings
import zipfile
from pathlib import Path

import pytest

from inbox_protocol.refusal import SetRefused
from inbox_protocol.zip_extract import NOT_A_ZIP, ZipLimits, extract_zip

GENEROUS = ZipLimits(max_files=10000, max_bytes=2 * 1024**3)

# Offsets of fields inside a local file header (PK\3\4) and a central directory header (PK\1\2).
LOCAL_FLAGS, CENTRAL_FLAGS = 6, 8
LOCAL_METHOD, CENTRAL_METHOD = 8, 10
LOCAL_UNCOMPRESSED_SIZE, CENTRAL_UNCOMPRESSED_SIZE = 22, 24


def write_zip(
    path: Path, entries: dict[str, bytes] | list[tuple[zipfile.ZipInfo | str, bytes]]
) -> Path:
    items = entries.items() if isinstance(entries, dict) else entries
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as writer, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name", on purpose
        for name, data in items:
            writer.writestr(name, data)
    return path


def patch_headers(path: Path, local_offset: int, central_offset: int, fmt: str, value: int) -> None:
    """Overwrite one field in every local and central header: how hostile archives are made."""
    data = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", local_offset), (b"PK\x01\x02", central_offset)):
        start = data.find(signature)
        while start != -1:
            struct.pack_into(fmt, data, start + offset, value)
            start = data.find(signature, start + 4)
    path.write_bytes(bytes(data))


def files_under(folder: Path) -> dict[str, bytes]:
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in files}


def refused(archive: Path, destination: Path, limits: ZipLimits = GENEROUS) -> str:
    with pytest.raises(SetRefused) as failure:
        extract_zip(archive, destination, limits)
    assert failure.value.hint
    return failure.value.message


def test_a_good_zip_is_extracted_with_its_folders(tmp_path):
    entries = {
        "./": b"",
        "IMG_1.jpg": b"one",
        "day 2/IMG_2.jpg": b"two" * 1000,
        "day 2/empty/": b"",
        "./a/b/c.jpg": b"three",
    }
    archive = write_zip(tmp_path / "set.zip", entries)

    extract_zip(archive, tmp_path / "out", GENEROUS)

    assert files_under(tmp_path / "out") == {
        "IMG_1.jpg": b"one",
        "day 2/IMG_2.jpg": b"two" * 1000,
        "a/b/c.jpg": b"three",
    }
    assert (tmp_path / "out" / "day 2" / "empty").is_dir()


def test_backslash_separators_from_windows_tools_become_folders(tmp_path):
    # a photo at the top too: an archive whose entries all sit in one folder is read as that folder
    archive = write_zip(tmp_path / "set.zip", {"IMG_0.jpg": b"zero", "day1\\IMG_1.jpg": b"one"})

    extract_zip(archive, tmp_path / "out", GENEROUS)

    assert files_under(tmp_path / "out") == {"IMG_0.jpg": b"zero", "day1/IMG_1.jpg": b"one"}


@pytest.mark.parametrize(
    "name",
    [
        "../evil.jpg",
        "photos/../../evil.jpg",
        "/tmp/evil.jpg",
        "C:/evil.jpg",
        "C:evil.jpg",
        "..\\evil.jpg",
        "a\\..\\..\\evil.jpg",
        "\\evil.jpg",
    ],
)
def test_entries_that_would_land_outside_are_refused_before_writing(tmp_path, name):
    archive = write_zip(tmp_path / "set.zip", {"IMG_1.jpg": b"fine", name: b"evil"})
    destination = tmp_path / "jobs" / "out"

    message = refused(archive, destination)

    assert f"'{name}'" in message and "outside the extraction folder" in message
    assert not destination.exists()  # checked before anything was written
    assert not any(path.name.endswith("evil.jpg") for path in tmp_path.rglob("*"))


def test_symlink_entries_are_refused(tmp_path):
    link = zipfile.ZipInfo("link.jpg")
    link.create_system = 3  # Unix: external_attr carries st_mode
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = write_zip(tmp_path / "set.zip", [("IMG_1.jpg", b"fine"), (link, b"/etc/passwd")])

    message = refused(archive, tmp_path / "out")

    assert message == "zip entry 'link.jpg' is a symbolic link; refused"
    assert not (tmp_path / "out").exists()


def test_too_many_entries_are_refused(tmp_path):
    archive = write_zip(tmp_path / "set.zip", {f"IMG_{i}.jpg": b"x" for i in range(4)})

    message = refused(archive, tmp_path / "out", ZipLimits(max_files=3, max_bytes=GENEROUS.max_bytes))

    assert message == "zip archive has 4 entries, over this server's limit of 3"


def test_too_many_bytes_declared_are_refused(tmp_path):
    archive = write_zip(tmp_path / "set.zip", {"zeros.jpg": bytes(2 * 1024 * 1024)})
    assert archive.stat().st_size < 10_000  # highly compressible: small archive, big content

    message = refused(archive, tmp_path / "out", ZipLimits(max_files=10, max_bytes=1024 * 1024))

    assert message == "zip archive unpacks to 2097152 bytes, over this server's limit of 1048576"
    assert not (tmp_path / "out").exists()


def test_a_bomb_whose_headers_lie_about_its_size_never_passes_the_limit(tmp_path):
    limit = 64 * 1024
    archive = write_zip(tmp_path / "set.zip", {"bomb.jpg": bytes(8 * 1024 * 1024)})
    patch_headers(archive, LOCAL_UNCOMPRESSED_SIZE, CENTRAL_UNCOMPRESSED_SIZE, "<I", 10)
    with zipfile.ZipFile(archive) as lying:
        assert lying.getinfo("bomb.jpg").file_size == 10  # the size check up front is fooled

    message = refused(archive, tmp_path / "out", ZipLimits(max_files=10, max_bytes=limit))

    assert "'bomb.jpg'" in message
    assert sum(len(data) for data in files_under(tmp_path / "out").values()) <= limit


@pytest.mark.parametrize("cut", [0, 10, 100, -30])
def test_truncated_or_foreign_files_are_not_zips(tmp_path, cut):
    good = write_zip(tmp_path / "good.zip", {"IMG_1.jpg": b"x" * 5000})
    archive = tmp_path / "set.zip"
    archive.write_bytes(good.read_bytes()[:cut] if cut else b"JFIF this is a photo, not a zip")

    assert refused(archive, tmp_path / "out") == NOT_A_ZIP


def test_encrypted_entries_are_refused(tmp_path):
    archive = write_zip(tmp_path / "set.zip", {"IMG_1.jpg": b"secret"})
    patch_headers(archive, LOCAL_FLAGS, CENTRAL_FLAGS, "<H", 0x1)

    assert refused(archive, tmp_path / "out") == "zip entry 'IMG_1.jpg' is encrypted; refused"


def test_unsupported_compression_is_refused_by_name(tmp_path):
    archive = write_zip(tmp_path / "set.zip", {"IMG_1.jpg": b"x" * 100})
    patch_headers(archive, LOCAL_METHOD, CENTRAL_METHOD, "<H", 9)  # Deflate64, as Windows writes it

    assert "'IMG_1.jpg' uses a compression method that cannot be read" in refused(archive, tmp_path / "out")


def test_corrupt_member_data_is_refused_by_name(tmp_path):
    archive = write_zip(tmp_path / "set.zip", {"IMG_1.jpg": os.urandom(4000)})
    data = bytearray(archive.read_bytes())
    data[100:140] = bytes(40)  # inside the compressed data of the only member
    archive.write_bytes(bytes(data))

    assert "zip entry 'IMG_1.jpg' is corrupt" in refused(archive, tmp_path / "out")


@pytest.mark.parametrize(
    "entries",
    [
        [("IMG_1.jpg", b"first"), ("IMG_1.jpg", b"second")],
        [("day1", b"a file"), ("day1/IMG_1.jpg", b"inside a file?")],
    ],
)
def test_entries_that_clash_are_refused(tmp_path, entries):
    archive = write_zip(tmp_path / "set.zip", entries)

    assert "cannot be created" in refused(archive, tmp_path / "out")
