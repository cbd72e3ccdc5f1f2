"""The train stage's contract with a trainer command: the reference trainer's flags only for a
trainer named in the settings, progress and ETA from its JSON lines, one retry at half the
resolution when the GPU runs out of memory (and a hint to train smaller when that is not
enough), and a clear error when it fails.

A stand-in trainer script plays the GPU that this machine does not have: it runs out of memory
at full resolution, as a real one does on a small card."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import textwrap
from pathlib import Path

import pytest

from stages.base import StageContext, StageFailed
from stages.train import TrainStage

STAND_IN = textwrap.dedent('''
    import json, sys
    from pathlib import Path
    args = sys.argv[1:]
    with open(Path(__file__).with_name("calls.jsonl"), "a") as calls:
        calls.write(json.dumps(args) + "\\n")
    model, iterations = Path(args[args.index("-m") + 1]), int(args[args.index("--iterations") + 1])
    mode = Path(args[args.index("-s") + 1], "mode").read_text()
    if "-r" not in args or "--small-gpu" in mode:
        print("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", file=sys.stderr)
        sys.exit(1)
    if "--fail" in mode:
        print("2026-01-01 00:00:00,000 ERROR trainer: points.ply has no points", file=sys.stderr)
        sys.exit(1)
    for iteration in (iterations // 2, iterations):
        print(json.dumps({"iteration": iteration, "iterations": iterations, "loss": 0.1, "gaussians": 7,
                          "iterations_per_second": 50.0}), flush=True)
    ply = model / "point_cloud" / f"iteration_{iterations}" / "point_cloud.ply"
    ply.parent.mkdir(parents=True)
    ply.write_text("ply")
''')


def _context(tmp_path: Path, mode: str = "") -> StageContext:
    job_dir = tmp_path / "jobs" / "set-1"
    (job_dir / "sfm" / "images").mkdir(parents=True)
    (job_dir / "sfm" / "mode").write_text(mode)
    trainer = tmp_path / "trainer.py"
    trainer.write_text(STAND_IN)
    return StageContext(
        job_id="set-1", set_name="set", source=tmp_path / "inbox" / "set", inbox=tmp_path / "inbox",
        job_dir=job_dir, output_dir=job_dir / "train", options={"iterations": 100, "eval": True},
        settings={"train_backend": "cuda", "train_iterations": 30000, "train_cpu_iterations": 3000,
                  "train_cpu_max_image_size": 800, "train_max_gaussians": 10, "train_cpu_max_gaussians": 10,
                  "trainer_command": [sys.executable, str(trainer)], "lpips_weights": ""},
    )  # fmt: skip


def test_out_of_gpu_memory_retries_once_at_half_resolution_and_warns(tmp_path):
    context = _context(tmp_path)
    reports = []
    result = TrainStage().run(context, lambda percent, message, eta=None: reports.append((percent, message, eta)))

    calls = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert len(calls) == 2
    sfm, model = str(context.job_dir / "sfm"), str(context.output_dir / "model")
    assert calls[0] == ["-s", sfm, "-m", model, "--iterations", "100", "--eval"]  # the reference's flags only
    assert calls[1] == calls[0] + ["-r", "2"]
    assert result.metrics["resolution_scale"] == 2 and result.metrics["gaussians"] == 7
    assert result.warnings == ("the GPU ran out of memory; trained at half the resolution instead (1/2 of the photos' size)",)
    assert result.outputs["ply"] == "train/model/point_cloud/iteration_100/point_cloud.ply"
    assert reports[0] == (50.0, "iteration 50/100, 7 Gaussians, loss 0.1000", 1.0)  # 50 left at 50 per second
    assert reports[-1][0] == 100.0 and reports[-1][2] == 0.0


def test_a_failing_trainer_fails_the_stage_with_its_last_words(tmp_path):
    context = _context(tmp_path, mode="--fail")
    with pytest.raises(RuntimeError, match="the trainer exited with status 1: .*points.ply has no points"):
        TrainStage().run(context, lambda *args: None)


def test_out_of_gpu_memory_at_half_resolution_too_fails_with_a_hint_to_train_smaller(tmp_path):
    context = _context(tmp_path, mode="--small-gpu")
    with pytest.raises(StageFailed) as failure:
        TrainStage().run(context, lambda *args: None)
    assert len((tmp_path / "calls.jsonl").read_text().splitlines()) == 2  # full, then half resolution
    assert failure.value.message.startswith("the trainer exited with status 1: torch.OutOfMemoryError")
    assert failure.value.hint == ("the GPU ran out of memory, at half the resolution too: "
                                  "set a smaller train_max_image_size or max_gaussians in job.toml")


def _calls(tmp_path: Path) -> list[list[str]]:
    return [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(("setting", "option", "expected"), [
    (None, None, "ours"),  # a context from before the setting: ours
    ("default", None, "default"),
    ("default", "mcmc", "mcmc"),  # job.toml wins
])
def test_our_trainer_on_a_gpu_gets_the_strategy_of_the_job_or_the_settings(tmp_path, monkeypatch, setting, option,
                                                                           expected):
    context = _context(tmp_path)
    monkeypatch.setattr("stages.train.OUR_TRAINER", tuple(context.settings["trainer_command"]))  # plays our trainer
    settings = {**context.settings, "trainer_command": []}
    if setting is not None:
        settings["train_strategy"] = setting
    options = {**context.options, **({"train_strategy": option} if option else {})}
    context = dataclasses.replace(context, settings=settings, options=options)
    result = TrainStage().run(context, lambda *args: None)
    flags = _calls(tmp_path)[-1]
    assert flags[flags.index("--strategy") + 1] == expected
    assert result.metrics["strategy"] == expected
    assert not any("train_strategy" in warning for warning in result.warnings)


def test_another_trainer_gets_no_strategy_flag_and_the_job_is_told(tmp_path):
    context = _context(tmp_path)
    context = dataclasses.replace(context, options={**context.options, "train_strategy": "mcmc"})
    result = TrainStage().run(context, lambda *args: None)
    assert all("--strategy" not in call for call in _calls(tmp_path))
    assert result.metrics["strategy"] is None
    assert ("train_strategy 'mcmc' applies to our trainer only; the trainer_command in the settings densifies its "
            "own way") in result.warnings


@pytest.mark.slow
def test_a_gpu_strategy_on_a_cpu_host_trains_with_ours_and_warns(tmp_path):
    """Our real trainer, on the CPU, on the trainer's synthetic scene: the set is trained, not
    failed, and its warnings say which strategy it got instead of the one it asked for."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gaussian-splatting" / "tests"))
    from gs_synthetic_scene import write_synthetic_source

    context = _context(tmp_path)
    shutil.rmtree(context.job_dir / "sfm")
    write_synthetic_source(context.job_dir / "sfm")
    context = dataclasses.replace(
        context, options={"iterations": 5, "eval": True, "train_strategy": "mcmc"},
        settings={**context.settings, "train_backend": "cpu", "trainer_command": [], "train_strategy": "default"},
    )  # fmt: skip
    result = TrainStage().run(context, lambda *args: None)
    assert result.warnings == ("train_strategy 'mcmc' needs a GPU and this host trains on the CPU: trained with "
                               "'ours' instead (the 3DGS paper's densification)",)
    assert result.metrics["strategy"] == "ours" and result.metrics["backend"] == "cpu"
    trained = json.loads((context.output_dir / "model" / "config.json").read_text())
    assert trained["strategy"] == "ours"
