"""The demo's job page as a newcomer first sees it after ``make demo``, in real Chromium (WebGL on
SwiftShader): on a desktop screen with many more pixels than the photos the model was trained at,
the first frame looks like the poster scaled up, not like a field of needles.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow  # the demo trained by the real daemon

READY = '#viewer[data-state="ready"]'

# The first frame at 1280x800 against the poster scaled to the same size (PSNR over the poster's rectangle), on
# the published_demo fixture's scene (trained at 80x60: 13 screen pixels to a training pixel). The viewer of
# 2026-12-04 (f06f51b) blurred each splat by 0.3 screen pixels^2 whatever the screen: needles and streaks
# everywhere, 17.7-18.1 dB (two runs) when the fixture trained 1,500 iterations, 20.3 dB at its 500. Blurring by
# 0.3 pixels^2 of the training photos, as the trainer did: 30.4-31.0 dB at 1,500 iterations, 32.2 dB at 500.
# (On ``make demo``'s own scene, trained at 199x149: 20.2 and 31.2 dB.)
NEEDLES_PSNR = 20.3


def first_frame_vs_poster(page, poster_path: Path) -> float:
    """PSNR of the viewer's canvas against the poster scaled (Lanczos) to the rectangle the canvas shows the
    poster's camera frame in (fitted inside and centred, as camera.js's intrinsics place it)."""
    box = page.locator("#viewer canvas").bounding_box()
    shot = np.asarray(Image.open(io.BytesIO(page.screenshot(clip=box))).convert("RGB"), dtype=np.float64)
    height, width = shot.shape[:2]
    with Image.open(poster_path) as poster:
        fit = min(width / poster.width, height / poster.height)
        size = (round(poster.width * fit), round(poster.height * fit))
        scaled = np.asarray(poster.convert("RGB").resize(size, Image.LANCZOS), dtype=np.float64)
    left, top = (width - size[0]) // 2, (height - size[1]) // 2
    frame = shot[top:top + size[1], left:left + size[0]]
    return float(-10 * np.log10(np.mean((frame / 255 - scaled / 255) ** 2)))


def test_the_first_frame_on_a_desktop_looks_like_the_poster(published_demo, serve_folder, open_page):
    demo = published_demo
    (demo.outbox / "hide-ui.css").write_text(".viewer-ui, .job-panel { display: none !important; }\n")
    base = serve_folder(demo.outbox)
    page = open_page(viewport=(1280, 800))
    page.goto(f"{base}{demo.job_dir.name}/index.html")
    page.wait_for_selector(READY, state="attached", timeout=120_000)
    page.add_style_tag(url=base + "hide-ui.css")  # from 'self': the page's CSP refuses inline styles
    score = first_frame_vs_poster(page, demo.job_dir / "poster.jpg")
    print(f"first frame at 1280x800 vs the poster scaled up: {score:.2f} dB")
    assert score >= NEEDLES_PSNR + 4.0
    page.assert_clean()
