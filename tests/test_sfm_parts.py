"""The SfM stage's decisions, one at a time: split, camera sharing, matching plan, quality gates."""

from __future__ import annotations

from pathlib import Path

import pytest

from stages.base import StageFailed
from stages.colmap_matching import EXHAUSTIVE, SEQUENTIAL, MatchingPlan, plan_matching
from stages.sfm_inputs import IngestedPhoto, IngestedSet
from stages.sfm_quality import LISTED_PHOTOS, check_registration
from stages.sfm_split import EVERY_8TH, MIDDLE_PHOTO, NOT_ASKED, TRAINING_VIEWS, split_held_out


def test_every_eighth_photo_in_name_order_is_held_out_starting_with_the_first():
    names = [f"img_{index:02d}.jpg" for index in range(17)]
    split = split_held_out(reversed(names), hold_out=True)
    assert split.test == ("img_00.jpg", "img_08.jpg", "img_16.jpg")
    assert split.train == tuple(name for name in names if name not in split.test)
    assert split.rule == EVERY_8TH and not split.scores_training_views


@pytest.mark.parametrize("count, held_out, rule", [
    (8, ["img_0"], EVERY_8TH),  # the papers' rule from 8 photos on: comparable scores
    (7, ["img_3"], MIDDLE_PHOTO),  # 3 photos on either side
    (6, ["img_3"], MIDDLE_PHOTO),
    (5, ["img_2"], MIDDLE_PHOTO),  # never an end photo: that would score extrapolation
])
def test_which_photo_is_held_out_by_the_set_s_size(count, held_out, rule):
    names = [f"img_{index}" for index in range(count)]
    split = split_held_out(reversed(names), hold_out=True)
    assert (list(split.test), split.rule, split.scores_training_views) == (held_out, rule, False)
    assert split.train == tuple(name for name in names if name not in held_out)


@pytest.mark.parametrize("count", [3, 4])
def test_a_set_too_small_to_spare_a_photo_trains_on_all_and_scores_the_training_views(count):
    names = [f"img_{index}" for index in range(count)]
    split = split_held_out(names, hold_out=True)
    assert (split.train, split.test, split.rule) == (tuple(names), (), TRAINING_VIEWS)
    assert split.scores_training_views


@pytest.mark.parametrize("count", [4, 7, 8, 20])
def test_without_eval_everything_trains_and_nothing_is_scored(count):
    names = [f"img_{index:02d}.jpg" for index in range(count)]
    split = split_held_out(names, hold_out=False)
    assert (split.train, split.test, split.rule) == (tuple(names), (), NOT_ASKED)
    assert not split.scores_training_views


def test_split_files_have_one_name_per_line_and_test_txt_exists_even_when_empty(tmp_path):
    split_held_out(["b.jpg", "a.jpg"], hold_out=True).write(tmp_path)
    assert (tmp_path / "train.txt").read_text() == "a.jpg\nb.jpg\n"
    assert (tmp_path / "test.txt").read_text() == ""


def _photo(name: str, width: int = 640, height: int = 480, focal: float | None = 5.4,
           model: str | None = "PowerShot A10") -> IngestedPhoto:
    return IngestedPhoto(name, name, width, height, "Canon" if model else None, model, focal, None)


@pytest.mark.parametrize("photos, shared", [
    ([_photo("a.jpg"), _photo("b.jpg")], True),
    ([_photo("a.jpg", focal=None, model=None), _photo("b.jpg", focal=None, model=None)], True),  # no EXIF
    ([_photo("a.jpg"), _photo("b.jpg", focal=7.1)], False),  # zoomed
    ([_photo("a.jpg"), _photo("b.jpg", model="PowerShot A20")], False),  # a second camera
    ([_photo("a.jpg"), _photo("b.jpg", width=480, height=640)], False),  # turned upright
    ([_photo("a.jpg"), _photo("b.jpg", focal=None, model=None)], False),  # one has lost its EXIF
])
def test_one_camera_is_shared_only_when_size_and_exif_agree(photos, shared):
    assert IngestedSet(Path("images"), tuple(photos)).shares_one_camera() is shared


def test_small_sets_are_matched_exhaustively():
    assert plan_matching(100, 100, "") == plan_matching(100, 100, "/no/such/tree") == MatchingPlan(EXHAUSTIVE, None, None)


def test_large_sets_without_a_vocabulary_tree_match_sequentially_and_say_loops_stay_open():
    plan = plan_matching(101, 100, "")
    assert (plan.method, plan.vocab_tree) == (SEQUENTIAL, None)
    assert "without loop detection" in plan.warning and "name the photos in the order" in plan.warning
    assert "sfm_" not in plan.warning  # the person reads it: no setting of the server's
    assert "no sfm_vocab_tree_path configured" in plan.detail  # the journal does


def test_a_missing_or_unreadable_vocabulary_tree_turns_loop_detection_off_with_the_reason(tmp_path):
    missing = plan_matching(300, 100, str(tmp_path / "tree.bin"))
    assert missing.vocab_tree is None and f"{tmp_path / 'tree.bin'} (sfm_vocab_tree_path) does not exist" in missing.detail
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"not a vocabulary tree" * 50)
    unreadable = plan_matching(300, 100, str(garbage))
    assert unreadable.vocab_tree is None and "cannot be read" in unreadable.detail
    for plan in (missing, unreadable):  # the person learns what it means, not where the server keeps what
        assert "without loop detection" in plan.warning and str(tmp_path) not in plan.warning


@pytest.mark.parametrize("registered", [0, 1, 2])
def test_fewer_than_three_placed_photos_fail_with_the_count_and_what_to_change(registered):
    with pytest.raises(StageFailed) as failure:
        check_registration(registered, [f"p{index}.jpg" for index in range(10)], 0.6)
    assert f"{registered or 'none'} of the {registered + 10} photos" in failure.value.message
    for advice in ("overlap", "texture", "motion blur", "glass"):
        assert advice in failure.value.hint


def test_photos_left_out_are_named_and_a_low_share_gets_the_advice_too():
    (few_missing,) = check_registration(9, ["x/IMG_9.jpg"], 0.6)
    assert "1 of 10 photos" in few_missing and "x/IMG_9.jpg" in few_missing and "overlap" not in few_missing
    (most_missing,) = check_registration(5, [f"IMG_{index}.jpg" for index in range(5)], 0.6)
    assert "only 5 of 10 photos (50%)" in most_missing and "IMG_4.jpg" in most_missing
    assert "overlap" in most_missing
    assert check_registration(10, [], 0.6) == ()


def test_a_long_list_of_left_out_photos_is_cut_in_the_warning():
    left_out = [f"IMG_{index:03d}.jpg" for index in range(LISTED_PHOTOS + 5)]
    (warning,) = check_registration(100, left_out, 0.6)
    assert f"IMG_{LISTED_PHOTOS - 1:03d}.jpg" in warning and f"IMG_{LISTED_PHOTOS:03d}.jpg" not in warning
    assert "and 5 more (see metrics.sfm.unregistered)" in warning
