"""Quality gates on registration: fail when no scene came out, warn when part of the set is left out.

Photos COLMAP cannot place are not an error by themselves (a stray shot of the floor), but
the photographer has to know which ones, and why (``unplaced_reasons``, from the matching's
database), since the splat will not cover what only they saw.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Collection

import pycolmap

from stages.base import StageFailed

log = logging.getLogger("stages.sfm")

MIN_REGISTERED = 3
LISTED_PHOTOS = 20  # a warning names at most this many; metrics.sfm.unregistered has all
# Fewer features than this and a photo is plain, dark or blurred: a photo that matches its
# neighbours has hundreds (the tests' 160x120 renders: 150 to 400).
MIN_FEATURES = 50
# Two photos match when this many of their features agree on one geometry (COLMAP's
# TwoViewGeometryOptions.min_num_inliers): fewer and matching left the pair out.
MIN_PAIR_INLIERS = 15

# Why a photo was not placed, in the person's words (metrics.sfm.unplaced).
LITTLE_DETAIL = "it shows too little detail to be matched (a plain surface, too dark, or blurred)"
NO_MATCH = "it matches none of the other photos: no part of it was found in them"
MATCHES_ONLY_UNPLACED = ("it matches only photos that could not be placed either: together they show a part of "
                         "the scene that the others do not")
TOO_FEW_SHARED = "it shares too few features with the other photos to be placed"

HINT = (
    "photos must overlap: each part of the scene should be in several shots taken a few steps "
    "apart (neighbouring photos sharing about two thirds of their view), of surfaces with visible "
    "texture. Plain walls, sky, water, glass, mirrors and shiny metal, motion blur and moving "
    "people or objects all keep photos from matching"
)


def check_points(points: int, registered: int) -> None:
    """StageFailed for a model without a single 3D point: its poses rest on nothing, and training
    would have no points to start from."""
    if points == 0:
        raise StageFailed(
            f"structure from motion placed {registered} photos but could triangulate no 3D point from them",
            hint=HINT,
        )


def check_registration(registered: int, unregistered: list[str], min_fraction: float) -> tuple[str, ...]:
    """Warnings naming the photos left out; StageFailed when fewer than 3 photos were placed.

    ``unregistered`` holds the user's file names of the photos left out.
    """
    total = registered + len(unregistered)
    if registered < MIN_REGISTERED:
        placed = "none" if registered == 0 else f"only {registered}"
        raise StageFailed(
            f"structure from motion could place {placed} of the {total} photos in 3D; "
            f"at least {MIN_REGISTERED} that see the same scene are needed",
            hint=HINT,
        )
    if not unregistered:
        return ()
    fraction = registered / total
    left_out = _listed(unregistered)
    if fraction < min_fraction:
        log.warning("%d of %d photos placed: below sfm_min_registered_fraction (%.0f%%), so the warning "
                    "gives the person the advice on overlap", registered, total, 100 * min_fraction)
        return (
            f"only {registered} of {total} photos ({fraction:.0%}) could be placed in one scene, "
            f"so the result covers only part of what was photographed; left out: {left_out}. "
            f"To include them: {HINT}",
        )
    return (f"{len(unregistered)} of {total} photos could not be placed in the scene and are left out: {left_out}",)


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:LISTED_PHOTOS])
    more = len(names) - LISTED_PHOTOS
    return shown if more <= 0 else f"{shown} and {more} more (see metrics.sfm.unregistered)"


def unplaced_reasons(database: Path, unplaced: Collection[str], placed: Collection[str]) -> dict[str, str]:
    """Why each photo in ``unplaced`` (names as COLMAP's database has them) was left out, read from
    what feature extraction and matching found: too few features, no match at all, matches only
    with other photos left out (a second, separate group), or too few with the scene."""
    placed, unplaced = set(placed), set(unplaced)
    if not unplaced:
        return {}
    with pycolmap.Database.open(database) as db:
        names = {image.image_id: image.name for image in db.read_all_images()}
        features = {name: db.num_keypoints_for_image(image_id) for image_id, name in names.items() if name in unplaced}
        partners: dict[str, set[str]] = {name: set() for name in unplaced}
        for pair_id, inliers in zip(*db.read_two_view_geometry_num_inliers()):
            if inliers < MIN_PAIR_INLIERS:
                continue
            first, second = (names.get(image_id) for image_id in pycolmap.pair_id_to_image_pair(pair_id))
            for one, other in ((first, second), (second, first)):
                if one in partners and other is not None:
                    partners[one].add(other)
    reasons = {}
    for name in sorted(unplaced):
        if not partners[name]:
            reasons[name] = LITTLE_DETAIL if features.get(name, 0) < MIN_FEATURES else NO_MATCH
        elif not partners[name] & placed:
            reasons[name] = MATCHES_ONLY_UNPLACED
        else:
            reasons[name] = TOO_FEW_SHARED
    return reasons
