"""The ingest stage, run in-process on real files (and once as the real child process)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.ExifTags import GPS, IFD, Base

from stages.base import StageContext, StageFailed, StageResult
from stages.ingest import IngestStage, output_names

REPO_ROOT = Path(__file__).resolve().parents[1]
OPTIONS = {
    "max_image_size": 1600,
    "original_resolution": False,
    "iterations": 1000,
    "stop_after": "publish",
}
SETTINGS = {
    "threads": 2,
    "max_image_pixels": 178956970,
    "zip_max_bytes": 2 * 1024**3,
    "zip_max_files": 10000,
    "ignore_patterns": [],
}


class ProgressRecorder:
    """Stands in for the child's stdout reporter."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str]] = []

    def __call__(self, percent: float, message: str) -> None:
        self.calls.append((percent, message))


def make_context(
    tmp_path: Path, source: Path, options: dict | None = None, settings: dict | None = None
) -> StageContext:
    job_dir = tmp_path / "jobs" / "t-1"
    output_dir = job_dir / "ingest"
    output_dir.mkdir(parents=True, exist_ok=True)
    return StageContext(
        job_id="t-1",
        set_name=source.name,
        source=source,
        inbox=tmp_path / "inbox",
        job_dir=job_dir,
        output_dir=output_dir,
        options={**OPTIONS, **(options or {})},
        settings={**SETTINGS, **(settings or {})},
    )


def run_ingest(
    tmp_path: Path, source: Path, **overrides
) -> tuple[StageResult, ProgressRecorder, StageContext]:
    context = make_context(tmp_path, source, **overrides)
    recorder = ProgressRecorder()
    return IngestStage().run(context, recorder), recorder, context


def noise(size: tuple[int, int] = (160, 120), seed: int = 0) -> Image.Image:
    """Random pixels: every seed gives a photo that is no duplicate of another."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def halves(left: tuple[int, ...] | int, right: tuple[int, ...] | int, mode: str = "RGB") -> Image.Image:
    """160x120 in two flat halves, so that colours survive JPEG and a rotation shows."""
    image = Image.new(mode, (160, 120), left)
    image.paste(Image.new(mode, (80, 120), right), (80, 0))
    return image


def save(image: Image.Image, path: Path, **save_args) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **save_args)
    return path


def make_set(tmp_path: Path, count: int = 3, name: str = "set1", first_seed: int = 100) -> Path:
    folder = tmp_path / "inbox" / name
    for index in range(count):
        save(noise(seed=first_seed + index), folder / f"good_{index + 1}.jpg")
    return folder


def manifest_of(context: StageContext) -> dict:
    return json.loads((context.output_dir / "manifest.json").read_text())


def rejected_reasons(result: StageResult) -> dict[str, str]:
    return {item["file"]: item["reason"] for item in result.images["rejected"]}


def output_image(context: StageContext, source_file: str) -> Image.Image:
    entry = next(item for item in manifest_of(context)["images"] if item["file"] == source_file)
    return Image.open(context.output_dir / entry["image"])


def close_to(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 4) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected))


# --- the happy path -------------------------------------------------------------------


def test_good_set_gives_images_manifest_result_and_progress(tmp_path):
    folder = tmp_path / "inbox" / "set1"
    save(noise(seed=1), folder / "IMG_1.jpg")
    save(noise(seed=2), folder / "IMG_2.png")
    save(noise(seed=3), folder / "IMG_3.tif")
    save(noise(seed=4), folder / "IMG_4.webp", lossless=True)
    save(noise(seed=5), folder / ".DS_Store", format="PNG")  # junk: never a candidate
    (folder / "ready").write_text("")

    result, recorder, context = run_ingest(tmp_path, folder)

    assert result.metrics["found"] == 4
    assert result.metrics["accepted"] == 4
    assert result.metrics["rejected"] == 0
    assert result.metrics["seconds"] >= 0
    assert result.outputs == {"images": "ingest/images", "manifest": "ingest/manifest.json",
                              "digests": "ingest/photo-digests.json", "cover": "ingest/cover.jpg"}
    # each photo's bytes, as a retry compares them with the set (the junk file is no photo)
    digests = json.loads((context.job_dir / result.outputs["digests"]).read_text())
    assert digests == {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
                       for name in ("IMG_1.jpg", "IMG_2.png", "IMG_3.tif", "IMG_4.webp")}
    assert result.to_outbox == ("cover",)
    assert result.warnings == ()
    assert result.images == {"found": 4, "accepted": 4, "rejected": []}
    manifest = manifest_of(context)
    assert [item["file"] for item in manifest["images"]] == ["IMG_1.jpg", "IMG_2.png", "IMG_3.tif", "IMG_4.webp"]
    assert manifest["rejected"] == []
    first = manifest["images"][0]
    assert first == {
        "file": "IMG_1.jpg",
        "image": "images/IMG_1.jpg",
        "width": 160,
        "height": 120,
        "original_width": 160,
        "original_height": 120,
        "focal_length_mm": None,
        "focal_length_35mm": None,
        "make": None,
        "model": None,
    }
    for item in manifest["images"]:
        with Image.open(context.output_dir / item["image"]) as written:
            assert (written.format, written.mode, written.size) == ("JPEG", "RGB", (160, 120))
    assert sorted(os.listdir(context.output_dir)) == ["cover.jpg", "images", "manifest.json", "photo-digests.json"]
    with Image.open(context.output_dir / "cover.jpg") as cover:  # IMG_1, never scaled up
        assert (cover.format, cover.mode, cover.size) == ("JPEG", "RGB", (160, 120))
    photo_calls = [call for call in recorder.calls if call[1].startswith("photo ")]
    assert [message for _, message in photo_calls] == [f"photo {i}/4" for i in range(1, 5)]
    assert [percent for percent, _ in photo_calls] == [25.0, 50.0, 75.0, 100.0]


def test_zero_threads_means_one_per_cpu(tmp_path):
    result, _, _ = run_ingest(tmp_path, make_set(tmp_path), settings={"threads": 0})
    assert result.metrics["accepted"] == 3


# --- rejections -----------------------------------------------------------------------


def write_text(path: Path) -> None:
    path.write_text("not a photo at all\n")


def write_gif(path: Path) -> None:
    save(noise(seed=7).convert("P"), path)


def write_bmp(path: Path) -> None:
    save(noise(seed=8), path)


def write_truncated_jpeg(path: Path) -> None:
    save(noise(seed=9), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def write_corrupt_png(path: Path) -> None:
    save(noise(seed=10), path)
    data = bytearray(path.read_bytes())
    start = data.index(b"IDAT") + 4
    data[start + 10 : start + 400] = bytes(390)  # the header parses, the pixels do not
    path.write_bytes(bytes(data))


def write_tiny(path: Path) -> None:
    save(noise((80, 60), seed=11), path)


def write_large(path: Path) -> None:
    save(noise((300, 200), seed=12), path)


def write_raw(path: Path) -> None:
    save(noise(seed=13), path, format="TIFF")  # a DNG is a TIFF inside


@pytest.mark.parametrize(
    ("file_name", "writer", "settings", "expected"),
    [
        ("notes.txt", write_text, {}, ["not an image (unrecognised format)"]),
        ("anim.gif", write_gif, {}, ["GIF image: format not accepted"]),
        ("old.bmp", write_bmp, {}, ["BMP image: format not accepted"]),
        ("cut.jpg", write_truncated_jpeg, {}, ["truncated or corrupt image:", "truncated"]),
        ("broken.png", write_corrupt_png, {}, ["truncated or corrupt image:"]),
        ("tiny.jpg", write_tiny, {}, ["too small: 80x60 pixels"]),
        ("huge.png", write_large, {"max_image_pixels": 50_000}, ["300x200 is 60000 pixels", "limit of 50000"]),
        ("shot.dng", write_raw, {}, ["camera RAW file (.dng)"]),
    ],
)
def test_each_bad_photo_is_rejected_with_its_own_reason(
    tmp_path, file_name, writer, settings, expected
):
    folder = make_set(tmp_path)
    writer(folder / file_name)

    result, _, context = run_ingest(tmp_path, folder, settings=settings)

    reason = rejected_reasons(result)[file_name]
    for fragment in expected:
        assert fragment in reason
    assert (result.metrics["found"], result.metrics["accepted"], result.metrics["rejected"]) == (4, 3, 1)
    assert result.warnings == ("1 of 4 photos rejected: see images.rejected",)
    assert manifest_of(context)["rejected"] == [{"file": file_name, "reason": reason}]
    assert len(os.listdir(context.output_dir / "images")) == 3


def write_heic(path: Path) -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    save(noise(seed=20), path, format="HEIF")


def test_heic_is_read_when_pillow_heif_is_installed(tmp_path):
    folder = make_set(tmp_path)
    write_heic(folder / "phone.heic")

    result, _, context = run_ingest(tmp_path, folder)

    assert result.metrics["accepted"] == 4
    with output_image(context, "phone.heic") as written:
        assert (written.format, written.mode, written.size) == ("JPEG", "RGB", (160, 120))


def test_heic_without_pillow_heif_is_rejected_with_advice_for_each_audience(tmp_path, monkeypatch, caplog):
    folder = make_set(tmp_path)
    write_heic(folder / "phone.heic")
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # makes `import pillow_heif` fail

    result, _, _ = run_ingest(tmp_path, folder)

    reason = rejected_reasons(result)["phone.heic"]
    assert "export it as JPEG" in reason and "pip" not in reason  # the person cannot install anything
    assert "pip install pillow-heif" in caplog.text  # the operator can


def test_duplicates_keep_the_first_in_name_order(tmp_path):
    folder = make_set(tmp_path, count=0)
    save(noise(seed=30), folder / "a.jpg")
    shutil.copyfile(folder / "a.jpg", folder / "b.jpg")
    with Image.open(folder / "a.jpg") as decoded:
        save(decoded, folder / "c.png")  # other bytes, same pixels
    save(noise(seed=31), folder / "d.jpg")
    save(noise(seed=32), folder / "e.jpg")

    result, _, context = run_ingest(tmp_path, folder)

    assert rejected_reasons(result) == {"b.jpg": "duplicate of a.jpg", "c.png": "duplicate of a.jpg"}
    assert [item["file"] for item in manifest_of(context)["images"]] == ["a.jpg", "d.jpg", "e.jpg"]
    assert sorted(os.listdir(context.output_dir / "images")) == ["a.jpg", "d.jpg", "e.jpg"]


def test_too_few_usable_photos_fails_with_the_images_summary(tmp_path):
    folder = make_set(tmp_path, count=2)
    write_text(folder / "notes.txt")

    with pytest.raises(StageFailed) as failure:
        run_ingest(tmp_path, folder)

    assert failure.value.message == "only 2 usable photos (3 found, 1 rejected); at least 3 are needed"
    assert "different positions" in failure.value.hint
    assert failure.value.images == {
        "found": 3,
        "accepted": 2,
        "rejected": [{"file": "notes.txt", "reason": "not an image (unrecognised format)"}],
    }


# --- normalisation ----------------------------------------------------------------------


def test_gps_and_other_metadata_go_lens_fields_stay(tmp_path):
    folder = make_set(tmp_path, count=2)
    exif = Image.Exif()
    exif[Base.Make] = "Canon"
    exif[Base.Model] = "EOS 90D"
    exif[Base.Orientation] = 1
    exif[Base.Artist] = "Jane Doe"
    exif_ifd = exif.get_ifd(IFD.Exif)
    exif_ifd.update({Base.FocalLength: 18.5, Base.FocalLengthIn35mmFilm: 29, Base.BodySerialNumber: "SN123"})
    exif.get_ifd(IFD.GPSInfo).update({GPS.GPSLatitudeRef: "N", GPS.GPSLatitude: (48.0, 51.0, 24.0)})
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><exif:GPSLatitude>48,51N</exif:GPSLatitude></x:xmpmeta>'
    save(noise(seed=40), folder / "camera.jpg", exif=exif, xmp=xmp, comment=b"private comment")
    with Image.open(folder / "camera.jpg") as check:
        assert check.getexif().get_ifd(IFD.GPSInfo)  # the source really has GPS

    result, _, context = run_ingest(tmp_path, folder)

    entry = next(item for item in manifest_of(context)["images"] if item["file"] == "camera.jpg")
    assert (entry["focal_length_mm"], entry["focal_length_35mm"]) == (18.5, 29)
    assert (entry["make"], entry["model"]) == ("Canon", "EOS 90D")
    written_path = context.output_dir / entry["image"]
    with Image.open(written_path) as written:
        kept = written.getexif()
        assert sorted(kept) == sorted([Base.Make, Base.Model, IFD.Exif])  # IFD.Exif: a pointer
        assert (kept[Base.Make], kept[Base.Model]) == ("Canon", "EOS 90D")
        assert kept.get_ifd(IFD.Exif) == {Base.FocalLength: 18.5, Base.FocalLengthIn35mmFilm: 29}
        assert kept.get_ifd(IFD.GPSInfo) == {}
        assert "xmp" not in written.info and "comment" not in written.info
    raw = written_path.read_bytes()
    for secret in (b"GPSLatitude", b"Jane Doe", b"SN123", b"private comment"):
        assert secret not in raw


def test_exif_orientation_is_applied(tmp_path):
    folder = make_set(tmp_path, count=2)
    exif = Image.Exif()
    exif[Base.Orientation] = 6  # stored sideways: turn 90 degrees clockwise to view
    save(halves((255, 0, 0), (0, 0, 255)), folder / "sideways.jpg", exif=exif, quality=95)

    _, _, context = run_ingest(tmp_path, folder)

    entry = next(item for item in manifest_of(context)["images"] if item["file"] == "sideways.jpg")
    assert (entry["width"], entry["height"]) == (120, 160)
    assert (entry["original_width"], entry["original_height"]) == (120, 160)
    with output_image(context, "sideways.jpg") as written:
        assert written.size == (120, 160)
        assert close_to(written.getpixel((60, 30)), (255, 0, 0), 8)  # the left half is now on top
        assert close_to(written.getpixel((60, 130)), (0, 0, 255), 8)
        assert Base.Orientation not in written.getexif()


def test_the_cover_is_the_first_usable_photo_upright_at_most_640_and_without_metadata(tmp_path):
    """The set's card shows it on a public page: the first photo ingest accepts in name order (not
    a broken one before it), turned upright, scaled down, with none of the camera's EXIF."""
    folder = make_set(tmp_path, count=2)
    write_truncated_jpeg(folder / "a_broken.jpg")
    exif = Image.Exif()
    exif[Base.Orientation] = 6  # stored sideways: turn 90 degrees clockwise to view
    exif[Base.Make] = "Canon"
    exif.get_ifd(IFD.GPSInfo).update({GPS.GPSLatitudeRef: "N", GPS.GPSLatitude: (48.0, 51.0, 24.0)})
    sideways = Image.new("RGB", (1600, 1200), (255, 0, 0))
    sideways.paste(Image.new("RGB", (800, 1200), (0, 0, 255)), (800, 0))
    save(sideways, folder / "b_sideways.jpg", exif=exif, quality=95)

    result, _, context = run_ingest(tmp_path, folder)

    assert rejected_reasons(result).keys() == {"a_broken.jpg"}
    assert (result.outputs["cover"], result.to_outbox) == ("ingest/cover.jpg", ("cover",))
    data = (context.output_dir / "cover.jpg").read_bytes()
    with Image.open(io.BytesIO(data)) as cover:
        assert (cover.format, cover.mode, cover.size) == ("JPEG", "RGB", (480, 640))
        assert close_to(cover.getpixel((240, 100)), (255, 0, 0), 8)  # the left half is now on top
        assert close_to(cover.getpixel((240, 540)), (0, 0, 255), 8)
        assert not cover.getexif() and not {"exif", "icc_profile", "xmp", "comment"} & set(cover.info)
    assert b"Exif\x00\x00" not in data and b"Canon" not in data
    with output_image(context, "b_sideways.jpg") as copy:
        assert copy.getexif()[Base.Make] == "Canon"  # the copy SfM reads keeps its camera; the cover does not


def write_png_16bit_rgb(path: Path, pixels: np.ndarray) -> None:
    """Pillow cannot write 48-bit PNGs, so build the chunks by hand."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    height, width, _ = pixels.shape
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunks)


def write_16bit_gray(path: Path) -> None:
    pixels = np.full((120, 160), 65535, dtype=np.uint16)
    pixels[:, 80:] = 0x8080
    save(Image.fromarray(pixels), path)


def write_16bit_rgb(path: Path) -> None:
    pixels = np.zeros((120, 160, 3), dtype=np.uint16)
    pixels[:, :80] = (0xFFFF, 0, 0)
    pixels[:, 80:] = (0, 0x8080, 0xFFFF)
    write_png_16bit_rgb(path, pixels)


@pytest.mark.parametrize(
    ("file_name", "writer", "left", "right"),
    [
        ("gray16.png", write_16bit_gray, (255, 255, 255), (128, 128, 128)),
        ("rgb16.png", write_16bit_rgb, (255, 0, 0), (0, 128, 255)),
        ("alpha.png", lambda p: save(halves((255, 0, 0, 0), (0, 255, 0, 255), "RGBA"), p),
         (255, 0, 0), (0, 255, 0)),
        ("gray_alpha.png", lambda p: save(halves((200, 0), (50, 255), "LA"), p),
         (200, 200, 200), (50, 50, 50)),
        ("palette.png", lambda p: save(halves((255, 0, 0), (0, 0, 255)).quantize(4), p),
         (255, 0, 0), (0, 0, 255)),
        ("bilevel.png", lambda p: save(halves(1, 0, "1"), p),
         (255, 255, 255), (0, 0, 0)),
        ("cmyk.jpg", lambda p: save(halves((0, 255, 255, 0), (0, 0, 0, 255), "CMYK"), p, quality=95),
         (255, 0, 0), (0, 0, 0)),
        ("cmyk.tif", lambda p: save(halves((0, 255, 255, 0), (255, 0, 255, 0), "CMYK"), p),
         (255, 0, 0), (0, 255, 0)),
    ],
)
def test_every_colour_mode_becomes_8bit_rgb(tmp_path, file_name, writer, left, right):
    folder = make_set(tmp_path, count=2)
    writer(folder / file_name)

    result, _, context = run_ingest(tmp_path, folder)

    assert result.metrics["accepted"] == 3, result.images
    with output_image(context, file_name) as written:
        assert (written.mode, written.size) == ("RGB", (160, 120))
        assert close_to(written.getpixel((40, 60)), left), written.getpixel((40, 60))
        assert close_to(written.getpixel((120, 60)), right), written.getpixel((120, 60))


@pytest.mark.parametrize(
    ("options", "expected_size"),
    [
        ({"max_image_size": 200}, (200, 150)),
        ({"max_image_size": 200, "original_resolution": True}, (400, 300)),
        ({"max_image_size": 1600}, (400, 300)),
    ],
)
def test_long_side_is_capped_unless_original_resolution(tmp_path, options, expected_size):
    folder = tmp_path / "inbox" / "set1"
    for index in range(3):
        save(noise((400, 300), seed=50 + index), folder / f"big_{index}.jpg")

    _, _, context = run_ingest(tmp_path, folder, options=options)

    for entry in manifest_of(context)["images"]:
        assert (entry["width"], entry["height"]) == expected_size
        assert (entry["original_width"], entry["original_height"]) == (400, 300)
        with Image.open(context.output_dir / entry["image"]) as written:
            assert written.size == expected_size


def test_subfolders_are_flattened_and_name_collisions_resolved(tmp_path):
    folder = tmp_path / "inbox" / "set1"
    save(noise(seed=60), folder / "a" / "b" / "IMG_1.JPG")
    save(noise(seed=61), folder / "IMG_1.JPG")
    save(noise(seed=62), folder / "IMG_1.png")
    save(noise(seed=63), folder / "x y.jpg")

    _, _, context = run_ingest(tmp_path, folder)

    assert {item["file"]: item["image"] for item in manifest_of(context)["images"]} == {
        "IMG_1.JPG": "images/IMG_1.jpg",
        "IMG_1.png": "images/IMG_1-2.jpg",
        "a/b/IMG_1.JPG": "images/a__b__IMG_1.jpg",
        "x y.jpg": "images/x_y.jpg",
    }


def test_file_names_that_are_not_utf8_still_fit_in_json(tmp_path):
    folder = make_set(tmp_path, count=2)
    with open(os.path.join(os.fsencode(folder), b"caf\xe9 menu.jpg"), "wb") as latin1_named:
        noise(seed=64).save(latin1_named, "JPEG")

    _, _, context = run_ingest(tmp_path, folder)

    entry = next(item for item in manifest_of(context)["images"] if item["image"] == "images/caf_menu.jpg")
    assert entry["file"] == "caf\\xe9 menu.jpg"  # the byte shown exactly (inbox_protocol/file_names.py)


def test_output_names_stay_unique_whatever_the_input():
    paths = ["a__b/c.jpg", "a/b__c.jpg", "IMG.JPG", "img.jpg", "IMG-2.jpg", ".hidden.png"]
    names = output_names(paths)
    assert len({name.casefold() for name in names.values()}) == len(paths)
    assert names[".hidden.png"] == "hidden.jpg"
    assert all(name.endswith(".jpg") and "/" not in name for name in names.values())


# --- symbolic links and the source folder ------------------------------------------------


def test_symlink_out_of_the_inbox_refuses_the_set(tmp_path):
    folder = make_set(tmp_path)
    outside = save(noise(seed=70), tmp_path / "private" / "secret.jpg")
    (folder / "link.jpg").symlink_to(outside)

    with pytest.raises(StageFailed) as failure:
        run_ingest(tmp_path, folder)

    assert "symbolic link 'link.jpg'" in failure.value.message
    assert "outside the inbox" in failure.value.message


def test_symlink_inside_the_inbox_is_listed_but_not_followed(tmp_path):
    folder = make_set(tmp_path)
    other = save(noise(seed=71), tmp_path / "inbox" / "other" / "photo.jpg")
    (folder / "link.jpg").symlink_to(other)

    result, _, _ = run_ingest(tmp_path, folder)

    assert result.images["found"] == 4
    assert rejected_reasons(result) == {"link.jpg": "symbolic link: not followed"}


def snapshot(folder: Path) -> dict[str, tuple]:
    """Everything that would show a write: names, types, sizes, mtimes, contents."""
    state = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root, name)
            info = path.lstat()
            content = b"" if path.is_symlink() or path.is_dir() else path.read_bytes()
            digest = hashlib.sha256(content).hexdigest()
            state[str(path.relative_to(folder))] = (info.st_mode, info.st_size, info.st_mtime_ns, digest)
    state["."] = (folder.stat().st_mode, folder.stat().st_mtime_ns)
    return state


def test_the_source_folder_is_left_exactly_as_it_was(tmp_path):
    folder = make_set(tmp_path)
    exif = Image.Exif()
    exif[Base.Orientation] = 6
    save(noise(seed=80), folder / "sub" / "turned.jpg", exif=exif)
    write_truncated_jpeg(folder / "cut.jpg")
    shutil.copyfile(folder / "good_1.jpg", folder / "copy.jpg")
    (folder / "link.jpg").symlink_to(folder / "good_2.jpg")
    (folder / "job.toml").write_text("iterations = 1000\n")
    before = snapshot(folder)

    result, _, _ = run_ingest(tmp_path, folder, options={"max_image_size": 100})

    assert result.metrics["accepted"] == 4
    assert snapshot(folder) == before


# --- zip sets --------------------------------------------------------------------------------


def make_zip(tmp_path: Path, entries: dict[str, bytes]) -> Path:
    archive = tmp_path / "inbox" / "set1.zip"
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as writer:
        for name, data in entries.items():
            writer.writestr(name, data)
    return archive


def jpeg_bytes(seed: int) -> bytes:
    buffer = io.BytesIO()
    noise(seed=seed).save(buffer, "JPEG")
    return buffer.getvalue()


def test_zip_set_is_extracted_read_and_cleaned_up(tmp_path):
    archive = make_zip(
        tmp_path,
        {
            "set/IMG_1.jpg": jpeg_bytes(90),
            "set/IMG_2.jpg": jpeg_bytes(91),
            "set/more/IMG_3.jpg": jpeg_bytes(92),
            "__MACOSX/set/._IMG_1.jpg": b"AppleDouble litter",
        },
    )
    archive_before = archive.read_bytes()

    result, recorder, context = run_ingest(tmp_path, archive)

    assert result.images == {"found": 3, "accepted": 3, "rejected": []}
    # everything sits in one folder (macOS's "Compress"): the set is that folder
    assert [(item["file"], item["image"]) for item in manifest_of(context)["images"]] == [
        ("IMG_1.jpg", "images/IMG_1.jpg"),
        ("IMG_2.jpg", "images/IMG_2.jpg"),
        ("more/IMG_3.jpg", "images/more__IMG_3.jpg"),
    ]
    assert sorted(os.listdir(context.output_dir)) == ["cover.jpg", "images", "manifest.json", "photo-digests.json"]
    assert recorder.calls[0] == (0.0, "extracting zip archive")
    assert archive.read_bytes() == archive_before
    digests = json.loads((context.output_dir / "photo-digests.json").read_text())
    assert digests == {archive.name: hashlib.sha256(archive_before).hexdigest()}  # the archive holds every photo


def test_zip_with_an_escaping_entry_is_refused_and_leaves_nothing(tmp_path):
    archive = make_zip(tmp_path, {"IMG_1.jpg": jpeg_bytes(93), "../evil.jpg": jpeg_bytes(94)})

    with pytest.raises(StageFailed) as failure:
        run_ingest(tmp_path, archive)

    assert "'../evil.jpg'" in failure.value.message
    context_dir = tmp_path / "jobs" / "t-1"
    assert not (context_dir / "evil.jpg").exists()
    assert not (context_dir / "ingest" / "extracted").exists()


def test_a_file_that_is_not_a_zip_is_refused(tmp_path):
    archive = tmp_path / "inbox" / "set1.zip"
    archive.parent.mkdir(parents=True)
    archive.write_bytes(make_zip(tmp_path, {"IMG_1.jpg": jpeg_bytes(95)}).read_bytes()[:200])

    with pytest.raises(StageFailed) as failure:
        run_ingest(tmp_path, archive)

    assert failure.value.message == "not a valid zip archive (truncated or still being copied?)"


# --- the real child process -------------------------------------------------------------------


def run_child(tmp_path: Path, source: Path) -> tuple[subprocess.CompletedProcess, StageContext]:
    context = make_context(tmp_path, source)
    context_file = tmp_path / "context.json"
    context_file.write_text(json.dumps(context.to_json()))
    completed = subprocess.run(
        [sys.executable, "-m", "stages.child", str(context_file), "stages.ingest:IngestStage"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return completed, context


def test_child_process_reports_progress_and_writes_result(tmp_path):
    completed, context = run_child(tmp_path, make_set(tmp_path))

    assert completed.returncode == 0, completed.stderr
    progress = [json.loads(line) for line in completed.stdout.splitlines()]
    assert {"percent": 100.0, "message": "photo 3/3"} in progress
    assert progress[-1] == {"percent": 100.0, "message": "done"}
    result = json.loads((context.output_dir / "result.json").read_text())
    assert result["images"] == {"found": 3, "accepted": 3, "rejected": []}
    assert result["outputs"]["manifest"] == "ingest/manifest.json"


def test_child_process_exits_3_with_error_json_for_two_photos(tmp_path):
    completed, context = run_child(tmp_path, make_set(tmp_path, count=2))

    assert completed.returncode == 3, completed.stderr
    error = json.loads((context.output_dir / "error.json").read_text())
    assert error["message"] == "only 2 usable photos (2 found, 0 rejected); at least 3 are needed"
    assert error["images"] == {"found": 2, "accepted": 2, "rejected": []}
    assert not (context.output_dir / "result.json").exists()
