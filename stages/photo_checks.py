"""Open one candidate photo, decide whether the pipeline can use it, write its normalised copy.

Every way a photo can be refused ends in ``PhotoRejected`` with a reason the person who
took it can act on. Anything else (disk full, a bug) propagates and crashes the stage.
Safe to call from several threads at once: Pillow releases the GIL while it decodes,
resizes and encodes. The threads share a ``MemoryBudget``: each photo reserves what it will
take at its peak (``decode_memory_bytes``, from its header) before it is decoded.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import struct
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from PIL.ExifTags import IFD, Base

from stages.memory_budget import MB, MemoryBudget

log = logging.getLogger("stages.ingest")

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

# Memory, per pixel of the photo, while it is normalised (decode_memory_bytes). Pillow keeps one
# byte a pixel for 1, L and P, two for the 16-bit modes and four for all others (RGB too, as RGBX).
# bench/decode_memory.py, 24 MP photos downsized to 1600 px, bytes a pixel at the peak (peak RSS
# less RSS before), the estimate in brackets: JPEG RGB 5.4 (6.2), progressive 4:4:4 10.0 (11.3),
# grey 5.4 (6.2), CMYK 8.0 (9.1), EXIF-rotated 8.0 (9.1), downsized only to 0.9 of its size 10.9
# (12.3: the resize's two passes); PNG RGB 5.4 (6.2), kept at full size 4.1 (4.7), rotated 8.0
# (9.1), RGBA 8.0 (9.1), palette 5.4 (6.2), 16-bit grey 7.0 (8.0), 16-bit RGB 5.4 (6.2); TIFF
# 16-bit grey 7.0 (8.0), 32-bit grey 12.0 (13.5), RGB in strips 5.4 (6.2), in one strip 7.2 (8.0);
# WebP 16.0 (17.9); HEIC 7.5 (9.1). Each step frees the one before; until the change that made it
# so, RGB took 18.3, 16-bit grey 21.0 (widened to int64), WebP 26.3. The estimate adds a tenth,
# and FIXED_BYTES (the digest's strips, the coders' buffers), to what the steps keep alive at once.
_STORED_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
_RGB_BYTES = 4
_MARGIN = 1.1
FIXED_BYTES = 8 * MB
# formats whose EXIF comes before the pixels (a PNG's, unless it has more after them)
_HEADER_ORIENTATION_FORMATS = frozenset({"JPEG", "MPO", "PNG", "TIFF", "WEBP"})
_PNG_METADATA_CHUNKS = frozenset({b"eXIf", b"tEXt", b"zTXt", b"iTXt"})
_WEBP_DECODER_BYTES = 12  # libwebp's frames (its animation decoder keeps two) and Pillow's copy
_HEIF_DECODER_BYTES = 4  # libheif's frame, before Pillow's own copy
_DIGEST_STRIP_BYTES = MB


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


def normalise_photo(
    source: Path, destination: Path, rules: PhotoRules, budget: MemoryBudget
) -> NormalisedPhoto:
    """Check ``source`` and write it to ``destination`` as an upright 8-bit RGB JPEG.

    ``image`` is rebound at each step, so that the pixels of the step before are freed
    (decode_memory_bytes counts on it), and the budget is held until the copy is written.
    """
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
            log.warning("%s: a HEIC/HEIF photo, refused: pillow-heif is not installed (pip install pillow-heif)",
                        source.name)
            raise PhotoRejected("HEIC/HEIF photo, which this server cannot read: export it as JPEG instead")
        image = _open_checked(handle, rules)
        need = decode_memory_bytes(image, handle, rules.max_long_side)
        if need > budget.total_bytes:
            raise PhotoRejected(_over_budget(image, need, budget.total_bytes))
        with budget.reserved(need):
            camera = _decode_upright(image)
            original_width, original_height = image.size
            image = _to_rgb8(image)
            digest = _pixel_digest(image)
            image = _downsize(image, rules.max_long_side)
            _write_jpeg(image, destination, camera)
    return NormalisedPhoto(image.width, image.height, original_width, original_height, camera, digest)


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
            f"{width}x{height} is {width * height} pixels, over this server's limit of "
            f"{rules.max_image_pixels}; refused as a possible decompression bomb"
        )
    if min(width, height) < MIN_SIDE_PIXELS:
        raise PhotoRejected(
            f"too small: {width}x{height} pixels, each side needs at least {MIN_SIDE_PIXELS}"
        )
    return image


def decode_memory_bytes(image: Image.Image, handle: BinaryIO, max_long_side: int | None) -> int:
    """The most memory normalising this photo holds at once, slightly generous, from its header.

    Each step below keeps the photo's pixels once or twice; the largest step is the peak.
    """
    width, height = image.size
    stored = _STORED_BYTES.get(image.mode, 4)
    decoding = stored + _decoder_bytes(image)
    turning = 2 * stored if _may_turn(image, handle) else stored  # transposing makes a new copy
    if image.mode == "RGB":
        converting = _RGB_BYTES  # already RGB: no copy
    elif image.mode in _SIXTEEN_BIT_MODES:
        # numpy's copy (made by way of tobytes: twice its size for a moment), its top bytes (which
        # the grey image shares), then RGB
        converting = stored + max(2 * stored, stored + 1, 1 + _RGB_BYTES)
    else:
        converting = stored + _RGB_BYTES
    scale = min(1.0, max_long_side / max(width, height)) if max_long_side else 1.0
    # LANCZOS resamples rows into a narrower copy first, then columns into the result
    resizing = _RGB_BYTES * (1 + scale + scale * scale) if scale < 1 else _RGB_BYTES
    per_pixel = max(decoding, turning, converting, resizing)
    return math.ceil(width * height * per_pixel * _MARGIN) + FIXED_BYTES


def _decoder_bytes(image: Image.Image) -> float:
    """What the decoding library holds beside Pillow's copy, per pixel."""
    if image.format in ("JPEG", "MPO") and image.info.get("progressive"):
        # libjpeg keeps every DCT coefficient (2 bytes) of each component until the last scan
        layers = image.layer  # (id, horizontal sampling, vertical sampling, table) per component
        most_h = max(layer[1] for layer in layers)
        most_v = max(layer[2] for layer in layers)
        return 2 * sum(layer[1] * layer[2] / (most_h * most_v) for layer in layers)
    if image.format == "TIFF" and image.info.get("compression", "raw") != "raw":
        return _libtiff_strip_bytes(image)
    if image.format == "WEBP":
        return _WEBP_DECODER_BYTES
    if image.format == "HEIF":
        return _HEIF_DECODER_BYTES
    return 0.0  # PNG, and uncompressed TIFF, are read a block at a time


def _libtiff_strip_bytes(image: Image.Image) -> float:
    """libtiff decodes a strip (or tile) at a time into a buffer of its raw bytes; one strip can
    be the whole photo."""
    width, height = image.size
    tags = image.tag_v2
    bits = tags.get(258, (8,))  # BitsPerSample, one per sample
    raw_bytes = sum(bits if isinstance(bits, tuple) else (bits,)) / 8
    if tags.get(262) == 6:  # PhotometricInterpretation YCbCr: Pillow has libtiff decode to RGBA
        raw_bytes = max(raw_bytes, 4.0)
    if 322 in tags and 323 in tags:  # TileWidth, TileLength
        share = int(tags[322]) * int(tags[323]) / (width * height)
    else:
        share = int(tags.get(278, height)) / height  # RowsPerStrip
    return raw_bytes * min(1.0, share)


def _may_turn(image: Image.Image, handle: BinaryIO) -> bool:
    """Whether the EXIF orientation may transpose the photo. Counted as turning where it is not
    known before decoding: a PNG's metadata after its pixels, and HEIF, whose metadata
    pillow-heif reads in a way of its own."""
    if image.format not in _HEADER_ORIENTATION_FORMATS:
        return True
    try:
        if image.format == "PNG" and _png_metadata_after_pixels(handle):
            return True
        return _header_orientation(image) not in (None, 1)
    except Exception:  # exif_transpose will meet the same broken EXIF; count the copy
        return True


def _png_metadata_after_pixels(handle: BinaryIO) -> bool:
    """Whether a chunk that may hold EXIF or XMP follows the pixels (Pillow reads it only then)."""
    position = handle.tell()
    try:
        handle.seek(8)  # the signature
        pixels_seen = False
        while len(header := handle.read(8)) == 8:
            length, kind = struct.unpack(">I4s", header)
            if kind == b"IEND":
                return False
            if kind == b"IDAT":
                pixels_seen = True
            elif pixels_seen and kind in _PNG_METADATA_CHUNKS:
                return True
            handle.seek(length + 4, os.SEEK_CUR)  # the data and its CRC
        return False  # truncated: decoding will say so
    finally:
        handle.seek(position)


def _header_orientation(image: Image.Image) -> int | None:
    """What ``ImageOps.exif_transpose`` will read, without touching the image's own EXIF."""
    if image.format == "TIFF":
        orientation = image.tag_v2.get(Base.Orientation)
    else:
        exif = Image.Exif()
        raw = image.info.get("exif")
        if raw is None and "Raw profile type exif" in image.info:  # PNG text, as Pillow reads it
            raw = bytes.fromhex("".join(image.info["Raw profile type exif"].split("\n")[3:]))
        if raw:
            exif.load(raw)
        orientation = exif.get(Base.Orientation)
    if orientation is None:
        xmp = image.info.get("XML:com.adobe.xmp") or image.info.get("xmp")
        if xmp:
            pattern = r'tiff:Orientation(="|>)([0-9])'
            match = re.search(pattern if isinstance(xmp, str) else pattern.encode(), xmp)
            orientation = int(match[2]) if match else None
    return orientation


def _over_budget(image: Image.Image, need: int, budget: int) -> str:
    """The person's reason; the journal names the setting."""
    width, height = image.size
    log.warning("a %dx%d photo is over ingest's decoding budget (setting ingest_memory_mb)", width, height)
    return (
        f"{width}x{height} needs about {_memory(need, budget)} to decode, more than this server's "
        f"decoding budget of {_memory(budget, budget)}; save it with fewer pixels, or ask the "
        "server's operator to raise the budget"
    )


def _memory(nbytes: int, budget: int) -> str:
    """In GB from a budget of 1 GB up, else in MB; never rounded down to the budget's figure."""
    unit, name = (1000 * MB, "GB") if budget >= 1000 * MB else (MB, "MB")
    decimals = 1 if unit > MB else 0
    while f"{nbytes / unit:.{decimals}f}" == f"{budget / unit:.{decimals}f}" and nbytes != budget:
        decimals += 1
    return f"{nbytes / unit:.{decimals}f} {name}"


def _decode_upright(image: Image.Image) -> CameraInfo:
    """Decode, read the camera, then turn the pixels upright in place (no second copy kept)."""
    try:
        image.load()
        camera = _camera_info(image)  # after decoding: PNG keeps EXIF after the pixels
        ImageOps.exif_transpose(image, in_place=True)
        return camera
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
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT_MODES:
        pixels = np.asarray(image)
        if pixels.dtype.kind == "i":  # mode I: 32 bits, signed
            pixels = np.clip(pixels, 0, 65535)
        # the top byte, shifted straight into 8 bits: no wider copy than the photo's own
        narrow = np.right_shift(pixels, 8, out=np.empty(pixels.shape, np.uint8), casting="unsafe")
        del pixels
        return Image.fromarray(narrow).convert("RGB")
    try:
        return image.convert("RGB")  # palette, 1-bit, CMYK, and alpha dropped
    except ValueError as error:
        raise PhotoRejected(f"colour mode {image.mode} cannot be converted to RGB") from error


def _pixel_digest(image: Image.Image) -> str:
    """Of the RGB bytes row by row, hashed a strip at a time rather than copied whole."""
    digest = hashlib.sha256(f"{image.width}x{image.height}\n".encode())
    rows = max(1, _DIGEST_STRIP_BYTES // (3 * image.width))
    for top in range(0, image.height, rows):
        digest.update(image.crop((0, top, image.width, min(top + rows, image.height))).tobytes())
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
