"""The training stage: a 3D Gaussian Splatting model from the SfM stage's cameras and points.

Runs the trainer as a subprocess through the reference trainer's command line (``-s -m
--iterations --eval --resume``), so that another trainer can be named in the settings. Its
folder is kept across interrupted runs (the registry marks the stage resumable): when it holds
a checkpoint, the trainer continues from it with ``--resume``. On the CPU the photos are read
downsized (``train_cpu_max_image_size``) and fewer iterations run by default, because a CPU
iteration costs a hundred GPU ones. When the GPU runs out of memory, training restarts once
at half the resolution and the job says so in its warnings; a trainer that runs out of memory
for good (the GPU's again, or the machine's: killed by SIGKILL) fails the job with a hint to
train smaller. On a GPU, its memory and utilisation are sampled while the trainer runs
(``stages.gpu_watch``) into ``metrics.train.gpu``.

The densification strategy (train_strategy, job.toml's too) is the trainer's ``--strategy`` on a
GPU. The CPU keeps ours: gsplat's MCMC cannot run there, and the CPU preview's short schedule
is tuned on ours. A set that asked for another is trained all the same, with a warning rather
than a failure: the strategy is a preference about quality, and the photos deserve a model.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from PIL import Image

from stages.base import ProgressReporter, Stage, StageContext, StageFailed, StageResult
from stages.compute_backend import training_backend
from stages.gpu_watch import GpuWatch
from stages.trainer_process import TrainerProgress, TrainerRun, run_trainer

log = logging.getLogger("stages.train")

MODEL_DIR = "model"
OUR_TRAINER = (sys.executable, "-m", "gaussian_splatting")
EXIT_OUT_OF_MEMORY = 4  # our trainer's exit status for CUDA out-of-memory (gaussian_splatting.cli)
_OOM_TEXT = ("CUDA out of memory", "OutOfMemoryError")
_SMALLER_MODEL = "set a smaller train_max_image_size or max_gaussians in job.toml"
_MACHINE_OUT_OF_MEMORY_HINT = f"the machine ran out of memory: {_SMALLER_MODEL}, or send fewer photos"
_GPU_OUT_OF_MEMORY_HINT = f"the GPU ran out of memory, at half the resolution too: {_SMALLER_MODEL}"


def resolution_scale(images_dir: Path, max_image_size: int | None) -> int:
    """The trainer's ``-r K`` that brings the photos' long side to at most ``max_image_size``."""
    if not max_image_size:
        return 1
    first = next(iter(sorted(path for path in images_dir.iterdir() if path.is_file())), None)
    if first is None:
        return 1
    with Image.open(first) as image:
        long_side = max(image.size)
    return max(1, math.ceil(long_side / max_image_size))


def checkpoint_interval(iterations: int) -> int:
    """Ten checkpoints a run, at most 1000 iterations apart: what a crash can cost."""
    return max(1, min(1000, iterations // 10))


class TrainStage(Stage):
    name = "train"

    def run(self, context: StageContext, report: ProgressReporter) -> StageResult:
        started = time.monotonic()
        settings = context.settings
        sfm_dir = context.stage_dir("sfm")
        model_dir = context.output_dir / MODEL_DIR
        backend = training_backend(settings["train_backend"])
        on_cpu = backend == "cpu"
        options = context.options
        iterations = options.get("iterations") or int(
            settings["train_cpu_iterations"] if on_cpu else settings["train_iterations"]
        )
        max_size = options.get("train_max_image_size") or (int(settings["train_cpu_max_image_size"]) if on_cpu else None)
        scale = resolution_scale(sfm_dir / "images", max_size)
        max_gaussians = options.get("max_gaussians") or int(
            settings["train_cpu_max_gaussians"] if on_cpu else settings["train_max_gaussians"]
        )
        evaluate = bool(context.options.get("eval", True))
        warnings: list[str] = []
        strategy = self._strategy(options.get("train_strategy") or settings.get("train_strategy") or "ours",
                                  on_cpu, bool(settings.get("trainer_command")), warnings)
        log.info("training %d iterations on %s at 1/%d resolution, densification %s", iterations, backend, scale,
                 strategy)

        def forward(progress: TrainerProgress) -> None:
            report(progress.percent, progress.describe(), progress.eta_seconds)

        environment = {"OMP_WAIT_POLICY": "PASSIVE"}
        # NVML watches the trainer's GPU from here: the trainer itself knows nothing of it
        with GpuWatch.for_backend(backend) as gpu:
            command = self._command(settings, sfm_dir, model_dir, iterations, evaluate, backend, scale, max_gaussians,
                                    strategy)
            run = run_trainer(command, forward, environment, on_start=gpu.add_process)
            if backend == "cuda" and _out_of_memory(run):
                scale *= 2
                warnings.append("the GPU ran out of memory; trained at half the resolution instead "
                                f"(1/{scale} of the photos' size)")
                log.warning("%s", warnings[-1])
                command = self._command(settings, sfm_dir, model_dir, iterations, evaluate, backend, scale,
                                        max_gaussians, strategy)
                run = run_trainer(command, forward, environment, on_start=gpu.add_process)
        if run.returncode != 0:
            hint = _memory_hint(run, backend)
            if hint is not None:  # the user can do something about it: a failure, not a crash
                raise StageFailed(_describe_failure(run), hint=hint)
            raise RuntimeError(_describe_failure(run))

        ply = model_dir / "point_cloud" / f"iteration_{iterations}" / "point_cloud.ply"
        if not ply.exists():
            raise RuntimeError(f"the trainer finished but wrote no {ply.relative_to(context.job_dir)}")
        folder = context.output_dir.relative_to(context.job_dir).as_posix()
        metrics: dict[str, Any] = {
            "iterations": iterations,
            "gaussians": run.last_progress.gaussians if run.last_progress else None,
            "final_loss": round(run.last_progress.loss, 5) if run.last_progress else None,
            "backend": backend,
            "strategy": strategy,
            "resolution_scale": scale,
            "seconds": round(time.monotonic() - started, 3),
            **gpu.metrics(),
        }
        outputs = {
            "model": f"{folder}/{MODEL_DIR}",
            "ply": ply.relative_to(context.job_dir).as_posix(),
        }
        return StageResult(metrics=metrics, outputs=outputs, warnings=tuple(warnings))

    @staticmethod
    def _strategy(wanted: str, on_cpu: bool, custom_trainer: bool, warnings: list[str]) -> str | None:
        """The ``--strategy`` to train with (None: another trainer, which takes no such flag);
        a warning when it is not the one asked for."""
        if custom_trainer:
            if wanted != "ours":
                warnings.append(f"train_strategy '{wanted}' applies to our trainer only; the trainer_command in the "
                                "settings densifies its own way")
                log.warning("%s", warnings[-1])
            return None
        if on_cpu and wanted != "ours":
            warnings.append(f"train_strategy '{wanted}' needs a GPU and this host trains on the CPU: trained with "
                            "'ours' instead (the 3DGS paper's densification)")
            log.warning("%s", warnings[-1])
            return "ours"
        return wanted

    @staticmethod
    def _command(settings: Mapping[str, Any], sfm_dir: Path, model_dir: Path, iterations: int, evaluate: bool,
                 backend: str, scale: int, max_gaussians: int, strategy: str | None = "ours") -> list[str]:
        """The reference trainer's flags; ours also takes the backend and the Gaussian cap."""
        custom = list(settings.get("trainer_command") or [])
        command = custom or list(OUR_TRAINER)
        command += ["-s", str(sfm_dir), "-m", str(model_dir), "--iterations", str(iterations)]
        if evaluate:
            command.append("--eval")
        if scale > 1:
            command += ["-r", str(scale)]
        if (model_dir / "checkpoints").is_dir() and any((model_dir / "checkpoints").iterdir()):
            command.append("--resume")
        if not custom:
            command += ["--backend", backend, "--max-gaussians", str(max_gaussians),
                        "--checkpoint-every", str(checkpoint_interval(iterations)), "--strategy", strategy or "ours"]
        return command


def _describe_failure(run: TrainerRun) -> str:
    if run.returncode < 0:
        signal_number = -run.returncode
        cause = " (SIGKILL: most likely the out-of-memory killer)" if signal_number == 9 else ""
        return f"the trainer was killed by signal {signal_number}{cause}"
    last = run.log_tail[-1] if run.log_tail else "no output"
    return f"the trainer exited with status {run.returncode}: {last}"


def _memory_hint(run: TrainerRun, backend: str) -> str | None:
    """What to change when the trainer ran out of memory: SIGKILL is, in practice, the kernel's
    out-of-memory killer (the unit's MemoryMax=, or the machine's memory); a CUDA out-of-memory
    error that outlasted the retry at half resolution is the GPU's."""
    if run.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL):  # 137: through a shell
        return _MACHINE_OUT_OF_MEMORY_HINT
    if backend == "cuda" and _out_of_memory(run):
        return _GPU_OUT_OF_MEMORY_HINT
    return None


def _out_of_memory(run: TrainerRun) -> bool:
    return run.returncode == EXIT_OUT_OF_MEMORY or any(text in line for line in run.log_tail for text in _OOM_TEXT)
