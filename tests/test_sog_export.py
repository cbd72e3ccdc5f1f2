"""Our scene.sog as PlayCanvas's splat-transform reads it: the tool (installed from npm by
``tests.npm_tools``) converts the .sog to a PLY, which we read back with ``read_ply``.

What it reads must be our scene within the error that ``gaussian_splatting.sog_export``
documents: every splat once (matched to ours by position, as the file holds them in Morton
order), positions, rotations, opacities, log scales and SH dc within their bounds, and each
splat's higher SH coefficients within the codebook's bound of the mean of the splats that share
its palette entry. Files written in a wrong layout must fail those checks. A model without higher
SH bands (or with all of them zero, as a degree 0 model's PLY holds them) gets no palette.

Then the publish stage on the demo set (160 x 120 photos, real SfM, the model made of the SfM
points as the trainer starts from them, given trained-looking rotations, sizes and SH): it writes
scene.sog beside scene.ply, hands it to the outbox, and a render of what splat-transform decodes
from it matches a render of scene.ply from a training camera to at least 35 dB PSNR.
"""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

# the trainer's test scene: a plain folder beside its tests, not a package like ours
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gaussian-splatting" / "tests"))
from gs_synthetic_scene import scene_gaussians  # noqa: E402  # isort: skip

from daemon.config import Settings  # noqa: E402
from daemon.demo_set import write_demo_set  # noqa: E402
from gaussian_splatting import rasterize  # noqa: E402
from gaussian_splatting.gaussians import Gaussians, gaussians_from_points, read_points  # noqa: E402
from gaussian_splatting.losses import psnr  # noqa: E402
from gaussian_splatting.outputs import write_cameras_json  # noqa: E402
from gaussian_splatting.ply_export import write_ply  # noqa: E402
from gaussian_splatting.ply_import import read_ply  # noqa: E402
from gaussian_splatting.scene import load_views, read_split  # noqa: E402
from gaussian_splatting.sog_export import sog_bytes, write_sog  # noqa: E402
from stages.base import RESULT_FILE, StageContext, StageResult  # noqa: E402
from stages.publish import PublishStage  # noqa: E402
from stages.publish_frame import PublishedFrame  # noqa: E402
from stages.publish_views import render_camera  # noqa: E402
from tests.npm_tools import splat_transform  # noqa: E402
from tests.test_sfm import run_sfm  # noqa: E402

COUNT = 3000  # more than the smallest palette (256 entries), so k-means runs
EXTENT_SCALE = torch.tensor([4.0, 1.5, 0.3])  # the synthetic scene spans [-1, 1] x [-1, 1] x [-0.6, 0.6]
EXTENT_OFFSET = torch.tensor([1.0, -2.0, 10.0])
# sog_export's documented bounds
ROTATION_DEGREES = 1.1
OPACITY = 0.5 / 255 + 1e-6
CODEBOOK_SHARE = 1 / 256  # of the values' range
FLOAT32 = 1e-6  # relative: the PLY splat-transform writes holds float32
TEXTURES = {"means_l.webp", "means_u.webp", "quats.webp", "scales.webp", "sh0.webp"}
PALETTE_TEXTURES = {"shN_centroids.webp", "shN_labels.webp"}
CLI_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def cli() -> list[str]:
    return splat_transform()


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    """Raw parameters, float32: axes of different extents far from the origin, sizes over two
    orders of magnitude, opacities out to the extremes, and higher SH of 24 materials plus noise."""
    generator = torch.Generator().manual_seed(5)
    scene = scene_gaussians(seed=5, n_gaussians=COUNT)
    scene["means"] = scene["means"] * EXTENT_SCALE + EXTENT_OFFSET
    scene["log_scales"] = -4.0 + 1.2 * torch.randn(COUNT, 3, generator=generator)
    scene["opacity_logits"] = 3.0 * torch.randn(COUNT, generator=generator)
    scene["opacity_logits"][:4] = torch.tensor([-30.0, -12.0, 12.0, 30.0])
    materials = 0.15 * torch.randn(24, 15, 3, generator=generator)
    which = torch.randint(0, 24, (COUNT,), generator=generator)
    scene["sh_rest"] = materials[which] + 0.02 * torch.randn(COUNT, 15, 3, generator=generator)
    return {name: tensor.float() for name, tensor in scene.items()}


def decoded_by_splat_transform(cli: list[str], path: Path) -> dict[str, torch.Tensor]:
    """The raw parameters splat-transform reads from the .sog at ``path`` (converted to a PLY)."""
    output = path.with_name(f"{path.stem}.decoded.ply")
    command = [*cli, "--quiet", "--overwrite", str(path), str(output)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False)
    assert result.returncode == 0, f"splat-transform failed on {path.name} (exit {result.returncode}):\n{result.stderr}"
    return read_ply(output)


def check_within_bounds(decoded: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> None:
    """What splat-transform decoded is our scene, within sog_export's documented error."""
    ours = {name: tensor.double().numpy() for name, tensor in state.items()}
    theirs = {name: tensor.double().numpy() for name, tensor in decoded.items()}
    count = len(ours["means"])
    assert len(theirs["means"]) == count, f"splat-transform read {len(theirs['means'])} splats, we wrote {count}"

    # which of ours each decoded splat is: the nearest centre (errors are far below the spacing)
    _, match = cKDTree(ours["means"]).query(theirs["means"])
    assert sorted(match) == list(range(count)), "some of our splats read back twice, others not at all"
    ours = {name: values[match] for name, values in ours.items()}

    logged = np.sign(ours["means"]) * np.log1p(np.abs(ours["means"]))
    step = (logged.max(axis=0) - logged.min(axis=0)) / 65535
    position_bound = (np.abs(ours["means"]) + 1) * (np.expm1(step / 2) + FLOAT32)
    excess = np.abs(theirs["means"] - ours["means"]) / position_bound
    assert excess.max() <= 1.0, f"a position is off by {excess.max():.2f} x its bound"

    unit = ours["quats"] / np.linalg.norm(ours["quats"], axis=1, keepdims=True)
    alignment = np.clip(np.abs(np.sum(unit * theirs["quats"], axis=1)), 0.0, 1.0)
    worst = math.degrees(2 * math.acos(alignment.min()))
    assert worst <= ROTATION_DEGREES, f"a rotation is off by {worst:.3f} degrees"

    opacity = np.abs(_sigmoid(theirs["opacity_logits"]) - _sigmoid(ours["opacity_logits"]))
    assert opacity.max() <= OPACITY, f"an opacity is off by {opacity.max() * 255:.3f} / 255"

    for name in ("log_scales", "sh_dc"):
        bound = CODEBOOK_SHARE * np.ptp(ours[name]) * (1 + FLOAT32) + FLOAT32
        error = np.abs(theirs[name] - ours[name])
        assert error.max() <= bound, f"{name}: off by {error.max():.5f}, bound {bound:.5f}"

    # higher SH: each splat decodes to the mean of the splats sharing its palette entry, per value
    # within the bound of the codebook over those means
    assert theirs["sh_rest"].shape == ours["sh_rest"].shape, "higher SH bands lost or added"
    if ours["sh_rest"].shape[1]:
        vectors = theirs["sh_rest"].reshape(count, -1)
        entries, entry_of = np.unique(vectors, axis=0, return_inverse=True)
        entry_of = entry_of.reshape(count)
        sizes = np.bincount(entry_of)
        means = np.stack([np.bincount(entry_of, weights=column) for column in ours["sh_rest"].reshape(count, -1).T],
                         axis=1) / sizes[:, None]
        bound = CODEBOOK_SHARE * np.ptp(means) * (1 + FLOAT32) + FLOAT32
        error = np.abs(entries - means)
        assert error.max() <= bound, f"higher SH: a palette entry is off its splats' mean by {error.max():.5f}, " \
                                     f"bound {bound:.5f}"
        assert len(entries) >= 100, f"only {len(entries)} different higher SH vectors decoded"
        rms = np.sqrt(np.mean((theirs["sh_rest"] - ours["sh_rest"]) ** 2))
        assert rms < 0.5 * np.sqrt(np.mean(ours["sh_rest"] ** 2)), f"higher SH: RMS error {rms:.4f}"


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def test_splat_transform_reads_our_sog_within_the_documented_error(cli, state, tmp_path):
    path = tmp_path / "scene.sog"
    write_sog(path, state)
    assert [p.name for p in tmp_path.iterdir()] == ["scene.sog"]  # no temporary file left
    with zipfile.ZipFile(path) as bundle:
        assert {entry.filename for entry in bundle.infolist()} == {"meta.json"} | TEXTURES | PALETTE_TEXTURES
        assert {entry.compress_type for entry in bundle.infolist()} == {zipfile.ZIP_STORED}
        meta = json.loads(bundle.read("meta.json"))
    assert (meta["version"], meta["count"], meta["shN"]["bands"]) == (2, COUNT, 3)
    check_within_bounds(decoded_by_splat_transform(cli, path), state)


@pytest.mark.parametrize("coefficients", [0, 15], ids=["none", "zeros as in a PLY"])
def test_a_model_without_higher_sh_gets_no_palette(cli, state, tmp_path, coefficients):
    flat = {**state, "sh_rest": torch.zeros(COUNT, 0, 3)}
    path = tmp_path / "scene.sog"
    write_sog(path, {**state, "sh_rest": torch.zeros(COUNT, coefficients, 3)})
    with zipfile.ZipFile(path) as bundle:
        assert {entry.filename for entry in bundle.infolist()} == {"meta.json"} | TEXTURES
        assert "shN" not in json.loads(bundle.read("meta.json"))
    decoded = decoded_by_splat_transform(cli, path)
    assert decoded["sh_rest"].shape == (COUNT, 0, 3)
    check_within_bounds(decoded, flat)


# The checks must fail on files laid out wrongly: each changes our meta.json the way a writer that
# swapped or reversed something would have written it.


def _swapped_position_bytes(meta: dict) -> None:
    meta["means"]["files"].reverse()


def _reversed_scale_codebook(meta: dict) -> None:
    meta["scales"]["codebook"].reverse()


def _colour_codebook_for_scales(meta: dict) -> None:
    meta["scales"]["codebook"], meta["sh0"]["codebook"] = meta["sh0"]["codebook"], meta["scales"]["codebook"]


def _x_and_z_boxes_swapped(meta: dict) -> None:
    for key in ("mins", "maxs"):
        meta["means"][key].reverse()


@pytest.mark.parametrize("mistake", [_swapped_position_bytes, _reversed_scale_codebook, _colour_codebook_for_scales,
                                     _x_and_z_boxes_swapped])
def test_the_checks_catch_a_wrong_layout(cli, state, tmp_path, mistake):
    with zipfile.ZipFile(io.BytesIO(sog_bytes(state))) as bundle:
        entries = {name: bundle.read(name) for name in bundle.namelist()}
    meta = json.loads(entries["meta.json"])
    mistake(meta)
    entries["meta.json"] = json.dumps(meta).encode()
    path = tmp_path / "wrong.sog"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as bundle:
        for name, data in entries.items():
            bundle.writestr(name, data)
    decoded = decoded_by_splat_transform(cli, path)
    with pytest.raises(AssertionError):
        check_within_bounds(decoded, state)


@pytest.fixture(scope="module")
def published_demo(tmp_path_factory) -> tuple[StageContext, StageResult, list[str]]:
    """The publish stage on the demo set's SfM, with a model of its points as the trainer starts
    from them, each split in four (as densification does; so that there are more Gaussians than
    the smallest SH palette has entries), turned, stretched, given opacities and higher SH of the
    size training leaves: band 1 to 3 at 0.03, 0.015, 0.008 RMS, mostly the same in the three
    colour channels (view-dependent highlights are mostly white)."""
    root = tmp_path_factory.mktemp("demo")
    write_demo_set(root / "demo", width=160, height=120, ready_marker=False)
    job_dir = root / "job"
    run_sfm(root / "demo", job_dir)
    sfm = job_dir / "sfm"
    xyz, rgb = read_points(sfm / "points.ply")
    state = {name: tensor.repeat_interleave(4, dim=0)
             for name, tensor in gaussians_from_points(xyz, rgb, 3, 0.8).state().items()}
    generator = torch.Generator().manual_seed(0)
    count = len(state["means"])
    state["means"] += 0.5 * state["log_scales"].exp() * torch.randn(count, 3, generator=generator)
    state["log_scales"] += -math.log(4) / 3 + 0.5 * torch.randn(count, 3, generator=generator)
    state["quats"] = torch.randn(count, 4, generator=generator)
    state["opacity_logits"] = 2.0 + 1.5 * torch.randn(count, generator=generator)
    band_rms = torch.tensor([0.03] * 3 + [0.015] * 5 + [0.008] * 7)[None, :, None]
    grey = torch.randn(count, 15, 1, generator=generator)
    state["sh_rest"] = band_rms * (0.85 * grey + 0.5 * torch.randn(count, 15, 3, generator=generator))
    model = job_dir / "train" / "model"
    write_cameras_json(model, load_views(sfm, read_split(sfm, "train.txt")))
    ply = model / "point_cloud" / "iteration_0" / "point_cloud.ply"
    write_ply(ply, state)
    trained = StageResult(metrics={"resolution_scale": 1}, outputs={"model": "train/model",
                                                                    "ply": ply.relative_to(job_dir).as_posix()})
    (job_dir / "train" / RESULT_FILE).write_text(json.dumps(trained.to_json()))
    (job_dir / "publish").mkdir()
    context = StageContext(
        job_id="t-1", set_name="demo", source=root / "demo", inbox=root, job_dir=job_dir,
        output_dir=job_dir / "publish", options={"eval": True},
        settings={**Settings().stage_settings(), "train_backend": "cpu"},
    )  # fmt: skip
    messages: list[str] = []
    result = PublishStage().run(context, lambda percent, message, eta=None: messages.append(message))
    return context, result, messages


@pytest.mark.slow
def test_publish_writes_scene_sog_for_the_outbox(cli, published_demo):
    context, result, messages = published_demo
    path = context.output_dir / "scene.sog"
    assert result.outputs["scene_sog"] == "publish/scene.sog" and "scene_sog" in result.to_outbox
    assert result.metrics["sog_bytes"] == path.stat().st_size
    assert "writing scene.sog" in messages
    decoded = decoded_by_splat_transform(cli, path)
    assert len(decoded["means"]) == result.metrics["gaussians"]
    assert decoded["sh_rest"].shape[1:] == (15, 3)
    # a fraction of the PLY, even for this small model (a few hundred Gaussians), where the codebooks
    # and the palette weigh most
    assert result.metrics["sog_bytes"] < result.metrics["ply_bytes"] / 4


@pytest.mark.slow
def test_the_decoded_sog_renders_like_the_ply(cli, published_demo):
    context, result, _ = published_demo
    full = read_ply(context.output_dir / "scene.ply")
    decoded = decoded_by_splat_transform(cli, context.output_dir / "scene.sog")
    frame = result.metrics["frame"]
    frame = PublishedFrame(np.array(frame["rotation"]), np.array(frame["centre"]), frame["up_from"])
    cameras = json.loads((context.output_dir / "cameras.json").read_text())
    scores = []
    for entry in cameras[:: max(1, len(cameras) // 3)]:
        camera = render_camera(entry, context.stage_dir("sfm"), frame)
        images = []
        for state in (full, decoded):
            with torch.no_grad():
                image, _, _ = rasterize(**Gaussians.from_state(state).render_inputs(), viewmat=camera.viewmat,
                                        K=camera.K, width=camera.width, height=camera.height, sh_degree=3,
                                        backend="cpu")
            images.append(image.clamp(0, 1))
        assert images[0].std() > 0.05, "the camera sees too little of the scene for the comparison to mean much"
        scores.append(float(psnr(images[1], images[0])))
    assert min(scores) >= 35.0, scores
