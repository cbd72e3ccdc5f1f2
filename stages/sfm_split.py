"""Which registered photos train the splat and which are held out to measure it.

Sets of 8 photos and more: every 8th photo in name order, starting with the first, is held out,
the convention of the 3D Gaussian Splatting paper and Mip-NeRF 360, so that scores compare with
published ones. 5 to 7 photos: the one in the middle of the name order, which the photos either
side of it frame; an end photo would measure extrapolation, not the model (on Strecha's entry-P10
the end photo scores 1.3 dB less than the others). 3 or 4 photos: none can be spared, so all of
them train and the evaluation scores the training views, labelled as such wherever they appear.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

HOLD_OUT_EVERY = 8
MIN_PHOTOS_TO_HOLD_ONE_OUT = 5  # fewer, and the evaluation scores the training views
TRAIN_FILE = "train.txt"
TEST_FILE = "test.txt"

# how the held-out photos were chosen, as status.json's metrics.sfm.held_out_rule says it
EVERY_8TH = "every 8th photo"
MIDDLE_PHOTO = "the middle photo"
TRAINING_VIEWS = "none: the training views are scored"
NOT_ASKED = "none: eval = false"


@dataclass(frozen=True)
class HeldOutSplit:
    train: tuple[str, ...]
    test: tuple[str, ...]  # empty when evaluation is off or there are too few photos
    rule: str  # one of the rules above

    @property
    def scores_training_views(self) -> bool:
        return self.rule == TRAINING_VIEWS

    def write(self, folder: Path) -> None:
        """train.txt and test.txt, one image file name per line (test.txt may be empty)."""
        for name, images in ((TRAIN_FILE, self.train), (TEST_FILE, self.test)):
            (folder / name).write_text("".join(f"{image}\n" for image in images), encoding="utf-8")


def split_held_out(names: Iterable[str], hold_out: bool) -> HeldOutSplit:
    """Without ``hold_out`` (eval = false) every photo trains; with it, the module's rules."""
    ordered = sorted(names)
    if not hold_out:
        return HeldOutSplit(tuple(ordered), (), NOT_ASKED)
    if len(ordered) < MIN_PHOTOS_TO_HOLD_ONE_OUT:
        return HeldOutSplit(tuple(ordered), (), TRAINING_VIEWS)
    if len(ordered) < HOLD_OUT_EVERY:
        middle = ordered[len(ordered) // 2]
        return HeldOutSplit(tuple(name for name in ordered if name != middle), (middle,), MIDDLE_PHOTO)
    return HeldOutSplit(
        train=tuple(name for index, name in enumerate(ordered) if index % HOLD_OUT_EVERY),
        test=tuple(name for index, name in enumerate(ordered) if index % HOLD_OUT_EVERY == 0),
        rule=EVERY_8TH,
    )
