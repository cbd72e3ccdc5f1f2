"""Which photo pairs to match, and matching them: exhaustive for small sets, sequential above.

Exhaustive matching tries every pair (n^2 / 2), which is what small sets taken in any order
need; a large set is matched with its neighbours in name order (phones and cameras number
their shots), and loop detection adds the pairs where a walk around comes back to its
start. Loop detection needs a vocabulary tree; pycolmap would download one, and offline
that download aborts the whole process, so only a local file the operator configured is
ever used, and only after it has been read once without error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pycolmap

EXHAUSTIVE = "exhaustive"
SEQUENTIAL = "sequential"
# Each pair's geometric verification (RANSAC) starts from this seed. COLMAP's default (-1) draws
# from a per-thread generator, so with several threads the verified matches depended on which
# thread took which pair, and on a small set the mapper then ended with no 3D point in some runs.
VERIFICATION_SEED = 0


@dataclass(frozen=True)
class MatchingPlan:
    method: str  # EXHAUSTIVE or SEQUENTIAL
    vocab_tree: Path | None  # loop detection with this tree; None: off
    warning: str | None  # for status.json: a large set goes without loop detection, and what the person can do
    detail: str | None = None  # for the journal: why, with the settings and the tree's path


def plan_matching(photos: int, exhaustive_max: int, vocab_tree_setting: str) -> MatchingPlan:
    if photos <= exhaustive_max:
        return MatchingPlan(EXHAUSTIVE, None, None)
    sequential = f"{photos} photos are more than sfm_exhaustive_max_images ({exhaustive_max}): matched sequentially"
    warning = (f"with {photos} photos, each was matched only with its neighbours in file name order, without "
               "loop detection: where the photos come back to a place photographed before, the scene may not "
               "join up; name the photos in the order they were taken")
    if not vocab_tree_setting:
        return MatchingPlan(SEQUENTIAL, None, warning,
                            f"{sequential}, without loop detection: no sfm_vocab_tree_path configured")
    problem = _unreadable(Path(vocab_tree_setting))
    if problem is not None:
        return MatchingPlan(SEQUENTIAL, None, warning, f"{sequential}, without loop detection: {problem}")
    return MatchingPlan(SEQUENTIAL, Path(vocab_tree_setting), None)


def _unreadable(tree: Path) -> str | None:
    """Why the vocabulary tree cannot be used, or None when it loads."""
    if not tree.is_file():
        return f"the vocabulary tree {tree} (sfm_vocab_tree_path) does not exist"
    try:
        pycolmap.VisualIndex.read(tree)
    except ValueError as error:  # pycolmap's failed checks; inside matching they abort the process
        return f"the vocabulary tree {tree} (sfm_vocab_tree_path) cannot be read: {error}"
    return None


def match_features(database: Path, plan: MatchingPlan, *, threads: int, device: pycolmap.Device) -> None:
    matching = pycolmap.FeatureMatchingOptions(num_threads=threads)
    verification = pycolmap.TwoViewGeometryOptions()
    verification.ransac.random_seed = VERIFICATION_SEED
    if plan.method == EXHAUSTIVE:
        pycolmap.match_exhaustive(database, matching_options=matching, verification_options=verification, device=device)
        return
    pairing = pycolmap.SequentialPairingOptions(num_threads=threads)
    if plan.vocab_tree is not None:
        pairing.loop_detection = True
        pairing.vocab_tree_path = plan.vocab_tree
    pycolmap.match_sequential(database, matching_options=matching, pairing_options=pairing,
                              verification_options=verification, device=device)
