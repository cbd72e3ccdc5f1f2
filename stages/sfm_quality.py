"""Quality gates on registration: fail when no scene came out, warn when part of the set is left out.

Photos COLMAP cannot place are not an error by themselves (a stray shot of the floor), but
the photographer has to know which ones, since the splat will not cover what only they saw.
"""

from __future__ import annotations

from stages.base import StageFailed

MIN_REGISTERED = 3
LISTED_PHOTOS = 20  # a warning names at most this many; metrics.sfm.unregistered has all

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
        return (
            f"only {registered} of {total} photos ({fraction:.0%}) could be placed in one scene, "
            f"below sfm_min_registered_fraction ({min_fraction:.0%}), so the result covers only part of "
            f"what was photographed; left out: {left_out}. To include them: {HINT}",
        )
    return (f"{len(unregistered)} of {total} photos could not be placed in the scene and are left out: {left_out}",)


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:LISTED_PHOTOS])
    more = len(names) - LISTED_PHOTOS
    return shown if more <= 0 else f"{shown} and {more} more (see metrics.sfm.unregistered)"
