"""The evaluate stage on a job folder as training leaves it: per-photo scores in status.json's
metrics, and each held-out photo beside our render of it as a pair of web-sized JPEGs for the
outbox (the held-out strip), with no metadata and no server path anywhere in what is public.

The scene is the tiny exact one of the trainer's tests (photos rendered from known Gaussians,
every 4th held out), and the model is those Gaussians: the renders match the photos.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pycolmap
import pytest
from PIL import Image

# the trainer's test scene: a plain folder beside its tests, not a package like ours
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gaussian-splatting" / "tests"))
from gs_synthetic_scene import HEIGHT, WIDTH, scene_gaussians, write_synthetic_source  # noqa: E402  # isort: skip

from daemon.config import Settings  # noqa: E402
from gaussian_splatting.ply_export import write_ply  # noqa: E402
from stages.base import RESULT_FILE, StageContext, StageResult  # noqa: E402
from stages.evaluate import LPIPS_UNAVAILABLE, EvaluateStage, strip_stems  # noqa: E402
from stages.web_images import fitted_size  # noqa: E402

ITERATIONS = 30000
HELD_OUT = ["view00.png", "view04.png", "view08.png", "view12.png"]  # every 4th of the 16


@pytest.fixture(scope="module")
def journal():
    """What the stage logs (the journal's lines), while this module's tests run."""
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("stages.evaluate")
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)


def trained_job(job_dir: Path, held_out_rule: str) -> StageContext:
    """A job folder as the train stage leaves it: the synthetic scene's SfM layout (with the sfm
    stage's result, naming how photos were held out) and a model that is the scene itself."""
    write_synthetic_source(job_dir / "sfm")
    sfm = StageResult(metrics={"held_out_rule": held_out_rule})
    (job_dir / "sfm" / RESULT_FILE).write_text(json.dumps(sfm.to_json()))
    ply = job_dir / "train" / "model" / "point_cloud" / f"iteration_{ITERATIONS}" / "point_cloud.ply"
    write_ply(ply, scene_gaussians())
    trained = StageResult(metrics={"iterations": ITERATIONS, "resolution_scale": 1},
                          outputs={"model": "train/model", "ply": ply.relative_to(job_dir).as_posix()})
    (job_dir / "train" / RESULT_FILE).write_text(json.dumps(trained.to_json()))
    output_dir = job_dir / "evaluate"
    output_dir.mkdir()
    no_weights = job_dir.parent / "no-lpips-weights"  # whatever this machine caches
    return StageContext(
        job_id="set-1", set_name="set", source=job_dir / "inbox" / "set", inbox=job_dir / "inbox", job_dir=job_dir,
        output_dir=output_dir, options={"eval": True},
        settings={**Settings().stage_settings(), "train_backend": "cpu", "lpips_weights": str(no_weights)},
    )  # fmt: skip


def run_evaluate(context: StageContext) -> StageResult:
    result = EvaluateStage().run(context, lambda *args, **kwargs: None)
    return StageResult.from_json(json.loads(json.dumps(result.to_json())))  # as result.json holds it


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, journal):
    context = trained_job(tmp_path_factory.mktemp("evaluate") / "jobs" / "set-1", "every 8th photo")
    return context, run_evaluate(context)


def test_each_held_out_photo_has_its_scores_and_its_pair_of_pictures(evaluated):
    context, result = evaluated
    results = json.loads((context.output_dir / "results.json").read_text())
    held_out = result.metrics["held_out"]
    assert [entry["name"] for entry in held_out] == HELD_OUT == [image["name"] for image in results["images"]]
    for entry, scored in zip(held_out, results["images"]):
        stem = Path(entry["name"]).stem
        assert entry == {"name": scored["name"], "psnr": scored["psnr"], "ssim": scored["ssim"], "lpips": None,
                         "photo": f"heldout-{stem}-photo.jpg", "render": f"heldout-{stem}-render.jpg"}
        assert entry["psnr"] > 30.0  # the model is the scene itself
    # every picture is handed to the outbox under its own name
    handed = {Path(result.outputs[name]).name for name in result.to_outbox}
    assert handed == {entry[kind] for entry in held_out for kind in ("photo", "render")}
    for name in result.to_outbox:
        assert (context.job_dir / result.outputs[name]).is_file()


def test_the_pictures_are_the_photo_and_the_render_at_the_scored_size_without_metadata(evaluated):
    context, result = evaluated
    assert result.metrics["resolution"] == f"{WIDTH}x{HEIGHT}"
    folder = context.output_dir / "held-out"
    assert sorted(path.name for path in folder.iterdir()) == sorted(
        f"heldout-{Path(name).stem}-{kind}.jpg" for name in HELD_OUT for kind in ("photo", "render"))  # no temporaries
    renders = context.output_dir / "test" / f"ours_{ITERATIONS}"
    for entry in result.metrics["held_out"]:
        stem = Path(entry["name"]).stem
        for kind, source in (("photo", "gt"), ("render", "renders")):
            data = (folder / entry[kind]).read_bytes()
            with Image.open(io.BytesIO(data)) as picture:
                assert (picture.format, picture.mode, picture.size) == ("JPEG", "RGB", (WIDTH, HEIGHT))  # not scaled up
                assert not picture.getexif() and not {"exif", "icc_profile", "xmp", "comment"} & set(picture.info)
                pixels = np.asarray(picture, dtype=np.float64)
            with Image.open(renders / source / f"{stem}.png") as scored:
                expected = np.asarray(scored.convert("RGB"), dtype=np.float64)
            assert np.abs(pixels - expected).mean() < 6.0, (entry[kind], np.abs(pixels - expected).mean())
            assert b"Exif\x00\x00" not in data


def test_held_out_scores_say_they_are_on_held_out_photos(evaluated):
    _, result = evaluated
    assert result.metrics["scored_on"] == "held-out photos" and "training_views" not in result.metrics


def test_a_set_too_small_to_hold_one_out_is_scored_on_its_training_views_and_says_so(tmp_path):
    """4 photos placed (stages.sfm_split): all of them trained, and they are what is scored, under
    their own name everywhere: never as held-out photos."""
    context = trained_job(tmp_path / "jobs" / "set-1", "none: the training views are scored")
    sfm = context.job_dir / "sfm"
    training = ["view01.png", "view02.png", "view05.png", "view09.png"]
    (sfm / "train.txt").write_text("".join(f"{name}\n" for name in training))
    (sfm / "test.txt").write_text("")
    result = run_evaluate(context)
    metrics = result.metrics
    assert (metrics["scored_on"], metrics["images"], metrics["held_out"]) == ("training views", 4, [])
    assert [entry["name"] for entry in metrics["training_views"]] == training
    assert metrics["psnr"] > 30.0 and metrics["ssim"] > 0.9  # the model is the scene itself
    for entry in metrics["training_views"]:
        stem = Path(entry["name"]).stem
        assert (entry["photo"], entry["render"]) == (f"training-{stem}-photo.jpg", f"training-{stem}-render.jpg")
    assert sorted(path.name for path in (context.output_dir / "held-out").iterdir()) == sorted(
        f"training-{Path(name).stem}-{kind}.jpg" for name in training for kind in ("photo", "render"))
    assert sorted(Path(result.outputs[name]).name for name in result.to_outbox) == sorted(
        entry[kind] for entry in metrics["training_views"] for kind in ("photo", "render"))
    results = json.loads((context.output_dir / "results.json").read_text())
    assert results["split"] == "train" and len(results["images"]) == 4
    assert result.outputs["renders"] == f"evaluate/train/ours_{ITERATIONS}/renders"
    assert sorted(path.name for path in (context.job_dir / result.outputs["renders"]).iterdir()) == [
        f"{Path(name).stem}.png" for name in training]


def test_eval_false_leaves_nothing_to_score_and_says_why(tmp_path):
    context = trained_job(tmp_path / "jobs" / "set-1", "none: eval = false")
    (context.job_dir / "sfm" / "test.txt").write_text("")
    result = run_evaluate(context)
    assert (result.metrics["images"], result.metrics["psnr"]) == (0, None)
    assert result.metrics["skipped"] == "every photo trained (eval = false in job.toml)"
    assert not (context.output_dir / "results.json").exists()


def test_without_lpips_weights_the_person_reads_a_sentence_and_no_server_path(evaluated):
    context, result = evaluated
    assert result.warnings == (LPIPS_UNAVAILABLE,)
    assert result.metrics["lpips"] is None and result.metrics["lpips_unavailable"] == "not available on this server"
    public = json.dumps({"metrics": result.metrics, "warnings": result.warnings})
    for detail in (str(context.job_dir.parents[1]), "lpips_weights", "alexnet-owt-7be5be79.pth"):
        assert detail not in public
    # the operator's reason stays in the stage's own results
    assert "alexnet-owt-7be5be79.pth" in json.loads((context.output_dir / "results.json").read_text())["lpips_unavailable"]


def test_without_lpips_weights_the_journal_says_how_to_turn_it_on(evaluated, journal):
    context, _ = evaluated
    folder = context.settings["lpips_weights"]
    assert f"LPIPS is off for this job: `instarecon fetch-weights` fetches its weights into {folder}" in "\n".join(journal)


def test_the_weights_are_looked_for_in_the_state_folder_unless_the_setting_names_another(tmp_path):
    assert Settings(state=tmp_path).stage_settings()["lpips_weights"] == str(tmp_path / "lpips-weights")
    mine = Settings(state=tmp_path, lpips_weights=str(tmp_path / "mine")).stage_settings()["lpips_weights"]
    assert mine == str(tmp_path / "mine")


def test_strip_pictures_are_at_most_800_on_the_long_side_and_never_scaled_up():
    assert fitted_size(1600, 1200, 800) == (800, 600)
    assert fitted_size(1200, 1600, 800) == (600, 800)
    assert fitted_size(199, 149, 800) == (199, 149)


def test_a_stem_that_is_no_safe_file_name_becomes_the_photo_s_index():
    assert strip_stems(["IMG_0042.jpg", "a b.jpg", "café.jpg", ".hidden.jpg", "ok.png"]) == [
        "IMG_0042", "1", "2", "3", "ok"]
    assert strip_stems(["x.jpg", "x.png", "1.jpg", "?.jpg"]) == ["x", "x-1", "1", "3"]


@pytest.mark.slow
def test_a_large_scene_gives_800_pixel_pictures(evaluated, tmp_path):
    """Photos scored at 1600x1200: the pair is scaled down to 800x600, both alike."""
    context, _ = evaluated
    job_dir = tmp_path / "set-1"
    shutil.copytree(context.job_dir / "sfm", job_dir / "sfm")
    shutil.copytree(context.job_dir / "train", job_dir / "train")
    for image in (job_dir / "sfm" / "images").iterdir():
        Image.open(image).resize((WIDTH * 25, HEIGHT * 25), Image.Resampling.NEAREST).save(image)
    model = pycolmap.Reconstruction(job_dir / "sfm" / "sparse" / "0")
    for camera in model.cameras.values():
        camera.rescale(25.0)  # the cameras grow with the photos
    model.write(job_dir / "sfm" / "sparse" / "0")
    (job_dir / "sfm" / "test.txt").write_text("view04.png\n")
    output_dir = job_dir / "evaluate"
    output_dir.mkdir()
    context = StageContext(
        job_id="set-1", set_name="set", source=job_dir / "inbox", inbox=job_dir / "inbox", job_dir=job_dir,
        output_dir=output_dir, options={"eval": True},
        settings={**Settings().stage_settings(), "train_backend": "cpu", "lpips_weights": str(tmp_path / "none")},
    )  # fmt: skip
    result = EvaluateStage().run(context, lambda *args, **kwargs: None)
    assert result.metrics["resolution"] == f"{WIDTH * 25}x{HEIGHT * 25}"
    (entry,) = result.metrics["held_out"]
    for kind in ("photo", "render"):
        with Image.open(output_dir / "held-out" / entry[kind]) as picture:
            assert picture.size == (800, 600)
