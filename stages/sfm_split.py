"""Which registered photos train the splat and which are held out to measure it.

Every 8th photo in name order, starting with the first, is held out: the convention of the
3D Gaussian Splatting paper and Mip-NeRF 360, so that scores compare with published ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

HOLD_OUT_EVERY = 8
TRAIN_FILE = "train.txt"
TEST_FILE = "test.txt"


@dataclass(frozen=True)
class HeldOutSplit:
    train: tuple[str, ...]
    test: tuple[str, ...]  # empty when evaluation is off or there are too few photos

    def write(self, folder: Path) -> None:
        """train.txt and test.txt, one image file name per line (test.txt may be empty)."""
        for name, images in ((TRAIN_FILE, self.train), (TEST_FILE, self.test)):
            (folder / name).write_text("".join(f"{image}\n" for image in images), encoding="utf-8")


def split_held_out(names: Iterable[str], hold_out: bool) -> HeldOutSplit:
    """With ``hold_out`` and at least 8 photos, every 8th goes to test; else all train."""
    ordered = sorted(names)
    if not hold_out or len(ordered) < HOLD_OUT_EVERY:
        return HeldOutSplit(tuple(ordered), ())
    return HeldOutSplit(
        train=tuple(name for index, name in enumerate(ordered) if index % HOLD_OUT_EVERY),
        test=tuple(name for index, name in enumerate(ordered) if index % HOLD_OUT_EVERY == 0),
    )
