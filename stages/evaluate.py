"""The evaluation stage: the trained model scored on the photos SfM held out (``test.txt``).

PSNR, SSIM and LPIPS per photo and on average, renders saved beside the photos, and the score
of a flat mean-colour image as the floor to compare with; all into ``results.json`` here and
into status.json's metrics, per photo under ``held_out``. Each held-out photo and its render go
to the outbox as a pair of web-sized JPEGs (``heldout-<stem>-photo.jpg`` and ``-render.jpg``,
the same size, at most ``STRIP_LONG_SIDE`` on the long side and never larger than they were
scored at), so that anyone can see what the scores mean. LPIPS is null when its weights are not
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
from stages.web_images import write_web_jpeg

log = logging.getLogger("stages.evaluate")

HELD_OUT_DIR = "held-out"  # the strip's JPEGs, in this stage's folder and then in the outbox
STRIP_LONG_SIDE = 800
# status.json is public: the person learns that LPIPS is missing, the journal why and where
LPIPS_UNAVAILABLE = "LPIPS (a perceptual score) is not available on this server; PSNR and SSIM are"
# a stem that is not safe in a file name and a URL as it is becomes the photo's index
_SAFE_STEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class EvaluateStage(Stage):
    name = "evaluate"

    def run(self, context: StageContext, report: ProgressReporter) -> StageResult:
        started = time.monotonic()
        sfm_dir = context.stage_dir("sfm")
        trained = read_result(context, "train")
        if not read_split(sfm_dir, TEST_FILE):
            reason = "no photos were held out (eval = false in job.toml, or fewer than 8 photos placed)"
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
                on_image=lambda done, total: report(100.0 * done / total, f"scored {done}/{total} held-out photos"),
            )
        lpips = "n/a" if evaluation.lpips is None else f"{evaluation.lpips:.3f}"
        log.info("held-out: PSNR %.2f dB, SSIM %.3f, LPIPS %s (mean colour %.2f dB) over %d photos",
                 evaluation.psnr, evaluation.ssim, lpips, evaluation.mean_colour_psnr, len(evaluation.images))
        # without LPIPS, ``evaluate`` has logged why for the operator (which files, where, the setting); and how to fix it
        if evaluation.lpips_unavailable:
            log.warning("LPIPS is off for this job: `%s` fetches its weights into %s and turns it on for the next "
                        "(see `instarecon doctor`)", FETCH_COMMAND, weights or "the state folder's lpips-weights")
        folder = context.output_dir.relative_to(context.job_dir).as_posix()
        strip = _write_strip(evaluation, context.output_dir)
        metrics: dict[str, Any] = {
            "images": len(evaluation.images),
            "psnr": evaluation.psnr,
            "ssim": evaluation.ssim,
            "lpips": evaluation.lpips,
            "lpips_unavailable": "not available on this server" if evaluation.lpips_unavailable else None,
            "mean_colour_psnr": evaluation.mean_colour_psnr,
            "resolution": f"{evaluation.width}x{evaluation.height}",
            "held_out": [
                {"name": score.name, "psnr": score.psnr, "ssim": score.ssim, "lpips": score.lpips,
                 "photo": photo, "render": render}
                for score, (photo, render) in zip(evaluation.images, strip)
            ],
            "seconds": round(time.monotonic() - started, 3),
            **gpu.metrics(),
        }
        strip_outputs = {
            f"held_out_{index}_{kind}": f"{folder}/{HELD_OUT_DIR}/{name}"
            for index, pair in enumerate(strip) for kind, name in zip(("photo", "render"), pair)
        }
        outputs = {
            "results": f"{folder}/{RESULTS_FILE}",
            "renders": f"{folder}/test/ours_{evaluation.iteration}/renders",
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


def _write_strip(evaluation: Evaluation, output_dir: Path) -> list[tuple[str, str]]:
    """Each held-out photo and its render (the PNGs ``evaluate`` wrote, at the size they were
    scored at) as web-sized JPEGs of one size; (photo, render) file names per scored photo."""
    renders_dir = output_dir / "test" / f"ours_{evaluation.iteration}"
    names = [score.name for score in evaluation.images]
    (output_dir / HELD_OUT_DIR).mkdir(exist_ok=True)
    pairs = []
    for name, stem in zip(names, strip_stems(names)):
        pair = (f"heldout-{stem}-photo.jpg", f"heldout-{stem}-render.jpg")
        for source, target in zip(("gt", "renders"), pair):
            with Image.open(renders_dir / source / f"{Path(name).stem}.png") as picture:
                write_web_jpeg(output_dir / HELD_OUT_DIR / target, picture, STRIP_LONG_SIDE)
        pairs.append(pair)
    return pairs
