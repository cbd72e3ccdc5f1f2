"""Training and evaluation under the real daemon: progress with an ETA in status.json, a
daemon killed mid-training that resumes from the trainer's checkpoint, the held-out scores and
the standard PLY at the end, then the published scene, shown by the viewer in Chromium; and a
trainer killed by the out-of-memory killer, which fails the job with the memory hint."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from plyfile import PlyData

from daemon.demo_set import write_demo_set
from stages.evaluate import LPIPS_UNAVAILABLE
from tests.daemon_harness import DaemonProcess, Layout, make_layout, processes_of, state_is, wait_for
from tests.killed_trainer import KILLED_TRAINER

pytestmark = pytest.mark.slow  # training under the real daemon

STANDARD_PROPERTIES = (
    ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    + [f"f_rest_{i}" for i in range(45)]
    + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
)
ITERATIONS = 400


def _trainer_processes(layout: Layout) -> list[int]:
    return processes_of(layout, b"gaussian_splatting")


def _training_with_an_estimate(layout: Layout):
    def probe():
        document = layout.status("ring") or {}
        if document.get("stage") == "train" and document.get("eta_seconds") is not None:
            return document
        return None

    return probe


def test_training_reports_eta_resumes_after_a_killed_daemon_and_ends_evaluated(tmp_path, serve_folder, open_page):
    layout = make_layout(tmp_path, public_url="https://splats.example.org/recon/")
    folder = layout.inbox / "ring"
    # 16 views on a 240 degree arc: view_000 (held out, at the arc's end) and view_008 (inside it)
    write_demo_set(folder, views=16, width=160, height=120, ready_marker=False, spacing_degrees=15)
    (folder / "job.toml").write_text(f"iterations = {ITERATIONS}\n")
    (folder / "READY").touch()

    # LPIPS's weights are looked for in <state>/lpips-weights, empty here (whatever this machine's cache holds)
    daemon = DaemonProcess(layout).start()
    try:
        training = wait_for(_training_with_an_estimate(layout), 180, "training progress with an ETA")
        assert training["state"] == "running" and training["stages"]["train"]["state"] == "running"
        assert training["message"].startswith("train: iteration ") and "Gaussians" in training["message"]
        assert training["eta_seconds"] > 0
        job_id = training["job_id"]
        # an unfinished stage works in its claim's folder (daemon/run/claim_folder.py)
        checkpoints = layout.state / "jobs" / job_id / "claims" / "1" / "train" / "model" / "checkpoints"
        wait_for(lambda: list(checkpoints.glob("chkpnt*.pt")), 120, "a training checkpoint")
        assert _trainer_processes(layout), daemon.log()
    finally:
        daemon.kill()
    # the trainer dies with the stage process, which dies with the daemon: nothing writes on
    wait_for(lambda: not _trainer_processes(layout), 10, "the trainer to die with the daemon")
    saved = int(sorted(checkpoints.glob("chkpnt*.pt"))[-1].stem.removeprefix("chkpnt"))
    assert saved < ITERATIONS

    with DaemonProcess(layout, until_idle=True) as restarted:
        assert restarted.wait(300) == 0, restarted.log()
    document = wait_for(state_is(layout, "ring", "done"), 5, "the job to be done")
    assert document["message"] == "done after publish" and document["eta_seconds"] is None
    job_log = (layout.state / "jobs" / job_id / "job.log").read_text()
    assert f"at iteration {saved} with" in job_log, job_log[-3000:]

    trained = document["metrics"]["train"]
    assert (trained["iterations"], trained["backend"]) == (ITERATIONS, "cpu") and trained["gaussians"] > 0
    ply = PlyData.read(document["outputs"]["train.ply"])
    assert [p.name for p in ply["vertex"].properties] == STANDARD_PROPERTIES
    assert ply["vertex"].count == trained["gaussians"]

    scores = document["metrics"]["evaluate"]
    # better than a flat image (the trainer's own test holds it to 5 dB on exact cameras)
    assert scores["images"] == 2 and scores["psnr"] > scores["mean_colour_psnr"] + 1.0, scores
    assert scores["lpips"] is None and scores["lpips_unavailable"] == "not available on this server"
    results = json.loads(Path(document["outputs"]["evaluate.results"]).read_text())
    assert results["psnr"] == scores["psnr"] and [image["name"] for image in results["images"]] == ["view_000.jpg", "view_008.jpg"]
    assert "alexnet-owt-7be5be79.pth" in results["lpips_unavailable"]  # the operator's detail stays in the state folder
    assert (Path(document["outputs"]["evaluate.renders"]) / "view_008.png").exists()
    # the person reads that LPIPS is missing; where its weights were looked for is the journal's
    assert LPIPS_UNAVAILABLE in document["warnings"] and not any("LPIPS weights" in w for w in document["warnings"])
    job_log = (layout.state / "jobs" / job_id / "job.log").read_text()
    assert f"{layout.state / 'lpips-weights'}" in job_log and "lpips_weights" in job_log
    assert "`instarecon fetch-weights` fetches its weights" in job_log
    strip = [{key: entry[key] for key in ("name", "photo", "render")} for entry in scores["held_out"]]
    assert strip == [{"name": f"view_00{n}.jpg", "photo": f"heldout-view_00{n}-photo.jpg",
                      "render": f"heldout-view_00{n}-render.jpg"} for n in (0, 8)]
    assert [entry["psnr"] for entry in scores["held_out"]] == [image["psnr"] for image in results["images"]]

    # published: the cleaned, recentred scene as PLY and .splat, the cameras, the pictures
    published = document["metrics"]["publish"]
    assert published["gaussians_before"] == trained["gaussians"]
    removed = published["removed_statistical"] + published["removed_clusters"]
    assert 0 < published["gaussians"] == trained["gaussians"] - removed, published
    scene = PlyData.read(document["outputs"]["publish.scene_ply"])
    assert [p.name for p in scene["vertex"].properties] == STANDARD_PROPERTIES
    assert scene["vertex"].count == published["gaussians"]
    centre = [float(scene["vertex"][axis].mean()) for axis in ("x", "y", "z")]
    assert max(abs(value) for value in centre) < 1e-4, centre
    assert Path(document["outputs"]["publish.scene_splat"]).stat().st_size == 32 * published["gaussians"]
    # every one of the 16 photos' cameras, the 2 held out marked: "camera 1 of 16 (held out)"
    cameras = json.loads(Path(document["outputs"]["publish.cameras"]).read_text())
    assert [camera["img_name"] for camera in cameras] == [f"view_{index:03d}" for index in range(16)]
    assert [camera["img_name"] for camera in cameras if camera.get("held_out")] == ["view_000", "view_008"]
    trainer_cameras = json.loads((Path(document["outputs"]["train.model"]) / "cameras.json").read_text())
    trained_on = [camera for camera in cameras if not camera.get("held_out")]
    assert [camera["img_name"] for camera in trained_on] == [camera["img_name"] for camera in trainer_cameras]
    assert published["view"] not in ("view_000.jpg", "view_008.jpg")  # the poster shows a view the model learnt
    rotation, centre = np.array(published["frame"]["rotation"]), np.array(published["frame"]["centre"])
    for ours, theirs in zip(trained_on, trainer_cameras):  # moved with the scene
        moved = rotation @ (np.array(theirs["position"]) - centre)
        assert np.abs(np.array(ours["position"]) - moved).max() < 1e-9
    photo = layout.state / "jobs" / job_id / "sfm" / "images" / published["view"]
    with Image.open(photo) as image:
        photo_size = image.size
    with Image.open(document["outputs"]["publish.poster"]) as poster:
        assert poster.format == "JPEG" and poster.size == photo_size and not poster.getexif()
    with Image.open(document["outputs"]["publish.thumbnail"]) as thumbnail:  # never larger than the poster
        assert thumbnail.format == "JPEG" and thumbnail.size == photo_size and not thumbnail.getexif()
    assert sorted(path.name for path in Path(document["outputs"]["publish.poster"]).parent.iterdir()) == [
        "cameras.json", "poster.jpg", "result.json", "scene.ply", "scene.sog", "scene.splat", "thumb.jpg"]
    # and in the outbox beside status.json, byte for byte, with no temporary file left
    publish_dir = layout.state / "jobs" / job_id / "publish"
    outbox_dir = layout.outbox / job_id
    strip_files = [f"heldout-view_00{n}-{kind}.jpg" for n in (0, 8) for kind in ("photo", "render")]
    assert sorted(path.name for path in outbox_dir.iterdir()) == sorted([
        "cameras.json", "cover.jpg", "index.html", "poster.jpg", "scene.ply", "scene.sog", "scene.splat",
        "status.json", "thumb.jpg", *strip_files])
    for name in ("cameras.json", "poster.jpg", "scene.ply", "scene.sog", "scene.splat", "thumb.jpg"):
        assert (outbox_dir / name).read_bytes() == (publish_dir / name).read_bytes(), name
    evaluate_dir = layout.state / "jobs" / job_id / "evaluate" / "held-out"
    for name in strip_files:  # web-sized (here: the size they were scored at, never more), no EXIF
        assert (outbox_dir / name).read_bytes() == (evaluate_dir / name).read_bytes(), name
        with Image.open(outbox_dir / name) as picture:
            assert picture.format == "JPEG" and picture.size == photo_size and not picture.getexif()
    with Image.open(outbox_dir / "cover.jpg") as cover:  # the set's first photo, for the gallery's card
        assert cover.format == "JPEG" and cover.size == (160, 120) and not cover.getexif()
    # the public copy links what it publishes, relative to the job's folder, and names no server path
    public = layout.outbox_status(job_id)
    assert public["outputs"] == {"publish.scene_ply": "scene.ply", "publish.scene_splat": "scene.splat",
                                 "publish.scene_sog": "scene.sog", "publish.cameras": "cameras.json",
                                 "publish.thumbnail": "thumb.jpg", "publish.poster": "poster.jpg",
                                 "ingest.cover": "cover.jpg",
                                 **{f"evaluate.held_out_{index}_{kind}": f"heldout-view_00{n}-{kind}.jpg"
                                    for index, n in enumerate((0, 8)) for kind in ("photo", "render")}}
    assert str(layout.state) not in (outbox_dir / "status.json").read_text()
    for document_copy in (document, public):
        assert document_copy["page"] == f"{job_id}/index.html"
        assert document_copy["page_url"] == f"https://splats.example.org/recon/{job_id}/index.html"
    assert (layout.outbox / public["page"]).is_file()

    # on the website: the viewer shows what the trainer rendered for the poster, from the same camera
    base = serve_folder(layout.outbox)
    page = open_page(viewport=photo_size)
    page.goto(base + "index.html")
    card = page.locator(f'.card[data-job-id="{job_id}"]')
    assert card.locator(".badge").text_content() == "done" and card.locator("img.thumb").count() == 1
    card.locator("a.card-link").click()
    page.wait_for_selector('#viewer[data-state="ready"]', state="attached", timeout=60_000)
    (layout.outbox / "hide-ui.css").write_text(".viewer-ui, .job-panel { display: none !important; }\n")
    page.add_style_tag(url=base + "hide-ui.css")  # from 'self': the page's CSP refuses inline styles
    shot = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB"), dtype=np.float64)
    with Image.open(outbox_dir / "poster.jpg") as poster:
        trainer = np.asarray(poster.convert("RGB"), dtype=np.float64)
    viewer_psnr = -10 * np.log10(np.mean((shot / 255 - trainer / 255) ** 2))
    print(f"viewer vs the trainer's poster: {viewer_psnr:.2f} dB")
    assert viewer_psnr >= 30.0
    page.assert_clean()


def test_a_trainer_killed_by_sigkill_fails_the_job_with_the_memory_hint(tmp_path):
    """The kernel's out-of-memory killer ends the trainer, not the stage: the job still says that
    memory ran out, and what to train smaller."""
    # cuda: the photos are read at full size, so the stage needs no SfM model to size them by
    layout = make_layout(tmp_path, train_backend="cuda", trainer_command=KILLED_TRAINER)
    write_demo_set(layout.inbox / "ring", views=4, width=160, height=120)
    with DaemonProcess(layout, until_idle=True, pipeline="tests.killed_trainer:INGEST_AND_TRAIN") as daemon:
        assert daemon.wait(120) == 0, daemon.log()
    document = wait_for(state_is(layout, "ring", "failed"), 5, "the job to fail")
    assert document["error"] == {
        "stage": "train",
        "message": "the trainer was killed by signal 9 (SIGKILL: most likely the out-of-memory killer)",
        "hint": "the machine ran out of memory: set a smaller train_max_image_size or max_gaussians in job.toml, "
                "or send fewer photos",
    }, daemon.log()


def test_small_sets_hold_out_their_middle_photo_or_are_scored_on_their_training_views(tmp_path):
    """5 placed photos: the middle one is held out (an end one would score extrapolation); 4: none
    can be spared, and the scores, on the training views, are labelled so from status.json to the page."""
    layout = make_layout(tmp_path)
    for name, views in (("five", 5), ("four", 4)):
        write_demo_set(layout.inbox / name, views=views, width=160, height=120, ready_marker=False, spacing_degrees=15)
        (layout.inbox / name / "job.toml").write_text("iterations = 100\n")
        (layout.inbox / name / "READY").touch()
    with DaemonProcess(layout, until_idle=True) as daemon:
        assert daemon.wait(300) == 0, daemon.log()

    five = wait_for(state_is(layout, "five", "done"), 5, "the five-photo job to be done")
    assert (five["metrics"]["sfm"]["held_out_rule"], five["metrics"]["sfm"]["held_out_photos"]) == (
        "the middle photo", ["view_002.jpg"])
    scores = five["metrics"]["evaluate"]
    assert (scores["scored_on"], [entry["name"] for entry in scores["held_out"]]) == ("held-out photos", ["view_002.jpg"])
    cameras = json.loads(Path(five["outputs"]["publish.cameras"]).read_text())
    assert [camera["img_name"] for camera in cameras if camera.get("held_out")] == ["view_002"]

    four = wait_for(state_is(layout, "four", "done"), 5, "the four-photo job to be done")
    assert four["metrics"]["sfm"]["held_out_rule"] == "none: the training views are scored"
    scores = four["metrics"]["evaluate"]
    assert (scores["scored_on"], scores["held_out"], scores["images"]) == ("training views", [], 4)
    assert [entry["name"] for entry in scores["training_views"]] == [f"view_{index:03d}.jpg" for index in range(4)]
    assert scores["psnr"] > scores["mean_colour_psnr"]
    assert any("too few to keep one out of training" in warning and "flatter" in warning for warning in four["warnings"])
    outbox_dir = layout.outbox / four["job_id"]
    assert sorted(path.name for path in outbox_dir.glob("training-*.jpg")) == sorted(
        f"training-view_{index:03d}-{kind}.jpg" for index in range(4) for kind in ("photo", "render"))
    assert not list(outbox_dir.glob("heldout-*"))
    page = (outbox_dir / "index.html").read_text()
    assert "Quality: on the training photos" in page and "held out of training" not in page
