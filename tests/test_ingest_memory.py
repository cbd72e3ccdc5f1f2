"""Ingest's memory budget: its threads decode no more photos at once than ``ingest_memory_mb``
allows, a photo that alone needs more is rejected saying so, and 0 takes a quarter of what the
service may use (its cgroup's memory.max, else MemTotal).

The budget's own test runs threads against it; the stage's run the real ingest child process on
real photos and read its peak resident memory (VmHWM) from the kernel."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from daemon.config import ConfigError, load_settings
from stages.memory_budget import MB, MemoryBudget, decoding_budget_bytes
from stages.photo_checks import PhotoRules, decode_memory_bytes, normalise_photo
from tests.daemon_harness import wait_for
from tests.test_ingest import make_context, rejected_reasons, run_ingest

REPO_ROOT = Path(__file__).resolve().parents[1]

# The stage's child process as the daemon starts it, writing its VmHWM into a file as it ends. Not
# ru_maxrss: a child started by vfork, as subprocess does, inherits its parent's high-water mark.
CHILD_REPORTING_PEAK = """
import re, sys
from pathlib import Path
from stages.child import main
code = main([sys.argv[2], "stages.ingest:IngestStage"])
status = Path("/proc/self/status").read_text()
Path(sys.argv[1]).write_text(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1))
sys.exit(code)
"""


def gradient(width: int, height: int, offset: int) -> np.ndarray:
    """Smooth, so that it compresses to little; ``offset`` keeps photos from being duplicates."""
    x = np.arange(width, dtype=np.uint32)[None, :]
    y = np.arange(height, dtype=np.uint32)[:, None]
    red = ((x + offset) // 16 % 256).astype(np.uint8)
    green = np.broadcast_to((y // 12 % 256).astype(np.uint8), (height, width))
    blue = np.broadcast_to(np.uint8(offset * 37 % 256), (height, width))
    return np.stack([np.broadcast_to(red, (height, width)), green, blue], axis=-1)


def ingest_peak_bytes(tmp_path: Path, source: Path, settings: dict) -> tuple[int, dict]:
    """Run the real ingest child on ``source``; its peak resident memory and result.json."""
    context = make_context(tmp_path / source.name, source, settings=settings)
    context_file, peak_file = tmp_path / f"{source.name}.json", tmp_path / f"{source.name}.peak"
    context_file.write_text(json.dumps(context.to_json()))
    done = subprocess.run([sys.executable, "-c", CHILD_REPORTING_PEAK, str(peak_file), str(context_file)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return int(peak_file.read_text()) * 1024, json.loads((context.output_dir / "result.json").read_text())


# --- the budget ------------------------------------------------------------------------------


def test_reservations_wait_for_room_and_are_served_first_come_first_served():
    budget = MemoryBudget(100)
    served: list[str] = []
    releases = {"big": threading.Event(), "small": threading.Event()}
    got = {"big": threading.Event(), "small": threading.Event()}

    def reserve(name: str, nbytes: int) -> None:
        with budget.reserved(nbytes):
            served.append(name)
            got[name].set()
            releases[name].wait(10)

    holding = budget.reserved(60)
    holding.__enter__()
    big = threading.Thread(target=reserve, args=("big", 60))
    big.start()
    wait_for(lambda: budget.waiting == 1, 10, "the big reservation to wait")
    small = threading.Thread(target=reserve, args=("small", 30))
    small.start()
    wait_for(lambda: budget.waiting == 2, 10, "the small reservation to wait")
    # 30 would fit in the 40 left, but the 60 asked first: a large photo is not passed over
    assert served == [] and budget.free_bytes == 40

    holding.__exit__(None, None, None)
    assert got["big"].wait(10) and got["small"].wait(10)
    assert served == ["big", "small"] and budget.free_bytes == 10 and budget.waiting == 0
    releases["big"].set()
    releases["small"].set()
    big.join(10)
    small.join(10)
    assert budget.free_bytes == 100


def test_a_reservation_is_handed_back_when_its_block_raises_and_none_exceeds_the_whole():
    budget = MemoryBudget(100)
    with pytest.raises(RuntimeError), budget.reserved(100):
        raise RuntimeError("a corrupt photo")
    assert budget.free_bytes == 100
    with pytest.raises(ValueError), budget.reserved(101):
        pass


def fake_machine(tmp_path: Path, cgroup: str, limits: dict[str, str], mem_total_kib: int = 16_000_000) -> dict:
    """/proc/meminfo, /proc/self/cgroup and cgroup folders with memory.max, as the kernel shows them."""
    proc, root = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text(f"MemTotal:       {mem_total_kib} kB\nMemFree:         1000000 kB\n")
    (proc / "self" / "cgroup").write_text(cgroup)
    root.mkdir()
    for path, value in limits.items():
        (root / path).mkdir(parents=True, exist_ok=True)
        (root / path / "memory.max").write_text(value + "\n")
    return {"proc": proc, "cgroup_root": root}


@pytest.mark.parametrize("cgroup, limits, expected", [
    # MemoryMax=4G on the service: a quarter of it
    ("0::/system.slice/instarecon.service\n", {"system.slice": "max", "system.slice/instarecon.service": "4000000000"},
     1_000_000_000),
    # a smaller limit on the slice above counts too
    ("0::/system.slice/instarecon.service\n", {"system.slice": "2000000000", "system.slice/instarecon.service": "max"},
     500_000_000),
    # a container: its own cgroup is the root of what it sees
    ("0::/\n", {"": "6000000000"}, 1_500_000_000),
    # no limit, or one above the machine's memory, or cgroup v1 only: a quarter of MemTotal
    ("0::/system.slice/instarecon.service\n", {"system.slice/instarecon.service": "max"}, 16_000_000 * 1024 // 4),
    ("0::/system.slice/instarecon.service\n", {"system.slice/instarecon.service": str(10**15)}, 16_000_000 * 1024 // 4),
    ("4:memory:/process_api\n1:cpu:/\n", {"": "1000000000"}, 16_000_000 * 1024 // 4),
])
def test_the_automatic_budget_is_a_quarter_of_what_the_service_may_use(tmp_path, cgroup, limits, expected):
    machine = fake_machine(tmp_path, cgroup, limits)
    assert decoding_budget_bytes(0, **machine) == expected
    assert decoding_budget_bytes(1500, **machine) == 1500 * MB  # set: taken as it is


def test_the_setting_reaches_the_stage_and_must_not_be_negative():
    assert load_settings(None, {"ingest_memory_mb": 1500}, environ={}).stage_settings()["ingest_memory_mb"] == 1500.0
    assert load_settings(None, {}, environ={}).stage_settings()["ingest_memory_mb"] == 0.0
    with pytest.raises(ConfigError, match="setting 'ingest_memory_mb' must be 0 or more, got -1"):
        load_settings(None, {"ingest_memory_mb": -1}, environ={})


# --- the stage ---------------------------------------------------------------------------------


def test_ingest_threads_stay_within_the_budget_and_accept_every_photo(tmp_path):
    """Six 12 MP photos (JPEG, PNG, RGBA, 16-bit) on four threads, with a budget for one at a time:
    without it the four threads held about 0.9 GB at once."""
    budget_mb = 120
    small = tmp_path / "inbox" / "small"
    small.mkdir(parents=True)
    for index in range(3):
        Image.fromarray(gradient(300, 200, index)).save(small / f"small_{index}.jpg")
    photos = tmp_path / "inbox" / "big"
    photos.mkdir()
    for index in range(2):
        Image.fromarray(gradient(4000, 3000, index)).save(photos / f"jpeg_{index}.jpg", quality=90)
        Image.fromarray(gradient(4000, 3000, 10 + index)).save(photos / f"png_{index}.png", compress_level=1)
    Image.fromarray(gradient(4000, 3000, 20)).convert("RGBA").save(photos / "rgba.png", compress_level=1)
    Image.fromarray(gradient(4000, 3000, 30)[..., 0].astype(np.uint16) * 257).save(photos / "grey16.png",
                                                                                   compress_level=1)
    settings = {"threads": 4, "ingest_memory_mb": budget_mb}

    baseline, _ = ingest_peak_bytes(tmp_path, small, settings)  # the interpreter, Pillow, numpy
    peak, result = ingest_peak_bytes(tmp_path, photos, settings)

    assert result["images"] == {"found": 6, "accepted": 6, "rejected": []}
    assert peak <= baseline + budget_mb * MB, (
        f"peak {peak / MB:.0f} MB, baseline {baseline / MB:.0f} MB, budget {budget_mb} MB")


def test_a_photo_that_alone_needs_more_than_the_budget_is_rejected_saying_so(tmp_path):
    folder = tmp_path / "inbox" / "set"
    folder.mkdir(parents=True)
    for index in range(3):
        Image.fromarray(gradient(800, 600, index)).save(folder / f"photo_{index}.jpg")
    Image.new("RGB", (6000, 6000), (90, 120, 150)).save(folder / "huge.png")  # 0.1 MB on disk

    result, _, _ = run_ingest(tmp_path, folder, settings={"ingest_memory_mb": 120})

    assert result.images["accepted"] == 3
    reason = rejected_reasons(result)["huge.png"]
    match = re.fullmatch(r"6000x6000 needs about (\d+) MB to decode, more than this server's decoding budget of "
                         r"120 MB; save it with fewer pixels, or ask the server's operator to raise the budget", reason)
    assert match and int(match[1]) > 120, reason


def rotated_exif() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees to view
    return exif.tobytes()


def move_exif_after_the_pixels(path: Path) -> None:
    """Pillow writes eXIf before the pixels; other writers may put it after them, where Pillow
    reads it only while decoding."""
    data = path.read_bytes()
    chunks, position = [], 8
    while position < len(data):
        (length,) = struct.unpack(">I", data[position:position + 4])
        chunks.append(data[position:position + 12 + length])
        position += 12 + length
    exif_chunk = chunks.pop([chunk[4:8] for chunk in chunks].index(b"eXIf"))
    chunks.insert(len(chunks) - 1, exif_chunk)  # just before IEND
    path.write_bytes(data[:8] + b"".join(chunks))


def test_a_png_whose_orientation_follows_its_pixels_is_counted_as_turning(tmp_path):
    """Turning copies the pixels once more; the estimate must count that copy whenever the
    orientation cannot be known before decoding."""
    Image.fromarray(gradient(1200, 800, 1)).save(tmp_path / "upright.png")
    Image.fromarray(gradient(1200, 800, 1)).save(tmp_path / "header.png", exif=rotated_exif())
    later = tmp_path / "later.png"
    Image.fromarray(gradient(1200, 800, 1)).save(later, exif=rotated_exif())
    move_exif_after_the_pixels(later)

    def estimate(name: str) -> int:
        with open(tmp_path / name, "rb") as handle, Image.open(handle) as image:
            return decode_memory_bytes(image, handle, 1600)

    assert estimate("later.png") == estimate("header.png") > estimate("upright.png")
    rules = PhotoRules(max_long_side=1600, max_image_pixels=10**9, heif_supported=False)
    photo = normalise_photo(later, tmp_path / "out.jpg", rules, MemoryBudget(10**9))
    assert (photo.width, photo.height) == (800, 1200)  # it did turn
