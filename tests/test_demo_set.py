"""The synthetic demo set: what it writes, that it is textured, and that its cameras are right.

Small renders only (160x120, 8 views); whether real SfM registers the full-size set is
checked by bench/synthetic_sfm_check.py, which needs pycolmap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from daemon.demo_set import OBJECT_TOP, SCENE_TARGET, SyntheticView, main, write_demo_set

WIDTH, HEIGHT, VIEWS = 160, 120, 8
EXIF_IFD, FOCAL_LENGTH, FOCAL_LENGTH_35MM, MAKE, MODEL = 0x8769, 0x920A, 0xA405, 0x010F, 0x0110


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, list[SyntheticView]]:
    folder = tmp_path_factory.mktemp("sets") / "nested" / "demo"
    return folder, write_demo_set(folder, views=VIEWS, width=WIDTH, height=HEIGHT, seed=0)


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float32)


def project(view: SyntheticView, point) -> tuple[float, float, float]:
    """(x, y, depth) of a world point in the view, in the cameras' pixel convention."""
    camera = np.asarray(view.R_world_to_camera) @ np.asarray(point) + np.asarray(view.t_world_to_camera)
    x, y, w = np.asarray(view.K) @ camera
    return x / w, y / w, camera[2]


def test_writes_only_the_photos_and_ready(demo):
    folder, views = demo
    names = [f"view_{i:03d}.jpg" for i in range(VIEWS)]
    assert [view.file for view in views] == names
    assert sorted(p.name for p in folder.iterdir()) == sorted(names + ["READY"])
    assert (folder / "READY").stat().st_size == 0


def test_photos_are_jpegs_of_the_requested_size(demo):
    folder, views = demo
    for view in views:
        assert (view.width, view.height) == (WIDTH, HEIGHT)
        with Image.open(folder / view.file) as image:
            assert image.format == "JPEG"
            assert image.size == (WIDTH, HEIGHT)


def test_exif_focal_length_matches_intrinsics(demo):
    folder, views = demo
    for view in views:
        with Image.open(folder / view.file) as image:
            exif = image.getexif()
        details = exif.get_ifd(EXIF_IFD)
        expected_mm = view.K[0][0] * 36 / view.width  # 36 mm-wide sensor
        assert exif[MAKE] == "InstaRecon3D"
        assert exif[MODEL] == "Synthetic camera"
        assert float(details[FOCAL_LENGTH]) == pytest.approx(expected_mm, rel=1e-3)
        assert details[FOCAL_LENGTH_35MM] == round(expected_mm)


def test_cameras_are_pinholes_on_a_ring(demo):
    _, views = demo
    for view in views:
        K = np.asarray(view.K)
        R = np.asarray(view.R_world_to_camera)
        assert K[0, 0] == K[1, 1] > 0
        assert (K[0, 2], K[1, 2]) == (WIDTH / 2, HEIGHT / 2)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-9)
        assert np.linalg.det(R) == pytest.approx(1)
        np.testing.assert_allclose(-R.T @ np.asarray(view.t_world_to_camera), view.center, atol=1e-9)
    angles = [np.degrees(np.arctan2(v.center[1], v.center[0])) % 360 for v in views]
    np.testing.assert_allclose(np.diff(angles), 360 / VIEWS)


@pytest.mark.parametrize("point", [SCENE_TARGET, OBJECT_TOP], ids=["target", "object-top"])
def test_every_camera_sees_the_objects(demo, point):
    _, views = demo
    for view in views:
        x, y, depth = project(view, point)
        assert depth > 0
        assert 0 < x < view.width and 0 < y < view.height
    # The cameras aim at the target: it projects to the image centre.
    for view in views:
        x, y, _ = project(view, SCENE_TARGET)
        assert (x, y) == pytest.approx((WIDTH / 2, HEIGHT / 2))


def test_every_part_of_every_photo_is_textured(demo):
    """SIFT needs texture everywhere. A blank patch measures a grey-level std below 2;
    measured here (seeds 0-5) every 16x16 patch has more than 9 and the median is over 28."""
    folder, views = demo
    for view in views:
        grey = pixels(folder / view.file).mean(axis=2)
        rows, cols = HEIGHT // 16, WIDTH // 16
        patches = grey[: rows * 16, : cols * 16].reshape(rows, 16, cols, 16).std(axis=(1, 3))
        assert patches.min() > 6, view.file
        assert np.median(patches) > 20, view.file


def test_cameras_can_cover_an_arc(tmp_path):
    """Few-view sets for fast SfM tests need adjacent views close together."""
    views = write_demo_set(tmp_path / "arc", views=3, width=32, height=24, spacing_degrees=15)
    angles = [np.degrees(np.arctan2(v.center[1], v.center[0])) for v in views]
    np.testing.assert_allclose(angles, [0, 15, 30])


def test_views_differ_from_each_other(demo):
    folder, views = demo
    images = [pixels(folder / view.file) for view in views]
    for a, b in zip(images, images[1:] + images[:1]):
        assert np.abs(a - b).mean() > 20


def test_same_seed_same_bytes_other_seed_other_photos(demo, tmp_path):
    folder, views = demo
    again = write_demo_set(tmp_path / "again", views=VIEWS, width=WIDTH, height=HEIGHT, seed=0,
                           ready_marker=False)
    other = write_demo_set(tmp_path / "other", views=VIEWS, width=WIDTH, height=HEIGHT, seed=1,
                           ready_marker=False)
    assert again == views == other  # the seed changes the textures, not the cameras
    assert not (tmp_path / "again" / "READY").exists()
    for view in views:
        assert (tmp_path / "again" / view.file).read_bytes() == (folder / view.file).read_bytes()
        difference = pixels(tmp_path / "other" / view.file) - pixels(folder / view.file)
        assert np.abs(difference).mean() > 20


def test_rewriting_a_set_replaces_its_photos(tmp_path):
    folder = tmp_path / "demo"
    write_demo_set(folder, views=3, width=32, height=24, seed=0)
    (folder / "notes.txt").write_text("not ours")
    write_demo_set(folder, views=2, width=32, height=24, seed=1, ready_marker=False)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "view_000.jpg", "view_001.jpg"]


def test_rejects_degenerate_requests(tmp_path):
    with pytest.raises(ValueError):
        write_demo_set(tmp_path / "none", views=0)
    with pytest.raises(ValueError):
        write_demo_set(tmp_path / "tiny", width=8, height=6)


def test_command_line(tmp_path, capsys):
    folder = tmp_path / "cli"
    assert main([str(folder), "--views", "3", "--size", "64x48", "--seed", "2", "--no-ready"]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["view_000.jpg", "view_001.jpg", "view_002.jpg"]
    output = capsys.readouterr().out.strip()
    assert len(output.splitlines()) == 1
    assert "3 views" in output and "64x48" in output and str(folder) in output
    with Image.open(folder / "view_000.jpg") as image:
        assert image.size == (64, 48)


def test_command_line_rejects_a_bad_size(tmp_path):
    with pytest.raises(SystemExit):
        main([str(tmp_path / "x"), "--size", "big"])
