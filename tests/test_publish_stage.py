"""The publish stage on a job folder as training leaves it: floaters gone and counted, the scene
at the origin in every file (and upright: see test_publish_frame), the PLY and .splat that
viewers open, the cameras a viewer starts from, a poster and a thumbnail that show the scene and
carry no metadata, and the same files again when it runs again.

The scene is the tiny exact one of the trainer's tests, whose photos are rendered from known
Gaussians; far floaters are planted among them, single Gaussians and a small clump, as
photogrammetry leaves around a capture.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from plyfile import PlyData

from gaussian_splatting import rasterize

# the trainer's test scene: a plain folder beside its tests, not a package like ours
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gaussian-splatting" / "tests"))
from gs_synthetic_scene import HEIGHT, WIDTH, scene_gaussians, write_synthetic_source  # noqa: E402  # isort: skip

from daemon.config import Settings  # noqa: E402
from gaussian_splatting.gaussians import Gaussians
from gaussian_splatting.losses import psnr
from gaussian_splatting.ply_export import PROPERTY_NAMES, write_ply
from gaussian_splatting.ply_import import read_ply
from gaussian_splatting.outputs import camera_entries, write_cameras_json
from gaussian_splatting.scene import load_views, read_split
from gaussian_splatting.sog_export import read_sog
from gaussian_splatting.splat_export import read_splat
from stages.base import RESULT_FILE, StageContext, StageResult
from stages.publish import PublishStage
from stages.publish_views import RenderCamera, choose_camera, render_stills

ITERATIONS = 30000
FILES = {"scene.ply", "scene.splat", "scene.sog", "cameras.json", "thumb.jpg", "poster.jpg"}
SINGLES = 6  # lone floaters, far out in all directions
CLUMP = 4  # a small tight group far above the scene


def _floaters() -> np.ndarray:
    directions = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=np.float64)
    singles = 40.0 * directions + np.array([0.3, -0.2, 0.1])
    clump = np.array([0.0, 0.0, 25.0]) + 0.05 * np.arange(CLUMP * 3, dtype=np.float64).reshape(CLUMP, 3)
    return np.concatenate([singles, clump])


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A job folder as the pipeline leaves it after training: sfm/, train/model/ (the PLY and the
    cameras.json the trainer writes), train/result.json. The model is the scene's true Gaussians
    (training one takes too long for a test on two cores) with the floaters planted in it."""
    job_dir = tmp_path_factory.mktemp("publish") / "jobs" / "set-1"
    sfm = job_dir / "sfm"
    write_synthetic_source(sfm)
    state = scene_gaussians()

    model = job_dir / "train" / "model"
    write_cameras_json(model, load_views(sfm, read_split(sfm, "train.txt")))
    floaters = _floaters()
    planted = {name: torch.cat([tensor, tensor[: len(floaters)]]) for name, tensor in state.items()}
    planted["means"][-len(floaters):] = torch.tensor(floaters, dtype=torch.float32)
    ply = model / "point_cloud" / f"iteration_{ITERATIONS}" / "point_cloud.ply"
    write_ply(ply, planted)
    result = StageResult(
        metrics={"iterations": ITERATIONS, "gaussians": len(planted["means"]), "backend": "cpu", "resolution_scale": 1},
        outputs={"model": "train/model", "ply": ply.relative_to(job_dir).as_posix()},
    )
    (job_dir / "train" / RESULT_FILE).write_text(json.dumps(result.to_json()))
    return job_dir, len(state["means"])


def _context(job_dir: Path, **settings) -> StageContext:
    output_dir = job_dir / "publish"
    shutil.rmtree(output_dir, ignore_errors=True)  # as the runner leaves it for a stage that is not resumable
    output_dir.mkdir()
    return StageContext(
        job_id="set-1", set_name="set", source=job_dir / "inbox" / "set", inbox=job_dir / "inbox", job_dir=job_dir,
        output_dir=output_dir, options={"eval": True}, settings={**Settings().stage_settings(), **settings},
    )  # fmt: skip


@pytest.fixture(scope="module")
def published(job):
    job_dir, trained_count = job
    context = _context(job_dir)
    reports = []
    result = PublishStage().run(context, lambda percent, message, eta=None: reports.append((percent, message)))
    files = {path.name: path.read_bytes() for path in context.output_dir.iterdir()}
    return context, result, files, reports, trained_count


def _to_colmap(points: np.ndarray, metrics: dict) -> np.ndarray:
    """Published points [N, 3] back in COLMAP's frame: x = rotation^T x_published + centre."""
    frame = metrics["frame"]
    return np.asarray(points, dtype=np.float64) @ np.array(frame["rotation"]) + np.array(frame["centre"])


def _pixels(data: bytes) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32) / 255.0)


def test_floaters_are_removed_and_counted(published):
    context, result, files, reports, trained_count = published
    metrics = result.metrics
    assert metrics["gaussians_before"] == trained_count + SINGLES + CLUMP
    # all floaters go (the clump too: with fewer members than k, its neighbourhoods reach the scene)
    assert metrics["removed_statistical"] + metrics["removed_clusters"] == SINGLES + CLUMP, metrics
    assert metrics["gaussians"] == trained_count, metrics  # and the whole scene stays
    positions = _to_colmap(read_ply(context.output_dir / "scene.ply")["means"].numpy(), metrics)
    assert np.abs(positions).max() < 5.0  # every floater was at least 25 away
    assert result.warnings == ()
    assert [percent for percent, _ in reports] == sorted(percent for percent, _ in reports)
    assert reports[-1][0] == 100.0


def test_files_are_the_promised_ones_and_nothing_else(published):
    context, result, files, _, _ = published
    assert set(files) == FILES  # no temporary file left behind
    assert result.outputs == {
        "scene_ply": "publish/scene.ply", "scene_splat": "publish/scene.splat", "scene_sog": "publish/scene.sog",
        "cameras": "publish/cameras.json", "thumbnail": "publish/thumb.jpg", "poster": "publish/poster.jpg",
    }  # fmt: skip
    for relative in result.outputs.values():
        assert (context.job_dir / relative).is_file()
    assert result.metrics["ply_bytes"] == len(files["scene.ply"])
    assert result.metrics["splat_bytes"] == len(files["scene.splat"])
    assert result.metrics["sog_bytes"] == len(files["scene.sog"])
    json.dumps(result.to_json())  # result.json and status.json must be able to hold it


def test_ply_and_splat_hold_the_same_moved_gaussians(published):
    context, result, _, _, _ = published
    kept = result.metrics["gaussians"]
    ply = PlyData.read(str(context.output_dir / "scene.ply"))["vertex"]
    assert [prop.name for prop in ply.properties] == PROPERTY_NAMES and ply.count == kept
    ply_positions = np.stack([ply[axis] for axis in ("x", "y", "z")], axis=1)
    assert np.abs(ply_positions.mean(axis=0)).max() < 1e-5

    assert (context.output_dir / "scene.splat").stat().st_size == 32 * kept
    splat_positions = read_splat(context.output_dir / "scene.splat")["positions"]
    # the same positions, as sets: the .splat is sorted by size x opacity
    np.testing.assert_array_equal(np.unique(splat_positions, axis=0), np.unique(ply_positions, axis=0))

    # moved back to COLMAP's frame, they are Gaussians of the trained model, and their mean was the centre
    trained = json.loads((context.stage_dir("train") / RESULT_FILE).read_text())
    original = read_ply(context.job_dir / trained["outputs"]["ply"])["means"].double().numpy()
    moved_back = _to_colmap(ply_positions, result.metrics)
    assert np.linalg.norm(moved_back[:, None] - original[None], axis=-1).min(axis=1).max() < 1e-5
    np.testing.assert_allclose(moved_back.mean(axis=0), result.metrics["frame"]["centre"], atol=1e-5)


def test_cameras_are_every_placed_photo_s_moved_with_the_scene_the_held_out_ones_marked(published):
    context, result, files, _, _ = published
    sfm = context.stage_dir("sfm")
    trained = json.loads((context.stage_dir("train") / "model" / "cameras.json").read_text())
    held_out = camera_entries(load_views(sfm, read_split(sfm, "test.txt")))
    cameras = json.loads(files["cameras.json"])
    # the 16 photos in name order, 12 trained on and every 4th held out, as the person counts them
    assert [camera["img_name"] for camera in cameras] == [f"view{index:02d}" for index in range(16)]
    assert [camera["id"] for camera in cameras] == list(range(16))
    assert [camera.get("held_out", False) for camera in cameras] == [index % 4 == 0 for index in range(16)]
    assert len(trained) == 12 and len(held_out) == 4
    frame = result.metrics["frame"]
    rotation = np.array(frame["rotation"])
    by_name = {entry["img_name"]: entry for entry in [*trained, *held_out]}
    for after in cameras:
        before = by_name[after["img_name"]]
        assert after["colmap_to_published"] == {"rotation": frame["rotation"], "centre": frame["centre"]}
        moved = {"position", "rotation", "colmap_to_published", "id", "held_out"}
        assert {key: value for key, value in after.items() if key not in moved} == \
            {key: value for key, value in before.items() if key not in moved}
        assert "held_out" not in after or after["held_out"] is True  # training entries as the trainer's
        position = _to_colmap(np.array([after["position"]]), result.metrics)[0]
        np.testing.assert_allclose(position, before["position"], atol=1e-9)
        np.testing.assert_allclose(rotation.T @ np.array(after["rotation"]), before["rotation"], atol=1e-12)


def test_poster_and_thumbnail_show_the_scene_from_a_training_camera_without_metadata(published):
    context, result, files, _, _ = published
    for name in ("poster.jpg", "thumb.jpg"):
        with Image.open(io.BytesIO(files[name])) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            assert not image.getexif() and not {"exif", "icc_profile", "xmp", "comment"} & set(image.info), image.info
        assert b"Exif\x00\x00" not in files[name]
    poster, thumbnail = _pixels(files["poster.jpg"]), _pixels(files["thumb.jpg"])
    assert poster.shape == (HEIGHT, WIDTH, 3)  # the photos are 64x48: never larger than them
    assert thumbnail.shape == poster.shape  # and the thumbnail never larger than the poster
    assert psnr(thumbnail, poster) > 40.0  # the poster itself, not a blurrier render

    # The poster is what a viewer shows from that camera of cameras.json, on scene.ply ...
    view_name = result.metrics["view"]
    assert view_name in read_split(context.stage_dir("sfm"), "train.txt")  # a view the model learnt
    camera = next(entry for entry in json.loads(files["cameras.json"]) if entry["img_name"] == Path(view_name).stem)
    rotation = torch.tensor(camera["rotation"], dtype=torch.float64).T
    viewmat = torch.eye(4, dtype=torch.float64)
    viewmat[:3, :3], viewmat[:3, 3] = rotation, -rotation @ torch.tensor(camera["position"], dtype=torch.float64)
    K = torch.tensor([[camera["fx"], 0, WIDTH / 2], [0, camera["fy"], HEIGHT / 2], [0, 0, 1]], dtype=torch.float32)
    gaussians = Gaussians.from_state(read_ply(context.output_dir / "scene.ply"))
    with torch.no_grad():
        expected, _, _ = rasterize(**gaussians.render_inputs(), viewmat=viewmat.float(), K=K, width=WIDTH,
                                   height=HEIGHT, sh_degree=3, backend="cpu")
    assert psnr(poster, expected.clamp(0, 1)) > 30.0  # JPEG's loss only

    # ... and it looks like the photo taken from there (rendered from the same Gaussians).
    photo = load_views(context.stage_dir("sfm"), [view_name])[0].image
    flat = photo.mean(dim=(0, 1)).expand_as(photo)
    assert psnr(poster, photo) > max(30.0, psnr(flat, photo) + 15.0), (psnr(poster, photo), psnr(flat, photo))


def test_running_again_writes_the_same_files(published):
    context, result, files, _, _ = published
    again = PublishStage().run(_context(context.job_dir), lambda *args: None)
    assert {path.name: path.read_bytes() for path in context.output_dir.iterdir()} == files
    assert {k: v for k, v in again.metrics.items() if k != "seconds"} == \
        {k: v for k, v in result.metrics.items() if k != "seconds"}


def test_a_filter_that_would_remove_nearly_everything_is_not_applied(job, tmp_path):
    """Two equal halves, each below the minimum cluster fraction: the filter would publish
    nothing, so the model goes out unfiltered, and the job says so."""
    job_dir, _ = job
    copy = tmp_path / "set-1"
    shutil.copytree(job_dir / "sfm", copy / "sfm")
    shutil.copytree(job_dir / "train", copy / "train")
    trained = json.loads((copy / "train" / RESULT_FILE).read_text())
    state = read_ply(copy / trained["outputs"]["ply"])
    blob = {name: tensor[:40] for name, tensor in state.items()}
    blob["means"] = 0.2 * torch.rand(40, 3, generator=torch.Generator().manual_seed(1)) - 0.1
    halves = {name: torch.cat([tensor, tensor]) for name, tensor in blob.items()}
    halves["means"][40:] += torch.tensor([1.5, 0.0, 0.0])
    write_ply(copy / trained["outputs"]["ply"], halves)

    result = PublishStage().run(_context(copy, publish_min_cluster_fraction=0.6), lambda *args: None)
    assert result.metrics["gaussians"] == result.metrics["gaussians_before"] == 80
    assert result.metrics["removed_statistical"] == result.metrics["removed_clusters"] == 0
    assert result.warnings == (
        "the outlier filter would have kept only 0 of 80 Gaussians; published the model unfiltered",)
    assert PlyData.read(str(copy / "publish" / "scene.ply"))["vertex"].count == 80
    centre = halves["means"].double().mean(dim=0).numpy()
    np.testing.assert_allclose(result.metrics["frame"]["centre"], centre, atol=1e-6)


def test_a_large_photo_gives_a_1280_poster_and_a_320_thumbnail():
    """Photos larger than the poster: the poster is scaled down to 1280 on its long side and the
    thumbnail is the poster scaled down again (not a second render)."""
    generator = torch.Generator().manual_seed(0)
    count = 50
    state = {
        "means": torch.rand(count, 3, generator=generator) - 0.5,
        "log_scales": torch.full((count, 3), math.log(0.05)),
        "quats": torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(count, 1),
        "opacity_logits": torch.full((count,), 2.0),
        "sh_dc": torch.rand(count, 1, 3, generator=generator),
        "sh_rest": torch.zeros(count, 15, 3),
    }
    viewmat = torch.eye(4)
    viewmat[2, 3] = 3.0  # looking down +z at the origin from 3 units away
    K = torch.tensor([[2000.0, 0.0, 1000.0], [0.0, 2000.0, 750.0], [0.0, 0.0, 1.0]])
    camera = RenderCamera("big.jpg", viewmat, K, 2000, 1500)
    poster, thumbnail = render_stills(state, camera, "cpu")
    assert (poster.size, thumbnail.size) == ((1280, 960), (320, 240))
    assert np.asarray(thumbnail).std() > 5  # something drawn, not a blank picture
    # a model trained on the photos at a quarter size: the poster is no larger than that
    poster, thumbnail = render_stills(state, camera, "cpu", resolution_scale=4)
    assert (poster.size, thumbnail.size) == ((500, 375), (320, 240))


def test_the_poster_camera_is_the_one_that_sees_most_of_the_scene():
    """Of a camera facing away, a close-up and an overview, the overview; the first of equals."""
    points = np.random.default_rng(0).uniform(-1, 1, size=(500, 3))

    def camera(z: float, facing: float) -> dict:
        # on the z axis, looking along +z (facing 1) or -z (facing -1); camera-to-world rotation
        rotation = np.diag([1.0, facing, facing]).tolist()
        return {"position": [0.0, 0.0, z], "rotation": rotation, "fx": 50.0, "fy": 50.0, "width": 64, "height": 48}

    away, close_up, overview = camera(-4.0, -1.0), camera(-1.3, 1.0), camera(-4.0, 1.0)
    assert choose_camera([away, close_up, overview], points) == 2
    assert choose_camera([away, overview, close_up, overview], points) == 1


def test_a_scene_over_a_splat_budget_gets_a_whole_coarser_level_for_it(job, tmp_path):
    """publish_levels [500, 100, 60] on a 120-Gaussian scene: levels of at most 100 and 60 (500 holds it all),
    listed biggest first after the whole scene, each a .sog in the published frame, handed to the outbox."""
    job_dir, trained_count = job
    copy = tmp_path / "set-1"
    shutil.copytree(job_dir / "sfm", copy / "sfm")
    shutil.copytree(job_dir / "train", copy / "train")
    result = PublishStage().run(_context(copy, publish_levels=[500, 100, 60]), lambda *args: None)
    levels = result.metrics["levels"]
    assert [level["file"] for level in levels] == ["scene.sog", "scene.lod1.sog", "scene.lod2.sog"]
    assert levels[0]["gaussians"] == result.metrics["gaussians"] == trained_count
    assert 90 <= levels[1]["gaussians"] <= 100 and 50 <= levels[2]["gaussians"] <= 60, levels
    for level in levels:
        path = copy / "publish" / level["file"]
        assert level["bytes"] == path.stat().st_size
        decoded = read_sog(path)
        assert len(decoded["means"]) == level["gaussians"]
        # the same scene, centred in the published frame: its centre of mass stays where the whole scene's is
        assert np.abs(decoded["means"].mean(axis=0)).max() < 0.2
    assert result.outputs["scene_sog_lod1"] == "publish/scene.lod1.sog"
    assert result.outputs["scene_sog_lod2"] == "publish/scene.lod2.sog"
    assert {"scene_sog_lod1", "scene_sog_lod2"} <= set(result.to_outbox)
