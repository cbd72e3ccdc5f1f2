"""The evaluation stage: the trained model scored on the photos SfM held out (``test.txt``).

PSNR, SSIM and LPIPS per photo and on average, renders saved beside the photos, and the score
of a flat mean-colour image as the floor to compare with; all into ``results.json`` here and
into status.json's metrics, per photo under ``held_out``. A set too small to hold a photo out
(``stages.sfm_split``: 3 or 4 placed photos) is scored on its training views instead: the same
numbers, with ``scored_on`` saying so and the photos under ``training_views``, because such
scores flatter the model and must never pass for held-out ones. Each scored photo and its render go
to the outbox as a pair of web-sized JPEGs (``heldout-<stem>-photo.jpg`` and ``-render.jpg``,
``training-`` for training views; the same size, at most ``STRIP_LONG_SIDE`` on the long side and
never larger than they were scored at), so that anyone can see what the scores mean. LPIPS is null when its weights are not
on this machine: status.json says so in the person's words, the journal says which files are
missing where (setting ``lpips_weights``) and that ``instarecon fetch-weights`` turns it on. A
job trained on every photo (``eval = false``) has nothing to score: the stage says so and
passes. On a GPU, its memory (NVML's and PyTorch's peaks) and utilisation go into
``metrics.evaluate.gpu`` (``stages.gpu_watch``).
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from PIL import Image

from gaussian_splatting.evaluate import RESULTS_FILE, Evaluation, evaluate
from gaussian_splatting.scene import TEST_FILE, read_split
from stages.base import ProgressReporter, Stage, StageContext, StageResult, read_result
from stages.compute_backend import training_backend
from stages.gpu_watch import GpuWatch
from stages.lpips_weights import FETCH_COMMAND
from stages.sfm_split import NOT_ASKED, TRAINING_VIEWS
from stages.web_images import write_web_jpeg

log = logging.getLogger("stages.evaluate")

HELD_OUT_DIR = "held-out"  # the strip's JPEGs, in this stage's folder and then in the outbox
STRIP_LONG_SIDE = 800
# status.json is public: the person learns that LPIPS is missing, the journal why and where
LPIPS_UNAVAILABLE = "LPIPS (a perceptual score) is not available on this server; PSNR and SSIM are"
# metrics.evaluate.scored_on, and the key of the per-photo list and the strip's file prefix for each
HELD_OUT_PHOTOS = "held-out photos"
TRAINING_VIEW_PHOTOS = "training views"
_PER_PHOTO = {HELD_OUT_PHOTOS: ("held_out", "heldout"), TRAINING_VIEW_PHOTOS: ("training_views", "training")}
# a stem that is not safe in a file name and a URL as it is becomes the photo's index
_SAFE_STEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class EvaluateStage(Stage):
    name = "evaluate"

    def run(self, context: StageContext, report: ProgressReporter) -> StageResult:
        started = time.monotonic()
        sfm_dir = context.stage_dir("sfm")
        trained = read_result(context, "train")
        rule = read_result(context, "sfm").metrics.get("held_out_rule")  # absent from an earlier version's sfm
        if read_split(sfm_dir, TEST_FILE):
            scored_on = HELD_OUT_PHOTOS
        elif rule == TRAINING_VIEWS:
            scored_on = TRAINING_VIEW_PHOTOS
        else:
            reason = "every photo trained (eval = false in job.toml)" if rule == NOT_ASKED else "no photos were held out"
            log.info("nothing to score: %s", reason)
            return StageResult(metrics={"images": 0, "psnr": None, "ssim": None, "lpips": None, "held_out": [],
                                        "skipped": reason})

        weights = context.settings.get("lpips_weights") or None
        backend = training_backend(context.settings["train_backend"])
        with GpuWatch.for_backend(backend) as gpu:  # evaluation runs in this process: PyTorch's peaks too
            gpu.add_process(os.getpid())
            evaluation = evaluate(
                sfm_dir,
                context.job_dir / trained.outputs["model"],
                iteration=int(trained.metrics["iterations"]),
                backend=backend,
                resolution_scale=int(trained.metrics.get("resolution_scale", 1)),
                lpips_weights=Path(weights) if weights else None,
                output_dir=context.output_dir,
                on_image=lambda done, total: report(100.0 * done / total, f"scored {done}/{total} {scored_on}"),
                split="test" if scored_on == HELD_OUT_PHOTOS else "train",
            )
        lpips = "n/a" if evaluation.lpips is None else f"{evaluation.lpips:.3f}"
        log.info("%s: PSNR %.2f dB, SSIM %.3f, LPIPS %s (mean colour %.2f dB) over %d photos", scored_on,
                 evaluation.psnr, evaluation.ssim, lpips, evaluation.mean_colour_psnr, len(evaluation.images))
        # without LPIPS, ``evaluate`` has logged why for the operator (which files, where, the setting); and how to fix it
        if evaluation.lpips_unavailable:
            log.warning("LPIPS is off for this job: `%s` fetches its weights into %s and turns it on for the next "
                        "(see `instarecon doctor`)", FETCH_COMMAND, weights or "the state folder's lpips-weights")
        folder = context.output_dir.relative_to(context.job_dir).as_posix()
        per_photo_key, prefix = _PER_PHOTO[scored_on]
        strip = _write_strip(evaluation, context.output_dir, prefix)
        metrics: dict[str, Any] = {
            "scored_on": scored_on,
            "images": len(evaluation.images),
            "psnr": evaluation.psnr,
            "ssim": evaluation.ssim,
            "lpips": evaluation.lpips,
            "lpips_unavailable": "not available on this server" if evaluation.lpips_unavailable else None,
            "mean_colour_psnr": evaluation.mean_colour_psnr,
            "resolution": f"{evaluation.width}x{evaluation.height}",
            "held_out": [],
            per_photo_key: [
                {"name": score.name, "psnr": score.psnr, "ssim": score.ssim, "lpips": score.lpips,
                 "photo": photo, "render": render}
                for score, (photo, render) in zip(evaluation.images, strip)
            ],
            "seconds": round(time.monotonic() - started, 3),
            **gpu.metrics(),
        }
        strip_outputs = {
            f"{per_photo_key}_{index}_{kind}": f"{folder}/{HELD_OUT_DIR}/{name}"
            for index, pair in enumerate(strip) for kind, name in zip(("photo", "render"), pair)
        }
        outputs = {
            "results": f"{folder}/{RESULTS_FILE}",
            "renders": f"{folder}/{evaluation.split}/ours_{evaluation.iteration}/renders",
            **strip_outputs,
        }
        warnings = (LPIPS_UNAVAILABLE,) if evaluation.lpips_unavailable else ()
        return StageResult(metrics=metrics, outputs=outputs, warnings=warnings, to_outbox=tuple(strip_outputs))


def strip_stems(names: list[str]) -> list[str]:
    """The name each held-out photo's pair of files takes: its stem, or its index where the stem
    is not a safe file name; one taken already gets ``-<index>`` added."""
    stems: list[str] = []
    for index, name in enumerate(names):
        stem = Path(name).stem
        candidate = stem if _SAFE_STEM.match(stem) else str(index)
        while candidate in stems:
            candidate += f"-{index}"
        stems.append(candidate)
    return stems


def _write_strip(evaluation: Evaluation, output_dir: Path, prefix: str) -> list[tuple[str, str]]:
    """Each scored photo and its render (the PNGs ``evaluate`` wrote, at the size they were
    scored at) as web-sized JPEGs of one size; (photo, render) file names per scored photo."""
    renders_dir = output_dir / evaluation.split / f"ours_{evaluation.iteration}"
    names = [score.name for score in evaluation.images]
    (output_dir / HELD_OUT_DIR).mkdir(exist_ok=True)
    pairs = []
    for name, stem in zip(names, strip_stems(names)):
        pair = (f"{prefix}-{stem}-photo.jpg", f"{prefix}-{stem}-render.jpg")
        for source, target in zip(("gt", "renders"), pair):
            with Image.open(renders_dir / source / f"{Path(name).stem}.png") as picture:
                write_web_jpeg(output_dir / HELD_OUT_DIR / target, picture, STRIP_LONG_SIDE)
        pairs.append(pair)
    return pairs
