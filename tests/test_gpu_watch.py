"""The GPU watch (stages/gpu_watch.py) and doctor's GPU section.

This machine has no GPU and no NVIDIA driver, so NVML, the driver's library, is the boundary:
``FakeNvml`` answers with pynvml's names and shapes (return codes in ``NVMLError.value``,
memory in bytes) for GPUs whose memory, utilisation and processes a test sets, and that a test
can make vanish. The real path is tested too: pynvml without a driver, in the stages and in
``instarecon doctor`` run as a program. Where a driver is present those tests skip and the one
at the end looks at the real GPU instead.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import textwrap
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import pytest

from daemon.doctor import check_gpu
from stages import gpu_watch
from stages.base import RESULT_FILE, StageContext, StageResult
from stages.gpu_watch import NO_DRIVER, GpuWatch, find_device
from stages.train import TrainStage
from tests.daemon_harness import make_layout, run_cli

MIB = 1024**2
GIB = 1024**3
NOT_SUPPORTED, DRIVER_NOT_LOADED, NOT_FOUND, LIBRARY_NOT_FOUND, GPU_IS_LOST = 3, 9, 6, 12, 15


def _driver_here() -> bool:
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


DRIVER_HERE = _driver_here()
needs_no_driver = pytest.mark.skipif(DRIVER_HERE, reason="this machine has an NVIDIA driver")


class FakeNvmlError(Exception):
    """pynvml.NVMLError's shape: NVML's return code in ``value``."""

    _TEXT = {NOT_SUPPORTED: "Not Supported", NOT_FOUND: "Not Found", DRIVER_NOT_LOADED: "Driver Not Loaded",
             LIBRARY_NOT_FOUND: "NVML Shared Library Not Found", GPU_IS_LOST: "GPU is lost"}

    def __init__(self, value: int):
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return self._TEXT.get(self.value, f"Unknown Error {self.value}")


@dataclass
class FakeGpu:
    name: str
    uuid: str
    total: int = 80 * GIB
    used: int = 0
    utilisation: int | None = 0  # None: NVML does not support it here (a MIG instance)
    processes: Callable[[], dict[int, int | None]] = dict  # pid -> bytes (None: NVML cannot tell)
    lost: bool = False  # fell off the bus: every question fails


@dataclass
class FakeNvml:
    """Stands in for the ``pynvml`` module: the functions the watch and doctor call."""

    gpus: list[FakeGpu]
    mig: list[FakeGpu] = field(default_factory=list)  # reachable by UUID only, as in NVML
    init_error: int | None = None
    driver: str = "550.54.15"
    cuda: int = 12040
    open_sessions: int = 0  # nvmlInit calls not yet matched by nvmlShutdown
    NVMLError = FakeNvmlError

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise FakeNvmlError(self.init_error)
        self.open_sessions += 1

    def nvmlShutdown(self) -> None:
        self.open_sessions -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.driver

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return self.cuda

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        if not 0 <= index < len(self.gpus):
            raise FakeNvmlError(2)
        return self.gpus[index]

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> FakeGpu:
        for gpu in self.gpus + self.mig:
            if gpu.uuid == uuid:
                return gpu
        raise FakeNvmlError(NOT_FOUND)

    def nvmlDeviceGetName(self, gpu: FakeGpu) -> str:
        return self._alive(gpu).name

    def nvmlDeviceGetUUID(self, gpu: FakeGpu) -> str:
        return self._alive(gpu).uuid

    def nvmlDeviceGetMemoryInfo(self, gpu: FakeGpu) -> SimpleNamespace:
        gpu = self._alive(gpu)
        return SimpleNamespace(total=gpu.total, used=gpu.used, free=gpu.total - gpu.used)

    def nvmlDeviceGetUtilizationRates(self, gpu: FakeGpu) -> SimpleNamespace:
        if self._alive(gpu).utilisation is None:
            raise FakeNvmlError(NOT_SUPPORTED)
        return SimpleNamespace(gpu=gpu.utilisation, memory=0)

    def nvmlDeviceGetComputeRunningProcesses(self, gpu: FakeGpu) -> list[SimpleNamespace]:
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in self._alive(gpu).processes().items()]

    @staticmethod
    def _alive(gpu: FakeGpu) -> FakeGpu:
        if gpu.lost:
            raise FakeNvmlError(GPU_IS_LOST)
        return gpu


def _h100(number: int = 0, **state: Any) -> FakeGpu:
    return FakeGpu("NVIDIA H100 80GB HBM3", f"GPU-{number}a1b2c3d-{number}000-4000-8000-00000000000{number}", **state)


def _wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


# --- the sampler -------------------------------------------------------------------------------


def test_peak_and_mean_come_from_the_samples_and_memory_counts_only_the_named_processes():
    gpu = _h100()
    nvml = FakeNvml([gpu])
    watch = GpuWatch(True, nvml=nvml, environ={}, interval=3600)
    watch.add_process(4242)
    readings = [  # device memory, utilisation, the trainer's memory; another user's process beside it
        (1000, 10, 500), (3000, 90, 2500), (2000, 50, 1500), (2500, 0, None),
    ]

    def set_reading(used: int, utilisation: int, ours: int | None) -> None:
        gpu.used, gpu.utilisation = used * MIB, utilisation
        gpu.processes = lambda: {4242: None if ours is None else ours * MIB, 999: 9000 * MIB}

    set_reading(*readings[0])
    with watch:
        assert watch.summary()["samples"] == 1  # start takes the first reading itself
        for reading in readings[1:]:  # the thread waits an hour for its next: these are the test's
            set_reading(*reading)
            assert watch.sample()
    assert watch.metrics() == {"gpu": {
        "name": "NVIDIA H100 80GB HBM3", "uuid": gpu.uuid, "index": 0, "memory_total_mb": 81920,
        "peak_memory_mb": 3000, "process_peak_memory_mb": 2500, "torch_max_allocated_mb": None,
        "torch_max_reserved_mb": None, "mean_utilisation_percent": 37.5, "samples": 4, "watch_error": None,
    }}  # fmt: skip
    assert nvml.open_sessions == 0


def test_the_sampler_runs_in_the_background_and_stops_at_once():
    nvml = FakeNvml([_h100(used=4 * GIB, utilisation=70)])
    watch = GpuWatch(True, nvml=nvml, environ={}, interval=0.01).start()
    thread = watch._thread
    _wait_for(lambda: watch.summary()["samples"] >= 5)
    started = time.monotonic()
    watch.stop()
    assert time.monotonic() - started < 0.5
    assert not thread.is_alive()
    counted = watch.summary()["samples"]
    time.sleep(0.05)
    summary = watch.summary()
    assert summary["samples"] == counted and summary["mean_utilisation_percent"] == 70.0
    assert summary["peak_memory_mb"] == 4096 and summary["process_peak_memory_mb"] is None  # nothing named
    assert nvml.open_sessions == 0
    watch.stop()  # a second stop changes nothing
    assert nvml.open_sessions == 0


def test_a_gpu_that_vanishes_mid_run_ends_the_sampling_and_keeps_what_was_measured():
    gpu = _h100(used=6 * GIB, utilisation=80)
    nvml = FakeNvml([gpu])
    with GpuWatch(True, nvml=nvml, environ={}, interval=0.01) as watch:
        _wait_for(lambda: watch.summary()["samples"] >= 3)
        gpu.lost = True
        _wait_for(lambda: not watch._thread.is_alive())
        samples = watch.summary()["samples"]
    summary = watch.summary()
    assert summary["samples"] == samples >= 3
    assert summary["peak_memory_mb"] == 6144 and summary["mean_utilisation_percent"] == 80.0
    assert summary["watch_error"] == f"the GPU stopped answering after {samples} samples: NVML: GPU is lost"
    assert nvml.open_sessions == 0


def test_a_mig_instance_has_memory_but_no_utilisation():
    mig = FakeGpu("NVIDIA H100 80GB HBM3 MIG 1g.10gb", "MIG-5c5b2f3e-1111-2222-3333-444455556666",
                  total=10 * GIB, used=3 * GIB, utilisation=None)
    nvml = FakeNvml([_h100()], mig=[mig])
    with GpuWatch(True, nvml=nvml, environ={"CUDA_VISIBLE_DEVICES": mig.uuid}, interval=3600) as watch:
        assert watch.summary()["samples"] == 1
        assert watch.sample()
    summary = watch.summary()
    assert summary["name"] == mig.name and summary["index"] is None and summary["memory_total_mb"] == 10240
    assert summary["peak_memory_mb"] == 3072 and summary["mean_utilisation_percent"] is None
    assert summary["samples"] == 2 and summary["watch_error"] is None


def test_on_the_cpu_nothing_is_recorded_and_nvml_is_never_asked():
    nvml = FakeNvml([_h100()], init_error=LIBRARY_NOT_FOUND)  # would raise if asked
    with GpuWatch.for_backend("cpu", nvml=nvml) as watch:
        watch.add_process(os.getpid())
    assert watch.metrics() == {} and watch.summary() is None


@pytest.mark.parametrize(("error", "reason"), [
    (LIBRARY_NOT_FOUND, NO_DRIVER),
    (DRIVER_NOT_LOADED, "the NVIDIA driver is installed but not loaded (is the kernel module in? nvidia-smi tells)"),
])  # fmt: skip
def test_a_cuda_stage_without_nvml_records_why_and_nothing_else(error, reason):
    with GpuWatch.for_backend("cuda", nvml=FakeNvml([], init_error=error)) as watch:
        pass
    gpu = watch.metrics()["gpu"]
    assert gpu["watch_error"] == reason and gpu["samples"] == 0
    assert gpu["name"] is None and gpu["peak_memory_mb"] is None and gpu["mean_utilisation_percent"] is None


def test_torch_peaks_are_read_only_where_this_process_used_cuda():
    class Cuda:
        def __init__(self, initialised: bool):
            self.initialised = initialised

        def is_initialized(self) -> bool:
            return self.initialised

        def max_memory_allocated(self) -> int:
            return 1234 * MIB

        def max_memory_reserved(self) -> int:
            return 2048 * MIB

    for initialised, expected in ((True, (1234, 2048)), (False, (None, None))):
        watch = GpuWatch(True, nvml=FakeNvml([_h100()]), environ={}, interval=3600,
                         torch_module=SimpleNamespace(cuda=Cuda(initialised)))
        with watch:
            pass
        summary = watch.summary()
        assert (summary["torch_max_allocated_mb"], summary["torch_max_reserved_mb"]) == expected


# --- which GPU: CUDA_VISIBLE_DEVICES to NVML ------------------------------------------------------

_GPUS = [
    FakeGpu("NVIDIA A100-SXM4-80GB", "GPU-aaaa1111-0000-4000-8000-000000000000"),
    FakeGpu("NVIDIA A100-SXM4-80GB", "GPU-bbbb2222-0000-4000-8000-000000000001"),
    FakeGpu("NVIDIA A100-SXM4-80GB", "GPU-bbbb3333-0000-4000-8000-000000000002"),
]


@pytest.mark.parametrize(("visible", "index"), [
    (None, 0),  # unset: every GPU, cuda:0 is the first
    ("2,0", 2),  # the first entry is what PyTorch calls cuda:0
    (" 1 ", 1),
    ("GPU-bbbb3333-0000-4000-8000-000000000002", 2),  # a whole UUID
    ("GPU-aaaa,GPU-bbbb2222", 0),  # a unique prefix, as CUDA takes it
])  # fmt: skip
def test_cuda_visible_devices_maps_to_the_nvml_gpu_by_index_or_uuid(visible, index):
    environ = {} if visible is None else {"CUDA_VISIBLE_DEVICES": visible}
    device = find_device(FakeNvml(_GPUS), environ)
    assert device.index == index and device.uuid == _GPUS[index].uuid


@pytest.mark.parametrize(("visible", "reason"), [
    ("", "CUDA_VISIBLE_DEVICES='' hides every GPU"),
    ("-1", "CUDA_VISIBLE_DEVICES='-1' hides every GPU"),
    ("7", "CUDA_VISIBLE_DEVICES names GPU 7, but NVML counts 3"),
    ("GPU-bbbb", "CUDA_VISIBLE_DEVICES names GPU-bbbb, which is the start of 2 GPUs' UUIDs"),
    ("GPU-cccc", "CUDA_VISIBLE_DEVICES names GPU-cccc, which no GPU's UUID starts with"),
])  # fmt: skip
def test_cuda_visible_devices_that_names_no_one_gpu_is_explained(visible, reason):
    with pytest.raises(LookupError) as raised:
        find_device(FakeNvml(_GPUS), {"CUDA_VISIBLE_DEVICES": visible})
    assert str(raised.value) == reason


def test_the_watch_samples_the_gpu_cuda_visible_devices_names():
    gpus = [_h100(0, used=70 * GIB), _h100(1, used=5 * GIB)]
    with GpuWatch(True, nvml=FakeNvml(gpus), environ={"CUDA_VISIBLE_DEVICES": "1"}, interval=3600) as watch:
        assert watch.summary()["samples"] == 1
    summary = watch.summary()
    assert summary["index"] == 1 and summary["uuid"] == gpus[1].uuid and summary["peak_memory_mb"] == 5120


def test_a_gpu_list_that_names_nothing_is_recorded_not_raised():
    nvml = FakeNvml(_GPUS)
    with GpuWatch(True, nvml=nvml, environ={"CUDA_VISIBLE_DEVICES": "9"}) as watch:
        pass
    assert watch.summary()["watch_error"] == "CUDA_VISIBLE_DEVICES names GPU 9, but NVML counts 3"
    assert watch.summary()["samples"] == 0 and nvml.open_sessions == 0


# --- doctor -------------------------------------------------------------------------------------


def _lines(findings) -> list[tuple[str, bool, bool, str]]:
    return [(f.what, f.ok, f.required, f.detail) for f in findings]


def test_doctor_lists_driver_gpus_free_memory_and_the_one_training_uses():
    gpus = [_h100(0, used=int(0.8 * GIB)), _h100(1, used=60 * GIB)]
    nvml = FakeNvml(gpus, driver="550.54.15", cuda=12040)
    findings = check_gpu("auto", nvml=nvml, environ={"CUDA_VISIBLE_DEVICES": "1"})
    assert _lines(findings) == [
        ("gpu driver", True, True, "NVIDIA 550.54.15, CUDA 12.4"),
        ("gpu 0", True, True, f"NVIDIA H100 80GB HBM3, 79.2 GiB free of 80.0 GiB, {gpus[0].uuid}"),
        ("gpu 1", True, True, f"NVIDIA H100 80GB HBM3, 20.0 GiB free of 80.0 GiB, {gpus[1].uuid}"),
        ("gpu for training", True, True, "gpu 1 (NVIDIA H100 80GB HBM3)"),
    ]
    assert nvml.open_sessions == 0
    assert _lines(check_gpu("cpu", nvml=nvml, environ={}))[-1] == (
        "gpu for training", True, True, 'none: train_backend = "cpu"')


@pytest.mark.parametrize("backend", ["auto", "cpu", "cuda"])
def test_doctor_without_a_driver_notes_it_and_fails_only_where_cuda_is_required(backend):
    (finding,) = check_gpu(backend, nvml=FakeNvml([], init_error=LIBRARY_NOT_FOUND))
    assert not finding.ok and finding.what == "gpu"
    if backend == "cuda":
        assert finding.required
        assert finding.detail == f'{NO_DRIVER}: train_backend = "cuda" needs an NVIDIA GPU'
        assert "install the NVIDIA driver" in finding.fix
    else:
        assert not finding.required
        assert finding.detail == "no NVIDIA driver found (libnvidia-ml.so.1 missing): training runs on the CPU"


def test_doctor_names_a_lost_gpu_and_a_driver_without_gpus():
    gpus = [_h100(0), _h100(1, lost=True)]
    findings = _lines(check_gpu("cuda", nvml=FakeNvml(gpus), environ={}))
    assert ("gpu 1", False, True, "NVML: GPU is lost") in findings
    assert findings[-1] == ("gpu for training", True, True, "gpu 0 (NVIDIA H100 80GB HBM3)")
    for backend, required in (("auto", False), ("cuda", True)):
        outcome = 'train_backend = "cuda" cannot train' if required else "training runs on the CPU"
        assert _lines(check_gpu(backend, nvml=FakeNvml([]), environ={}))[-1] == (
            "gpu", False, required, f"the NVIDIA driver lists no GPU: {outcome}")


@needs_no_driver
def test_doctor_here_says_there_is_no_driver_and_fails_only_for_cuda(tmp_path):
    auto = run_cli(make_layout(tmp_path / "auto"), "doctor")
    assert auto.returncode == 0, auto.stdout + auto.stderr
    assert "no NVIDIA driver found (libnvidia-ml.so.1 missing): training runs on the CPU" in auto.stdout
    assert any(line.startswith("note  gpu ") for line in auto.stdout.splitlines())

    cuda = run_cli(make_layout(tmp_path / "cuda", train_backend="cuda"), "doctor")
    assert cuda.returncode == 1, cuda.stdout + cuda.stderr
    assert any(line.startswith("FAIL  gpu ") and NO_DRIVER in line for line in cuda.stdout.splitlines())
    assert "- gpu: install the NVIDIA driver" in cuda.stdout


# --- the stages -----------------------------------------------------------------------------------

STAND_IN = textwrap.dedent('''
    import json, sys, time
    from pathlib import Path
    args = sys.argv[1:]
    model, iterations = Path(args[args.index("-m") + 1]), int(args[args.index("--iterations") + 1])
    time.sleep(float(Path(__file__).with_name("seconds").read_text()))  # "training"
    print(json.dumps({"iteration": iterations, "iterations": iterations, "loss": 0.1, "gaussians": 7,
                      "iterations_per_second": 50.0}), flush=True)
    ply = model / "point_cloud" / f"iteration_{iterations}" / "point_cloud.ply"
    ply.parent.mkdir(parents=True)
    ply.write_text("ply")
''')


def _train_context(tmp_path: Path, backend: str, seconds: float = 0.0) -> StageContext:
    job_dir = tmp_path / "jobs" / "set-1"
    (job_dir / "sfm" / "images").mkdir(parents=True)
    trainer = tmp_path / "trainer.py"
    trainer.write_text(STAND_IN)
    (tmp_path / "seconds").write_text(str(seconds))
    return StageContext(
        job_id="set-1", set_name="set", source=tmp_path / "inbox" / "set", inbox=tmp_path / "inbox",
        job_dir=job_dir, output_dir=job_dir / "train", options={"iterations": 100, "eval": True},
        settings={"train_backend": backend, "train_iterations": 30000, "train_cpu_iterations": 3000,
                  "train_cpu_max_image_size": 800, "train_max_gaussians": 10, "train_cpu_max_gaussians": 10,
                  "trainer_command": [sys.executable, str(trainer)], "lpips_weights": ""},
    )  # fmt: skip


def test_a_cpu_train_stage_records_no_gpu_metrics(tmp_path, monkeypatch):
    nvml = FakeNvml([_h100()], init_error=LIBRARY_NOT_FOUND)  # would end up in the metrics if asked
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    result = TrainStage().run(_train_context(tmp_path, "cpu"), lambda *args: None)
    assert result.metrics["backend"] == "cpu" and result.metrics["gaussians"] == 7
    assert "gpu" not in result.metrics


def _processes_running(script: Path) -> dict[int, int]:
    """What the driver would list: the stand-in trainer's processes, 700 MiB each."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(script).encode() in (entry / "cmdline").read_bytes():
                found[int(entry.name)] = 700 * MIB
        except OSError:
            continue
    return found


def test_a_cuda_train_stage_records_the_gpu_and_the_trainers_memory(tmp_path, monkeypatch):
    """GIVEN NVML that lists the trainer's process among another user's; WHEN the stage trains;
    THEN metrics.train.gpu holds the device's peak, the trainer's own, and the utilisation."""
    gpu = _h100(used=9000 * MIB, utilisation=60)
    trainer = tmp_path / "trainer.py"
    gpu.processes = lambda: {1: 5000 * MIB, **_processes_running(trainer)}
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([gpu]))
    monkeypatch.setattr(gpu_watch, "SAMPLE_SECONDS", 0.02)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    result = TrainStage().run(_train_context(tmp_path, "cuda", seconds=0.5), lambda *args: None)
    recorded = result.metrics["gpu"]
    assert recorded["samples"] >= 5 and recorded["watch_error"] is None
    assert recorded["name"] == "NVIDIA H100 80GB HBM3" and recorded["index"] == 0
    assert recorded["peak_memory_mb"] == 9000 and recorded["mean_utilisation_percent"] == 60.0
    assert recorded["process_peak_memory_mb"] == 700  # the trainer's, not the other process's 5000
    assert recorded["torch_max_allocated_mb"] is None  # PyTorch's peaks live in the trainer's process
    json.dumps(result.to_json())  # what result.json and status.json will hold


@needs_no_driver
def test_a_cuda_train_stage_here_records_that_there_is_no_driver(tmp_path):
    result = TrainStage().run(_train_context(tmp_path, "cuda"), lambda *args: None)
    assert result.metrics["gpu"]["watch_error"] == NO_DRIVER and result.metrics["gpu"]["samples"] == 0


def test_a_cpu_evaluation_records_no_gpu_metrics(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gaussian-splatting" / "tests"))
    from gs_synthetic_scene import scene_gaussians, write_synthetic_source

    from daemon.config import Settings
    from gaussian_splatting.ply_export import write_ply
    from stages.evaluate import EvaluateStage

    job_dir = tmp_path / "jobs" / "set-1"
    write_synthetic_source(job_dir / "sfm")
    held_out = StageResult(metrics={"held_out_rule": "every 8th photo"})  # as the sfm stage hands on
    (job_dir / "sfm" / RESULT_FILE).write_text(json.dumps(held_out.to_json()))
    write_ply(job_dir / "train/model/point_cloud/iteration_10/point_cloud.ply", scene_gaussians())
    trained = StageResult(metrics={"iterations": 10, "backend": "cpu", "resolution_scale": 1},
                          outputs={"model": "train/model"})
    (job_dir / "train" / RESULT_FILE).write_text(json.dumps(trained.to_json()))
    context = StageContext(
        job_id="set-1", set_name="set", source=tmp_path / "inbox" / "set", inbox=tmp_path / "inbox", job_dir=job_dir,
        output_dir=job_dir / "evaluate", options={"eval": True}, settings=Settings().stage_settings(),
    )  # fmt: skip
    context = replace(context, settings={**context.settings, "train_backend": "cpu", "lpips_weights": str(tmp_path)})
    context.output_dir.mkdir()
    result = EvaluateStage().run(context, lambda *args: None)
    assert result.metrics["images"] == 4 and result.metrics["psnr"] > 30
    assert "gpu" not in result.metrics


# --- a real GPU, where there is one ---------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not DRIVER_HERE, reason="no NVIDIA driver on this machine")
def test_a_real_gpu_is_watched_and_listed():
    with GpuWatch.for_backend("cuda", interval=0.05) as watch:
        time.sleep(0.3)
    summary = watch.summary()
    assert summary["watch_error"] is None and summary["samples"] >= 2
    assert summary["name"] and summary["memory_total_mb"] > 0 and summary["peak_memory_mb"] >= 0
    findings = check_gpu("cuda")
    assert findings[0].what == "gpu driver" and all(f.ok for f in findings), findings
