"""Pictures for the outbox, which anyone with the page's address may load: JPEG, no metadata.

Scaled down to a long side, never up (a small photo stays as it is: a larger copy would only be
blurrier and heavier), written atomically. The cover photo of a set (ingest) and the held-out
strip (evaluate) are made here; the poster and the thumbnail (publish) share the encoding.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from stages.atomic_files import atomic_write_bytes

JPEG_QUALITY = 85


def fitted_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """``width`` x ``height`` scaled down, aspect kept, so that the long side is at most ``long_side``."""
    if max(width, height) <= long_side:
        return width, height
    scale = long_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def jpeg_bytes(image: Image.Image) -> bytes:
    """JPEG at ``JPEG_QUALITY``; Pillow writes no EXIF, ICC profile or comment unless asked."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return buffer.getvalue()


def write_web_jpeg(path: Path, image: Image.Image, long_side: int) -> tuple[int, int]:
    """``image`` as an RGB JPEG at most ``long_side`` on its long side; returns its size."""
    size = fitted_size(image.width, image.height, long_side)
    picture = image.convert("RGB")
    if size != picture.size:
        picture = picture.resize(size, Image.Resampling.LANCZOS)
    atomic_write_bytes(path, jpeg_bytes(picture))
    return size
