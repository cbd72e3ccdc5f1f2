"""The published frame: downloads the right way up (+y), on the demo set and on a real set, with
the transform from COLMAP's frame written where a reader finds it; and the scene turned whole,
view-dependent colour included, so every turned camera sees what it saw.

The up tests run the real ingest and SfM stages (the demo set's 24 views at 160x120 in about 2 s,
fountain-p11's 11 photos in about 6 s on two cores), then publish a model made of the SfM points
as the trainer initialises its Gaussians from them: the cameras are the real ones, and training
would not move them.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.spatial import cKDTree

from daemon.config import Settings
from daemon.demo_set import write_demo_set
from gaussian_splatting import rasterize
from gaussian_splatting.gaussians import Gaussians, gaussians_from_points, read_points
from gaussian_splatting.losses import psnr
from gaussian_splatting.outputs import write_cameras_json
from gaussian_splatting.ply_export import write_ply
from gaussian_splatting.ply_import import read_ply
from gaussian_splatting.rigid_motion import moved_state
from gaussian_splatting.scene import load_views, read_split
from stages.base import RESULT_FILE, StageContext, StageResult
from stages.publish import PublishStage
from stages.publish_frame import PublishedFrame
from stages.web_images import jpeg_bytes
from tests.test_sfm import DATASETS, run_sfm

UP = np.array([0.0, 1.0, 0.0])


def _degrees(a: np.ndarray, b: np.ndarray) -> float:
    cosine = float(a @ b) / float(np.linalg.norm(a) * np.linalg.norm(b))
    return math.degrees(math.acos(min(1.0, max(-1.0, cosine))))


def _published(job_dir: Path) -> dict:
    """Publish a model of the SfM points in ``job_dir``: Gaussians as the trainer starts from
    them, then turned, stretched and given strong view-dependent colour, as training leaves them."""
    sfm = job_dir / "sfm"
    xyz, rgb = read_points(sfm / "points.ply")
    model = job_dir / "train" / "model"
    write_cameras_json(model, load_views(sfm, read_split(sfm, "train.txt")))
    ply = model / "point_cloud" / "iteration_0" / "point_cloud.ply"
    state = gaussians_from_points(xyz, rgb, 3, 0.8).state()
    generator = torch.Generator().manual_seed(0)
    state["quats"] = torch.randn(state["quats"].shape, generator=generator)
    state["log_scales"] += 0.5 * torch.randn(state["log_scales"].shape, generator=generator)
    state["sh_rest"] = 0.3 * torch.randn(state["sh_rest"].shape, generator=generator)
    # distinct opacities, which publishing keeps, tell the Gaussians apart (SfM repeats some points)
    state["opacity_logits"] = torch.linspace(1.0, 3.0, len(xyz))
    write_ply(ply, state)
    outputs = {"model": "train/model", "ply": ply.relative_to(job_dir).as_posix()}
    trained = StageResult(metrics={"resolution_scale": 1}, outputs=outputs)
    (job_dir / "train" / RESULT_FILE).write_text(json.dumps(trained.to_json()))
    output = job_dir / "publish"
    output.mkdir()
    context = StageContext(
        job_id="t-1", set_name="set", source=job_dir, inbox=job_dir, job_dir=job_dir, output_dir=output,
        options={"eval": True}, settings={**Settings().stage_settings(), "train_backend": "cpu"},
    )  # fmt: skip
    result = PublishStage().run(context, lambda *args, **kwargs: None)
    return {
        "metrics": json.loads(json.dumps(result.to_json()))["metrics"],  # as status.json holds them (metrics.publish)
        "cameras": json.loads((output / "cameras.json").read_text()),
        "colmap_cameras": json.loads((model / "cameras.json").read_text()),
        "means": read_ply(output / "scene.ply")["means"].double().numpy(),
        "opacity_logits": read_ply(output / "scene.ply")["opacity_logits"],
        "colmap_means": xyz,
        "colmap_state": state,
        "poster": np.asarray(Image.open(output / "poster.jpg").convert("RGB"), dtype=np.float32) / 255.0,
        "views": load_views(sfm, read_split(sfm, "train.txt")),
    }


def _mean_up(cameras: list[dict]) -> np.ndarray:
    """The cameras' mean up direction: -y of each camera (OpenCV axes), camera to world."""
    return -np.array([camera["rotation"] for camera in cameras])[:, :, 1].mean(axis=0)


def _true_vertical(views, world_to_camera: dict[str, np.ndarray], vertical: np.ndarray) -> np.ndarray:
    """``vertical`` of a ground-truth frame in the SfM model's frame, from the rotation that best
    takes the model's cameras to the true ones (x_true = S x_sfm: R_sfm = R_true S)."""
    S = sum(world_to_camera[view.name].T @ view.viewmat[:3, :3].double().numpy() for view in views)
    U, _, Vt = np.linalg.svd(S)
    return (U @ Vt).T @ vertical


def _check_transform(published: dict) -> PublishedFrame:
    """The transform in metrics and in every cameras.json entry takes the COLMAP cameras and
    Gaussians to the published ones."""
    frame_json = published["metrics"]["frame"]
    frame = PublishedFrame(np.array(frame_json["rotation"]), np.array(frame_json["centre"]), frame_json["up_from"])
    np.testing.assert_allclose(frame.rotation @ frame.rotation.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(frame.rotation) == pytest.approx(1.0)
    colmap = published["colmap_cameras"]
    cameras = [camera for camera in published["cameras"] if not camera.get("held_out")]  # the trainer's
    assert [camera["img_name"] for camera in cameras] == [camera["img_name"] for camera in colmap]
    for ours, theirs in zip(cameras, colmap):
        assert ours["colmap_to_published"] == {"rotation": frame_json["rotation"], "centre": frame_json["centre"]}
        np.testing.assert_allclose(frame.points(np.array([theirs["position"]]))[0], ours["position"], atol=1e-5)
        np.testing.assert_allclose(frame.rotation @ np.array(theirs["rotation"]), ours["rotation"], atol=1e-9)
        # id: the position among every placed photo's camera, held-out ones included
        assert {k: v for k, v in ours.items() if k not in ("position", "rotation", "colmap_to_published", "id")} == \
            {k: v for k, v in theirs.items() if k not in ("position", "rotation", "id")}
    # the published Gaussians are COLMAP's, moved (the outlier filter may have dropped some)
    moved = frame.points(published["colmap_means"])
    kept = published["means"]
    assert len(kept) > 0.8 * len(moved)
    distances, _ = cKDTree(moved).query(kept)
    assert distances.max() < 1e-5 * max(1.0, np.abs(moved).max())
    return frame


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo set as ``instarecon demo-set`` makes it (cameras all round), small."""
    root = tmp_path_factory.mktemp("demo")
    truth = write_demo_set(root / "demo", width=160, height=120, ready_marker=False)
    run_sfm(root / "demo", root / "job")
    return _published(root / "job"), {view.file: np.array(view.R_world_to_camera) for view in truth}


def test_the_demo_set_is_published_upright(demo):
    published, truth = demo
    cameras = published["cameras"]
    assert _degrees(_mean_up(published["colmap_cameras"]), UP) > 90  # COLMAP's frame: y down
    assert _degrees(_mean_up(cameras), UP) < 10.0
    # the demo's world is z up: that is where the published frame's +y lies
    vertical = _true_vertical(published["views"], truth, np.array([0.0, 0.0, 1.0]))
    frame = _check_transform(published)
    assert _degrees(frame.rotation @ vertical, UP) < 2.0
    assert frame.up_from == "camera right axes"
    # the poster's camera looks along -z, its right axis +x: a viewer's default view shows that side
    poster = next(camera for camera in cameras if camera["img_name"] == Path(published["metrics"]["view"]).stem)
    assert _degrees(np.array(poster["rotation"])[:, 0], np.array([1.0, 0.0, 0.0])) < 1.0
    assert np.array(poster["rotation"])[2, 2] < -0.5


def test_the_poster_is_the_trained_model_seen_from_the_photos_camera(demo):
    """As before the scene was turned: the published Gaussians, found in the trained model, drawn
    in COLMAP's frame from the photo's SfM camera, give the poster."""
    published, _ = demo
    trained = published["colmap_state"]
    index = {float(value): row for row, value in enumerate(trained["opacity_logits"])}
    kept = torch.tensor([index[float(value)] for value in published["opacity_logits"]])
    kept = {name: tensor[kept] for name, tensor in trained.items()}
    view = next(view for view in published["views"] if view.name == published["metrics"]["view"])
    with torch.no_grad():
        image, _, _ = rasterize(**Gaussians.from_state(kept).render_inputs(), viewmat=view.viewmat, K=view.K,
                                width=view.width, height=view.height, sh_degree=3, backend="cpu")
    pixels = (image.clamp(0, 1).numpy() * 255.0 + 0.5).astype(np.uint8)  # as publish_views makes a poster
    expected = np.asarray(Image.open(io.BytesIO(jpeg_bytes(Image.fromarray(pixels)))), dtype=np.float32) / 255.0
    assert published["poster"].shape == expected.shape
    assert psnr(torch.from_numpy(published["poster"]), torch.from_numpy(expected)) > 50.0


def test_an_arc_of_cameras_looking_down_is_published_level(tmp_path):
    """Cameras on one side of the scene, looking down at it: their mean up direction tilts
    towards the scene (by 17 degrees here), the true vertical does not."""
    truth = write_demo_set(tmp_path / "arc", views=8, width=160, height=120, ready_marker=False, spacing_degrees=15)
    run_sfm(tmp_path / "arc", tmp_path / "job")
    published = _published(tmp_path / "job")
    world_to_camera = {view.file: np.array(view.R_world_to_camera) for view in truth}
    vertical = _true_vertical(published["views"], world_to_camera, np.array([0.0, 0.0, 1.0]))
    frame = _check_transform(published)
    assert _degrees(frame.rotation @ vertical, UP) < 2.0


@pytest.mark.slow
def test_a_real_set_is_published_upright(tmp_path):
    """fountain-p11: photos of a fountain on a facade. The benchmark's frame (from a levelled
    laser scan) has its z axis vertical, pointing down."""
    run_sfm(DATASETS / "fountain-p11" / "images", tmp_path / "job")
    published = _published(tmp_path / "job")
    assert _degrees(_mean_up(published["colmap_cameras"]), UP) > 90
    assert _degrees(_mean_up(published["cameras"]), UP) < 10.0
    truth = json.loads((DATASETS / "fountain-p11" / "gt_cameras.json").read_text())["cameras"]
    world_to_camera = {name: np.array(camera["R_world_to_camera"]) for name, camera in truth.items()}
    vertical = _true_vertical(published["views"], world_to_camera, np.array([0.0, 0.0, -1.0]))
    frame = _check_transform(published)
    assert _degrees(frame.rotation @ vertical, UP) < 2.0


def _strong_sh_scene(count: int = 300) -> dict[str, torch.Tensor]:
    """Anisotropic, turned Gaussians whose colour changes strongly with the viewing direction."""
    generator = torch.Generator().manual_seed(3)
    return {
        "means": torch.rand(count, 3, generator=generator) * 2 - 1,
        "log_scales": (0.03 + 0.12 * torch.rand(count, 3, generator=generator)).log(),
        "quats": torch.randn(count, 4, generator=generator),
        "opacity_logits": torch.full((count,), 1.5),
        "sh_dc": torch.randn(count, 1, 3, generator=generator) * 0.5,
        "sh_rest": torch.randn(count, 15, 3, generator=generator) * 0.4,
    }


def _render(state: dict[str, torch.Tensor], viewmat: torch.Tensor) -> torch.Tensor:
    K = torch.tensor([[70.0, 0.0, 40.0], [0.0, 70.0, 30.0], [0.0, 0.0, 1.0]])
    with torch.no_grad():
        image, _, _ = rasterize(**Gaussians.from_state(state).render_inputs(), viewmat=viewmat.float(), K=K,
                                width=80, height=60, sh_degree=3, backend="cpu")
    return image.clamp(0, 1)


@pytest.mark.parametrize("axis, angle", [((1.0, 2.0, 3.0), 2.1), ((1.0, 0.0, 0.0), math.pi), ((0.3, -1.0, 0.2), 0.7)])
def test_a_turned_scene_looks_the_same_from_the_turned_camera_with_its_colours_turned(axis, angle):
    state = _strong_sh_scene()
    unit = np.array(axis) / np.linalg.norm(axis)
    cross = np.array([[0, -unit[2], unit[1]], [unit[2], 0, -unit[0]], [-unit[1], unit[0], 0]])
    rotation = np.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) * cross @ cross
    frame = PublishedFrame(rotation, np.array([0.3, -0.2, 0.5]), "test")
    viewmat = torch.eye(4, dtype=torch.float64)
    viewmat[2, 3] = 3.5  # looking along +z at the scene, 3.5 away

    before = _render(state, viewmat)
    moved = moved_state(state, frame.rotation, frame.centre)
    after = _render(moved, frame.viewmat(viewmat))
    assert psnr(after, before) >= 50.0, psnr(after, before)
    # the colours matter in this scene: unturned, or left out, they show
    unturned = _render({**moved, "sh_rest": state["sh_rest"]}, frame.viewmat(viewmat))
    assert psnr(unturned, before) < 30.0, psnr(unturned, before)
    assert psnr(_render({**state, "sh_rest": torch.zeros_like(state["sh_rest"])}, viewmat), before) < 30.0
