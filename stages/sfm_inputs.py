"""The ingest output as structure from motion sees it: photo copies, sizes and camera EXIF.

SfM never opens the user's set: ``ingest/manifest.json`` says which copy came from
which file (for messages a photographer recognises) and what each camera's EXIF said.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from stages.ingest import IMAGES_DIR, MANIFEST_FILE


@dataclass(frozen=True)
class IngestedPhoto:
    name: str  # file name in ingest/images/, as COLMAP, images/ and train.txt name it
    source: str  # the user's file, relative to the set
    width: int
    height: int
    make: str | None
    model: str | None
    focal_length_mm: float | None
    focal_length_35mm: float | None


@dataclass(frozen=True)
class IngestedSet:
    images_dir: Path
    photos: tuple[IngestedPhoto, ...]  # in name order

    def shares_one_camera(self) -> bool:
        """True when every photo has the same size, make, model and focal length (or no EXIF).

        One set of intrinsics fitted to all photos is far better constrained than one per
        photo: on real sets it roughly halves the pose error. Anything that tells the
        photos apart (a zoom, a second phone) gets a camera per photo instead.
        """
        return len({(p.width, p.height, p.make, p.model, p.focal_length_mm, p.focal_length_35mm)
                    for p in self.photos}) == 1

    def sources(self, names: list[str]) -> list[str]:
        """The user's file names for these copies, for warnings and status.json."""
        by_name = {photo.name: photo.source for photo in self.photos}
        return [by_name[name] for name in names]


def read_ingested(ingest_dir: Path) -> IngestedSet:
    manifest = json.loads((ingest_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
    photos = [
        IngestedPhoto(
            name=PurePosixPath(entry["image"]).name,
            source=entry["file"],
            width=int(entry["width"]),
            height=int(entry["height"]),
            make=entry.get("make"),
            model=entry.get("model"),
            focal_length_mm=entry.get("focal_length_mm"),
            focal_length_35mm=entry.get("focal_length_35mm"),
        )
        for entry in manifest["images"]
    ]
    return IngestedSet(ingest_dir / IMAGES_DIR, tuple(sorted(photos, key=lambda photo: photo.name)))
