"""Open one candidate photo, decide whether the pipeline can use it, write its normalised copy.

Every way a photo can be refused ends in ``PhotoRejected`` with a reason the person who
took it can act on. Anything else (disk full, a bug) propagates and crashes the stage.
Safe to call from several threads at once: Pillow releases the GIL while it decodes,
resizes and encodes.
"""

from __future__ import annotations

import hashlib
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from PIL.ExifTags import IFD, Base

# MPO is how Pillow labels the multi-picture JPEGs many cameras write: still a JPEG.
ACCEPTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "TIFF", "WEBP", "HEIF"})
MIN_SIDE_PIXELS = 100
JPEG_QUALITY = 95

# ISO base media brands of HEIC/HEIF stills (bytes 8..12, after the size and "ftyp").
HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}
)

# Camera RAW files are TIFF containers that Pillow opens as a small preview or as raw
# sensor data; either would sit next to the JPEG of the same shot as a bad extra view.
RAW_SUFFIXES = frozenset(
    {".3fr", ".arw", ".cr2", ".cr3", ".crw", ".dng", ".erf", ".iiq", ".kdc", ".mef", ".mos",
     ".nef", ".nrw", ".orf", ".pef", ".raf", ".raw", ".rw2", ".rwl", ".sr2", ".srf", ".srw", ".x3f"}
)

# Pillow opens 16-bit grayscale as one of these and clips, rather than scales, to 8 bits.
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})


class PhotoRejected(Exception):
    """The photo cannot be used; ``reason`` says why, in words for people."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class PhotoRules:
    max_long_side: int | None  # None keeps the original resolution
    max_image_pixels: int  # width * height above this is refused before decoding
    heif_supported: bool


@dataclass(frozen=True)
class CameraInfo:
    """The EXIF fields structure-from-motion uses to guess the lens; all else is dropped."""

    focal_length_mm: float | None = None
    focal_length_35mm: int | None = None
    make: str | None = None
    model: str | None = None


@dataclass(frozen=True)
class NormalisedPhoto:
    width: int
    height: int
    original_width: int  # after EXIF orientation, before downsizing
    original_height: int
    camera: CameraInfo
    pixel_digest: str  # of the oriented full-size RGB pixels: equal digests are duplicates


def enable_heif() -> bool:
    """Register pillow-heif's opener when it is installed; phones shoot HEIC by default."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


@contextmanager
def own_pixel_limit() -> Iterator[None]:
    """Turn off Pillow's process-wide bomb check while photos are read.

    Pillow only warns up to twice its limit and its error names no size; ``normalise_photo``
    checks each header against ``PhotoRules.max_image_pixels`` instead, before decoding.
    Enter it once, outside the worker threads.
    """
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def normalise_photo(source: Path, destination: Path, rules: PhotoRules) -> NormalisedPhoto:
    """Check ``source`` and write it to ``destination`` as an upright 8-bit RGB JPEG."""
    if source.suffix.lower() in RAW_SUFFIXES:
        raise PhotoRejected(
            f"camera RAW file ({source.suffix}): not read; add the JPEG or TIFF export instead"
        )
    try:
        handle = open(source, "rb")
    except OSError as error:
        raise PhotoRejected(f"could not be read: {error.strerror}") from error
    with handle:
        if not rules.heif_supported and _is_heif(handle):
            raise PhotoRejected(
                "HEIC/HEIF photo, but pillow-heif is not installed: "
                "install it (pip install pillow-heif) to read it"
            )
        image = _open_checked(handle, rules)
        oriented = _decode_upright(image)
        camera = _camera_info(image)  # after decoding: PNG keeps EXIF after the pixels
    rgb = _to_rgb8(oriented)
    resized = _downsize(rgb, rules.max_long_side)
    _write_jpeg(resized, destination, camera)
    return NormalisedPhoto(
        resized.width, resized.height, rgb.width, rgb.height, camera, _pixel_digest(rgb)
    )


def _is_heif(handle: BinaryIO) -> bool:
    head = handle.read(12)
    handle.seek(0)
    return head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS


def _open_checked(handle: BinaryIO, rules: PhotoRules) -> Image.Image:
    """Read the header only, and refuse what should not be decoded at all."""
    try:
        image = Image.open(handle)
    except UnidentifiedImageError as error:
        raise PhotoRejected("not an image (unrecognised format)") from error
    except MemoryError:
        raise
    except Exception as error:  # Pillow's plugins raise many types for broken headers
        raise _corrupt(error) from error
    if image.format not in ACCEPTED_FORMATS:
        raise PhotoRejected(
            f"{image.format} image: format not accepted (use JPEG, PNG, TIFF, WebP or HEIC)"
        )
    width, height = image.size
    if width * height > rules.max_image_pixels:
        raise PhotoRejected(
            f"{width}x{height} is {width * height} pixels, over the limit of "
            f"{rules.max_image_pixels} (max_image_pixels); refused as a possible decompression bomb"
        )
    if min(width, height) < MIN_SIDE_PIXELS:
        raise PhotoRejected(
            f"too small: {width}x{height} pixels, each side needs at least {MIN_SIDE_PIXELS}"
        )
    return image


def _decode_upright(image: Image.Image) -> Image.Image:
    try:
        image.load()
        return ImageOps.exif_transpose(image)
    except MemoryError:
        raise
    except Exception as error:  # truncated or corrupt data surfaces only while decoding
        raise _corrupt(error) from error


def _corrupt(error: Exception) -> PhotoRejected:
    detail = str(error) or type(error).__name__
    return PhotoRejected(f"truncated or corrupt image: {detail[:120]}")


def _camera_info(image: Image.Image) -> CameraInfo:
    """A broken EXIF block costs the focal length, not the photo."""
    try:
        exif = image.getexif()
        exif_ifd = exif.get_ifd(IFD.Exif)
        focal_35mm = _positive_number(exif_ifd.get(Base.FocalLengthIn35mmFilm))
        return CameraInfo(
            focal_length_mm=_positive_number(exif_ifd.get(Base.FocalLength)),
            focal_length_35mm=None if focal_35mm is None else round(focal_35mm),
            make=_text(exif.get(Base.Make)),
            model=_text(exif.get(Base.Model)),
        )
    except Exception:
        return CameraInfo()


def _positive_number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return value.replace("\x00", "").strip() or None


def _to_rgb8(image: Image.Image) -> Image.Image:
    """Later stages read 8-bit RGB only."""
    if image.mode in _SIXTEEN_BIT_MODES:
        wide = np.asarray(image).astype(np.int64)
        narrow = (np.clip(wide, 0, 65535) >> 8).astype(np.uint8)
        return Image.fromarray(narrow).convert("RGB")
    try:
        return image.convert("RGB")  # palette, 1-bit, CMYK, and alpha dropped
    except ValueError as error:
        raise PhotoRejected(f"colour mode {image.mode} cannot be converted to RGB") from error


def _pixel_digest(image: Image.Image) -> str:
    digest = hashlib.sha256(f"{image.width}x{image.height}\n".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def _downsize(image: Image.Image, max_long_side: int | None) -> Image.Image:
    long_side = max(image.size)
    if max_long_side is None or long_side <= max_long_side:
        return image
    scale = max_long_side / long_side
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _write_jpeg(image: Image.Image, destination: Path, camera: CameraInfo) -> None:
    image.info.clear()  # Pillow copies some of it (comments, profiles) into what it writes
    image.save(destination, "JPEG", quality=JPEG_QUALITY, subsampling=0, exif=_kept_exif(camera))


def _kept_exif(camera: CameraInfo) -> bytes:
    """Only the lens hints; GPS, serial numbers, orientation (now applied) and the rest go."""
    if camera == CameraInfo():
        return b""
    exif = Image.Exif()
    if camera.make:
        exif[Base.Make] = camera.make
    if camera.model:
        exif[Base.Model] = camera.model
    if camera.focal_length_mm is not None or camera.focal_length_35mm is not None:
        exif_ifd = exif.get_ifd(IFD.Exif)
        if camera.focal_length_mm is not None:
            exif_ifd[Base.FocalLength] = camera.focal_length_mm
        if camera.focal_length_35mm is not None:
            exif_ifd[Base.FocalLengthIn35mmFilm] = camera.focal_length_35mm
    return exif.tobytes()
