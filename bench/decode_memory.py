"""How much memory does ingest need to decode one photo, per pixel, format by format?

    .venv/bin/python bench/decode_memory.py [--megapixels 24] [--case NAME ...]
    .venv/bin/python bench/decode_memory.py --ingest 4 --side 13000 --threads 4 [--budget-mb 0]

The first form writes one photo per case (JPEG baseline, progressive, rotated, grey, CMYK; PNG
RGB, RGBA, palette, grey, 16-bit grey and RGB; TIFF 16- and 32-bit grey, RGB in strips and in
one strip; WebP; HEIC where pillow-heif can write it) into a temporary folder, then normalises
each one with ``stages.photo_checks.normalise_photo`` in a fresh Python process of its own. That
process first normalises a small photo of the same kind (so that the libraries and plugins are
loaded), resets its high-water mark of resident memory (``/proc/self/clear_refs``), notes its
resident memory, normalises the big photo, and reads the high-water mark (``VmHWM``) again:
peak minus resident before is what the photo cost. tracemalloc would not see it: Pillow,
libjpeg, zlib and numpy allocate outside Python's allocator. Prints bytes a pixel (decimal
megabytes where sizes are shown), and beside it the estimate ``decode_memory_bytes`` makes
from the photo's header, which ingest's decoding budget (``ingest_memory_mb``) reserves.

The second form is the attack of issue 14: ``--ingest`` PNGs of ``--side`` x ``--side`` pixels
that compress to little, through the real ingest stage's child process (``python -m
stages.child``, as the daemon runs it) with ``--threads`` threads and ``--budget-mb`` (0: the
automatic budget), and prints the peak resident memory of that process (its ``VmHWM`` as it
ends) and what it took. Needs memory: 4 PNGs of 13000 x 13000 (0.5 MB each) on 4 threads took
11.6 GB before the budget (45 s); with it, 3.0 GB under the automatic budget of a 24 GB machine
(6.3 GB: all four at once; 15 s), 0.82 GB with ``--budget-mb 900`` (one at a time).

Nothing is asserted: these are numbers for the notes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
MAX_IMAGE_SIZE = 1600  # job.toml's default max_image_size


def _pattern(width: int, height: int) -> np.ndarray:
    """A smooth picture with some detail: realistic enough for the coders, cheap to make."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    red = (x + y) / 2
    green = 127 + 100 * np.sin(x / 9) * np.cos(y / 13)
    blue = np.broadcast_to(y, (height, width))
    return np.stack([red, np.broadcast_to(green, (height, width)), blue], axis=-1).astype(np.uint8)


def _rgb(width: int, height: int) -> Image.Image:
    return Image.fromarray(_pattern(width, height), "RGB")


def _png16_rgb(path: Path, width: int, height: int) -> None:
    """Pillow cannot write 16-bit RGB PNGs (it reads them as 8-bit RGB): written by hand."""
    wide = _pattern(width, height).astype(">u2") * 257
    rows = b"".join(b"\x00" + wide[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 6))
                     + chunk(b"IEND", b""))


def _rotated_exif() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to view
    return exif.tobytes()


def _gray16(width: int, height: int) -> Image.Image:
    values = (_pattern(width, height)[..., 0].astype(np.uint16) * 257)
    return Image.fromarray(values)  # uint16: mode I;16


def _gray32(width: int, height: int) -> Image.Image:
    """Mode I: 32-bit signed integers, which ingest clips to 16 bits."""
    return Image.fromarray(np.asarray(_gray16(width, height)).astype(np.int32))


# name -> (file suffix, writer, long side ingest downsizes to: None keeps the resolution)
Writer = Callable[[Path, int, int], None]
CASES: dict[str, tuple[str, Writer, int | None]] = {
    "jpeg-rgb": (".jpg", lambda p, w, h: _rgb(w, h).save(p, quality=90), MAX_IMAGE_SIZE),
    "jpeg-rgb-progressive-444": (".jpg", lambda p, w, h: _rgb(w, h).save(p, quality=90, progressive=True, subsampling=0),
                                 MAX_IMAGE_SIZE),
    "jpeg-rgb-rotated": (".jpg", lambda p, w, h: _rgb(w, h).save(p, quality=90, exif=_rotated_exif()), MAX_IMAGE_SIZE),
    "jpeg-gray": (".jpg", lambda p, w, h: _rgb(w, h).convert("L").save(p, quality=90), MAX_IMAGE_SIZE),
    "jpeg-cmyk": (".jpg", lambda p, w, h: _rgb(w, h).convert("CMYK").save(p, quality=90), MAX_IMAGE_SIZE),
    "jpeg-rgb-to-0.9": (".jpg", lambda p, w, h: _rgb(w, h).save(p, quality=90), None),  # max size: 0.9 x long side
    "png-rgb": (".png", lambda p, w, h: _rgb(w, h).save(p), MAX_IMAGE_SIZE),
    "png-rgb-original-size": (".png", lambda p, w, h: _rgb(w, h).save(p), None),
    "png-rgb-rotated": (".png", lambda p, w, h: _rgb(w, h).save(p, exif=_rotated_exif()), MAX_IMAGE_SIZE),
    "png-rgba": (".png", lambda p, w, h: _rgb(w, h).convert("RGBA").save(p), MAX_IMAGE_SIZE),
    "png-palette": (".png", lambda p, w, h: _rgb(w, h).convert("P").save(p), MAX_IMAGE_SIZE),
    "png-gray": (".png", lambda p, w, h: _rgb(w, h).convert("L").save(p), MAX_IMAGE_SIZE),
    "png-gray16": (".png", lambda p, w, h: _gray16(w, h).save(p), MAX_IMAGE_SIZE),
    "png-rgb16": (".png", _png16_rgb, MAX_IMAGE_SIZE),
    "tiff-gray16-deflate": (".tif", lambda p, w, h: _gray16(w, h).save(p, compression="tiff_adobe_deflate"),
                            MAX_IMAGE_SIZE),
    "tiff-gray32": (".tif", lambda p, w, h: _gray32(w, h).save(p), MAX_IMAGE_SIZE),
    "tiff-rgb-deflate": (".tif", lambda p, w, h: _rgb(w, h).save(p, compression="tiff_adobe_deflate"), MAX_IMAGE_SIZE),
    "tiff-rgb-one-strip": (".tif", lambda p, w, h: _rgb(w, h).save(p, compression="tiff_adobe_deflate",
                                                                     strip_size=w * h * 3), MAX_IMAGE_SIZE),
    "webp-rgb": (".webp", lambda p, w, h: _rgb(w, h).save(p, quality=90), MAX_IMAGE_SIZE),
    "heic-rgb": (".heic", lambda p, w, h: _rgb(w, h).save(p, quality=90), MAX_IMAGE_SIZE),
}
NEAR_FULL_SIZE = {"jpeg-rgb-to-0.9": 0.9, "png-rgb-original-size": None}


def _status_kib(field: str) -> int:
    return int(re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


def measure_one(photo: Path, warm_up: Path, max_long_side: int | None) -> None:
    """In a fresh process: what normalising ``photo`` adds to the resident memory, as JSON."""
    from stages.memory_budget import MemoryBudget
    from stages.photo_checks import PhotoRules, decode_memory_bytes, enable_heif, normalise_photo, own_pixel_limit

    rules = PhotoRules(max_long_side=max_long_side, max_image_pixels=10**10, heif_supported=enable_heif())
    unlimited = MemoryBudget(10**15)
    with tempfile.TemporaryDirectory() as out, own_pixel_limit():
        normalise_photo(warm_up, Path(out) / "warm.jpg", rules, unlimited)
        Path("/proc/self/clear_refs").write_text("5")  # the high-water mark starts again from here
        before = _status_kib("VmRSS")
        started = time.perf_counter()
        normalise_photo(photo, Path(out) / "photo.jpg", rules, unlimited)
        seconds = time.perf_counter() - started
        peak = _status_kib("VmHWM")
        with open(photo, "rb") as handle, Image.open(handle) as image:
            estimate = decode_memory_bytes(image, handle, max_long_side)
    print(json.dumps({"extra_bytes": (peak - before) * 1024, "seconds": seconds, "estimate": estimate}))


def formats_table(megapixels: float, cases: list[str]) -> None:
    from stages.photo_checks import enable_heif

    enable_heif()  # pillow-heif's writer too, where it is installed
    width = round((megapixels * 1e6 * 1.5) ** 0.5)
    height = round(width / 1.5)
    pixels = width * height
    print(f"{width}x{height} photos ({pixels / 1e6:.1f} MP); bytes a pixel = (peak RSS - RSS before) / pixels")
    print(f"{'case':28} {'mode':8} {'file MB':>8} {'measured':>9} {'estimate':>9} {'est/meas':>9} {'seconds':>8}")
    with tempfile.TemporaryDirectory() as folder:
        for name in cases:
            suffix, write, max_long_side = CASES[name]
            if name in NEAR_FULL_SIZE:
                factor = NEAR_FULL_SIZE[name]
                max_long_side = None if factor is None else round(width * factor)
            photo, warm_up = Path(folder) / f"{name}{suffix}", Path(folder) / f"warm-{name}{suffix}"
            try:
                write(photo, width, height)
                write(warm_up, 300, 200)
            except (OSError, KeyError, ValueError) as error:
                print(f"{name:28} cannot be written here: {error}")
                continue
            with Image.open(photo) as image:
                mode = image.mode
            command = [sys.executable, __file__, "--measure", str(photo), str(warm_up), str(max_long_side or 0)]
            done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(f"{name:28} failed: {done.stderr.strip().splitlines()[-1:]}")
                continue
            result = json.loads(done.stdout.strip().splitlines()[-1])
            measured = result["extra_bytes"] / pixels
            estimate = result["estimate"]
            print(f"{name:28} {mode:8} {photo.stat().st_size / 1e6:8.1f} {measured:9.2f} {estimate / pixels:9.2f} "
                  f"{estimate / result['extra_bytes']:9.2f} "
                  f"{result['seconds']:8.2f}")
            photo.unlink()


# The stage's child process as the daemon starts it (stages.child), writing its VmHWM into a file as
# it ends. Not ru_maxrss: a child started by vfork, as subprocess does, inherits its parent's
# high-water mark at exec, and this script's own is that of the photos it wrote.
CHILD_REPORTING_PEAK = """
import re, sys
from pathlib import Path
from stages.child import main
code = main([sys.argv[2], "stages.ingest:IngestStage"])
status = Path("/proc/self/status").read_text()
Path(sys.argv[1]).write_text(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1))
sys.exit(code)
"""


def ingest_attack(count: int, side: int, threads: int, budget_mb: int) -> None:
    """The real ingest child on ``count`` flat PNGs of ``side`` x ``side``: its peak RSS."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        source = root / "inbox" / "attack"
        source.mkdir(parents=True)
        flat = Image.new("RGB", (side, side), (90, 120, 150))
        for number in range(count):
            flat.putpixel((number, number), (number, 0, 0))  # not duplicates of each other
            flat.save(source / f"bomb-{number}.png", compress_level=9)
        del flat
        sizes = [path.stat().st_size for path in source.iterdir()]
        job_dir = root / "jobs" / "attack-1"
        context = {
            "job_id": "attack-1", "set_name": "attack", "source": str(source), "inbox": str(root / "inbox"),
            "job_dir": str(job_dir), "output_dir": str(job_dir / "ingest"),
            "options": {"max_image_size": MAX_IMAGE_SIZE, "original_resolution": False},
            "settings": {"threads": threads, "max_image_pixels": 178_956_970, "zip_max_bytes": 20 * 1024**3,
                         "zip_max_files": 10_000, "ignore_patterns": [], "ingest_memory_mb": budget_mb},
        }
        context_file = root / "context.json"
        context_file.write_text(json.dumps(context))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        peak_file = root / "peak"
        started = time.perf_counter()
        child = subprocess.run([sys.executable, "-c", CHILD_REPORTING_PEAK, str(peak_file), str(context_file)],
                               cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        seconds = time.perf_counter() - started
        stderr = child.stderr.decode(errors="replace")
        status = child.returncode
        result_file = job_dir / "ingest" / ("result.json" if status == 0 else "error.json")
        result = json.loads(result_file.read_text()) if result_file.exists() else {}
        images = result.get("images") or {}
        print(f"{count} PNGs of {side}x{side} ({max(sizes) / 1e6:.2f} MB each at most), {threads} threads, "
              f"ingest_memory_mb = {budget_mb}{' (automatic)' if budget_mb == 0 else ''}")
        print(f"exit status {status}, {seconds:.1f} s, "
              f"peak RSS of the ingest process {int(peak_file.read_text()) * 1024 / 1e9:.2f} GB")
        print(f"accepted {images.get('accepted')}, rejected {json.dumps(images.get('rejected'))}")
        if stderr.strip():
            print(stderr.strip()[-2000:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megapixels", type=float, default=24.0)
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="default: all")
    parser.add_argument("--ingest", type=int, metavar="COUNT", help="the attack: COUNT big PNGs through ingest")
    parser.add_argument("--side", type=int, default=13000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--budget-mb", type=int, default=0)
    parser.add_argument("--measure", nargs=3, metavar=("PHOTO", "WARM_UP", "MAX_LONG_SIDE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        photo, warm_up, max_long_side = args.measure
        measure_one(Path(photo), Path(warm_up), int(max_long_side) or None)
    elif args.ingest:
        ingest_attack(args.ingest, args.side, args.threads, args.budget_mb)
    else:
        formats_table(args.megapixels, args.case or list(CASES))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
