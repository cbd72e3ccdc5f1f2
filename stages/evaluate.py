"""The evaluation stage: the trained model scored on the photos SfM held out (``test.txt``).

PSNR, SSIM and LPIPS per photo and on average, renders saved beside the photos, and the score
of a flat mean-colour image as the floor to compare with; all into ``results.json`` here and
into status.json's metrics. LPIPS is null, with the reason, when its weights are not on this
machine (setting ``lpips_weights``). A job trained on every photo (``eval = false``) has nothing
to score: the stage says so and passes. On a GPU, its memory (NVML's and PyTorch's peaks) and
utilisation go into ``metrics.evaluate.gpu`` (``stages.gpu_watch``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from gaussian_splatting.evaluate import RESULTS_FILE, evaluate
from gaussian_splatting.rasterize import resolve_backend
from gaussian_splatting.scene import TEST_FILE, read_split

from stages.base import RESULT_FILE, ProgressReporter, Stage, StageContext, StageResult
from stages.gpu_watch import GpuWatch

log = logging.getLogger("stages.evaluate")


class EvaluateStage(Stage):
    name = "evaluate"

    def run(self, context: StageContext, report: ProgressReporter) -> StageResult:
        started = time.monotonic()
        sfm_dir = context.stage_dir("sfm")
        trained = json.loads((context.stage_dir("train") / RESULT_FILE).read_text())
        if not read_split(sfm_dir, TEST_FILE):
            reason = "no photos were held out (eval = false in job.toml, or fewer than 8 photos placed)"
            log.info("nothing to score: %s", reason)
            return StageResult(metrics={"images": 0, "psnr": None, "ssim": None, "lpips": None, "skipped": reason})

        weights = context.settings.get("lpips_weights") or None
        backend = resolve_backend(context.settings["train_backend"])
        with GpuWatch.for_backend(backend) as gpu:  # evaluation runs in this process: PyTorch's peaks too
            gpu.add_process(os.getpid())
            evaluation = evaluate(
                sfm_dir,
                context.job_dir / trained["outputs"]["model"],
                iteration=int(trained["metrics"]["iterations"]),
                backend=backend,
                resolution_scale=int(trained["metrics"].get("resolution_scale", 1)),
                lpips_weights=Path(weights) if weights else None,
                output_dir=context.output_dir,
                on_image=lambda done, total: report(100.0 * done / total, f"scored {done}/{total} held-out photos"),
            )
        lpips = "n/a" if evaluation.lpips is None else f"{evaluation.lpips:.3f}"
        log.info("held-out: PSNR %.2f dB, SSIM %.3f, LPIPS %s (mean colour %.2f dB) over %d photos",
                 evaluation.psnr, evaluation.ssim, lpips, evaluation.mean_colour_psnr, len(evaluation.images))
        metrics: dict[str, Any] = {
            "images": len(evaluation.images),
            "psnr": evaluation.psnr,
            "ssim": evaluation.ssim,
            "lpips": evaluation.lpips,
            "lpips_unavailable": evaluation.lpips_unavailable,
            "mean_colour_psnr": evaluation.mean_colour_psnr,
            "resolution": f"{evaluation.width}x{evaluation.height}",
            "seconds": round(time.monotonic() - started, 3),
            **gpu.metrics(),
        }
        folder = context.output_dir.relative_to(context.job_dir).as_posix()
        outputs = {
            "results": f"{folder}/{RESULTS_FILE}",
            "renders": f"{folder}/test/ours_{evaluation.iteration}/renders",
        }
        warnings = (f"LPIPS not computed: {evaluation.lpips_unavailable}",) if evaluation.lpips_unavailable else ()
        return StageResult(metrics=metrics, outputs=outputs, warnings=warnings)
