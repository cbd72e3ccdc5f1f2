"""Watching the GPU a stage runs on: peak memory and mean utilisation, for status.json's metrics.

A stage that may run on CUDA wraps its work in ``with GpuWatch.for_backend(backend) as gpu:``
and adds ``gpu.metrics()`` to its result's metrics: ``{"gpu": {...}}`` after a CUDA run, ``{}``
on the CPU (no ``gpu`` key: nothing is recorded there). A background thread asks NVML (the
NVIDIA driver's management library, through nvidia-ml-py's ``pynvml``) every
``SAMPLE_SECONDS`` for the device's memory in use and its utilisation, and for the memory of
the processes the stage names with ``add_process`` (the trainer, or the stage's own process).
NVML sees the whole device from any process, so the stage's process can watch a trainer it
runs as a subprocess without the trainer knowing. PyTorch's own peaks
(``torch.cuda.max_memory_allocated`` and ``max_memory_reserved``) can only be read inside the
process that used CUDA: they are added when that is the stage's own process (evaluation), and
are null for training, which runs in the trainer's process.

Which GPU: PyTorch's ``cuda:0`` in the stage and its trainer is the first GPU that
``CUDA_VISIBLE_DEVICES`` leaves visible. Its first entry is a CUDA index (the same as NVML's
where ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, or where all GPUs are alike), or a GPU or MIG UUID
(``GPU-8f3c...``, a unique prefix of a GPU's UUID will do, as for CUDA); unset means GPU 0;
empty hides every GPU. ``find_device`` maps it to an NVML handle by index or by UUID.

Watching never fails a stage: what cannot be measured is null, and ``watch_error`` says why
(no driver, a GPU that stopped answering mid-run). This module imports pynvml only when a
CUDA stage starts or doctor asks, and never imports torch, so the daemon can use it too.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping

log = logging.getLogger("stages.gpu_watch")

SAMPLE_SECONDS = 0.5
MIB = 1024**2
NO_DRIVER = "no NVIDIA driver found (libnvidia-ml.so.1 missing)"
NO_BINDINGS = "nvidia-ml-py is not installed (pip install 'instarecon3d[train]')"
# NVML's return codes (nvml.h), the same in every version of the library
_ERROR_NOT_SUPPORTED = 3
_ERROR_DRIVER_NOT_LOADED = 9
_ERROR_LIBRARY_NOT_FOUND = 12


class NvmlUnavailable(Exception):
    """NVML cannot be asked here; the message says why, in words for people."""


def load_nvml() -> Any:
    """The pynvml module, initialised (call ``nvmlShutdown`` when done); NvmlUnavailable if not."""
    try:
        import pynvml
    except ImportError as error:
        raise NvmlUnavailable(NO_BINDINGS) from error
    initialise(pynvml)
    return pynvml


def initialise(nvml: Any) -> None:
    """``nvml.nvmlInit()``, with its failures turned into NvmlUnavailable in plain words."""
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as error:
        raise NvmlUnavailable(describe_error(error)) from error


def describe_error(error: Exception) -> str:
    code = getattr(error, "value", None)
    if code == _ERROR_LIBRARY_NOT_FOUND:
        return NO_DRIVER
    if code == _ERROR_DRIVER_NOT_LOADED:
        return "the NVIDIA driver is installed but not loaded (is the kernel module in? nvidia-smi tells)"
    return f"NVML: {error}"


def text(value: str | bytes) -> str:
    """NVML strings: str from nvidia-ml-py 11.515 on, bytes before."""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


@dataclass(frozen=True)
class Device:
    handle: Any
    index: int | None  # NVML's index; None for a MIG instance, which has none of its own
    name: str
    uuid: str


def first_visible_device(environ: Mapping[str, str]) -> str | None:
    """The first entry of CUDA_VISIBLE_DEVICES as CUDA reads it: None when the variable is unset
    (every GPU is visible), "" when it hides every GPU (empty, or a first entry such as -1 that
    names none)."""
    value = environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    entry = value.split(",")[0].strip()
    if entry.isdigit() or entry.startswith(("GPU-", "MIG-")):
        return entry
    return ""


def find_device(nvml: Any, environ: Mapping[str, str] | None = None) -> Device:
    """The GPU that CUDA numbers 0 under ``environ``'s CUDA_VISIBLE_DEVICES; LookupError, with
    the reason, when it names none. NVML must be initialised."""
    environ = os.environ if environ is None else environ
    entry = first_visible_device(environ)
    if entry == "":
        raise LookupError(f"CUDA_VISIBLE_DEVICES={environ['CUDA_VISIBLE_DEVICES']!r} hides every GPU")
    count = nvml.nvmlDeviceGetCount()
    if entry is None or entry.isdigit():
        index = int(entry or 0)
        if index >= count:
            raise LookupError(f"CUDA_VISIBLE_DEVICES names GPU {index}, but NVML counts {count}" if entry
                              else "the NVIDIA driver lists no GPU")
        _warn_if_numbering_may_differ(nvml, count, environ)
        return _device(nvml, nvml.nvmlDeviceGetHandleByIndex(index), index)
    try:  # a whole UUID, of a GPU or of a MIG instance
        handle = nvml.nvmlDeviceGetHandleByUUID(entry)
    except nvml.NVMLError:
        handle = None
    uuids = _answering(nvml, count, lambda handle: text(nvml.nvmlDeviceGetUUID(handle)))
    if handle is not None:
        uuid = text(nvml.nvmlDeviceGetUUID(handle))
        indexes = [i for i, other in uuids.items() if other == uuid]
        return _device(nvml, handle, indexes[0] if indexes else None)
    matches = [i for i, uuid in uuids.items() if uuid.startswith(entry)]
    if len(matches) != 1:
        which = f"is the start of {len(matches)} GPUs' UUIDs" if matches else "no GPU's UUID starts with"
        raise LookupError(f"CUDA_VISIBLE_DEVICES names {entry}, which {which}")
    return _device(nvml, nvml.nvmlDeviceGetHandleByIndex(matches[0]), matches[0])


def _answering(nvml: Any, count: int, ask: Callable[[Any], str]) -> dict[int, str]:
    """``ask`` of each GPU by NVML index, leaving out GPUs that do not answer (lost ones)."""
    answers = {}
    for index in range(count):
        try:
            answers[index] = ask(nvml.nvmlDeviceGetHandleByIndex(index))
        except nvml.NVMLError as error:
            log.debug("GPU %d: %s", index, describe_error(error))
    return answers


def _device(nvml: Any, handle: Any, index: int | None) -> Device:
    return Device(handle, index, text(nvml.nvmlDeviceGetName(handle)), text(nvml.nvmlDeviceGetUUID(handle)))


def _warn_if_numbering_may_differ(nvml: Any, count: int, environ: Mapping[str, str]) -> None:
    """CUDA numbers the fastest GPU first unless CUDA_DEVICE_ORDER=PCI_BUS_ID; NVML by bus. They
    agree when the GPUs are all alike."""
    if count < 2 or environ.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID":
        return
    names = set(_answering(nvml, count, lambda handle: text(nvml.nvmlDeviceGetName(handle))).values())
    if len(names) > 1:
        log.warning("GPUs of different kinds and CUDA_DEVICE_ORDER is not PCI_BUS_ID: CUDA may number them "
                    "differently from NVML, and the GPU metrics may describe another GPU than training used")


class GpuWatch:
    """Samples one GPU in a background thread between ``start`` and ``stop`` (or ``with``).

    ``sample`` takes one reading: ``start`` takes the first, then the thread one every ``interval``
    seconds. A GPU that stops answering (NVMLError: it fell off the bus, the driver reset it) ends
    the sampling; what was gathered until then stays, and ``watch_error`` says what happened.
    """

    def __init__(self, active: bool, nvml: Any = None, environ: Mapping[str, str] | None = None,
                 interval: float | None = None, torch_module: Any = None):
        self.active = active  # False on the CPU: nothing is sampled or recorded
        self._nvml = nvml  # pynvml, or a stand-in with the same names; None: load pynvml at start
        self._environ = environ  # None: this process's (CUDA_VISIBLE_DEVICES)
        self._interval = SAMPLE_SECONDS if interval is None else interval
        self._torch = torch_module  # None: this process's torch, if it has imported one
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._initialised = False
        self._stopped = False
        self._device: Device | None = None
        self._pids: set[int] = set()
        self._memory_total: int | None = None
        self._samples = 0
        self._peak_used: int | None = None
        self._utilisation_sum = 0.0
        self._utilisation_count = 0
        self._utilisation_supported = True
        self._processes_supported = True
        self._process_peak: int | None = None
        self._torch_peaks: tuple[int | None, int | None] = (None, None)
        self.error: str | None = None

    @classmethod
    def for_backend(cls, backend: str, **options: Any) -> "GpuWatch":
        """A watch that samples when ``backend`` (as resolved: "cpu" or "cuda") is "cuda"."""
        return cls(backend == "cuda", **options)

    def add_process(self, pid: int) -> None:
        """Count ``pid``'s GPU memory in ``process_peak_memory_mb`` (the trainer's, say)."""
        with self._lock:
            self._pids.add(pid)

    def start(self) -> "GpuWatch":
        if not self.active or self._started:
            return self
        self._started = True
        try:
            if self._nvml is None:
                self._nvml = load_nvml()
            else:
                initialise(self._nvml)
        except NvmlUnavailable as error:
            self._give_up(str(error))
            return self
        self._initialised = True
        try:
            self._device = find_device(self._nvml, self._environ)
            self._memory_total = int(self._nvml.nvmlDeviceGetMemoryInfo(self._device.handle).total)
        except LookupError as error:
            self._give_up(str(error))
            return self
        except self._nvml.NVMLError as error:
            self._give_up(describe_error(error))
            return self
        log.info("watching GPU %s (%s) every %g s", self._device.index, self._device.name, self._interval)
        # The first reading here, so that pynvml has looked up every NVML function before the
        # stage forks its trainer: a fork in the middle of such a lookup (dlsym) in the thread
        # could leave the child stuck on the dynamic loader's lock in die_with_parent.
        if self.sample():
            self._thread = threading.Thread(target=self._run, name="gpu-watch", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Ends the sampling (at once: it waits for at most one reading) and lets NVML go."""
        if not self.active or self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        if self._initialised:
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError as error:
                log.debug("nvmlShutdown: %s", error)
        self._torch_peaks = self._read_torch_peaks()

    def __enter__(self) -> "GpuWatch":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def sample(self) -> bool:
        """One reading of memory, utilisation and the named processes' memory; False when the GPU
        stopped answering (the reason is kept in ``error``)."""
        nvml, handle = self._nvml, self._device.handle
        try:
            used = int(nvml.nvmlDeviceGetMemoryInfo(handle).used)
            utilisation = self._utilisation(handle)
        except nvml.NVMLError as error:
            with self._lock:
                self.error = f"the GPU stopped answering after {self._samples} samples: {describe_error(error)}"
            log.warning("%s", self.error)
            return False
        process_memory = self._process_memory(handle)
        with self._lock:
            self._samples += 1
            self._peak_used = used if self._peak_used is None else max(self._peak_used, used)
            if utilisation is not None:
                self._utilisation_sum += utilisation
                self._utilisation_count += 1
            if process_memory is not None:
                self._process_peak = max(self._process_peak or 0, process_memory)
        return True

    def summary(self) -> dict[str, Any] | None:
        """What status.json's ``metrics.<stage>.gpu`` holds; None on the CPU."""
        if not self.active:
            return None
        with self._lock:
            device = self._device
            mean = self._utilisation_sum / self._utilisation_count if self._utilisation_count else None
            allocated, reserved = self._torch_peaks
            return {
                "name": device.name if device else None,
                "uuid": device.uuid if device else None,
                "index": device.index if device else None,
                "memory_total_mb": _mib(self._memory_total),
                "peak_memory_mb": _mib(self._peak_used),  # the whole device's, whoever used it
                "process_peak_memory_mb": _mib(self._process_peak),  # the processes add_process named
                "torch_max_allocated_mb": allocated,
                "torch_max_reserved_mb": reserved,
                "mean_utilisation_percent": None if mean is None else round(mean, 1),
                "samples": self._samples,
                "watch_error": self.error,
            }

    def metrics(self) -> dict[str, Any]:
        """``{"gpu": summary}`` after a CUDA run, ``{}`` on the CPU: merge into a stage's metrics."""
        summary = self.summary()
        return {} if summary is None else {"gpu": summary}

    def _run(self) -> None:
        try:
            while not self._stopping.wait(self._interval) and self.sample():
                pass
        except Exception as error:  # watching must never take the stage down
            log.warning("GPU watch stopped: %r", error)
            with self._lock:
                self.error = f"the GPU watch stopped: {error!r}"

    def _utilisation(self, handle: Any) -> int | None:
        if not self._utilisation_supported:
            return None
        try:
            return int(self._nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except self._nvml.NVMLError as error:
            if getattr(error, "value", None) != _ERROR_NOT_SUPPORTED:
                raise
            self._utilisation_supported = False  # a MIG instance, for one: NVML has no utilisation for it
            return None

    def _process_memory(self, handle: Any) -> int | None:
        """The named processes' GPU memory in bytes; None when NVML does not list any of them (it
        lists the host's process ids, which differ from ours inside a container)."""
        if not self._processes_supported:
            return None
        try:
            processes = self._nvml.nvmlDeviceGetComputeRunningProcesses(handle)
        except self._nvml.NVMLError as error:
            log.info("GPU memory per process unavailable: %s", describe_error(error))
            self._processes_supported = False
            return None
        with self._lock:
            pids = set(self._pids)
        used = [p.usedGpuMemory for p in processes if p.pid in pids and p.usedGpuMemory is not None]
        return sum(used) if used else None

    def _give_up(self, reason: str) -> None:
        log.warning("GPU metrics unavailable: %s", reason)
        self.error = reason

    def _read_torch_peaks(self) -> tuple[int | None, int | None]:
        """PyTorch's peaks in this process, where it ran CUDA work here (never imports torch)."""
        torch = self._torch if self._torch is not None else sys.modules.get("torch")
        if torch is None or not torch.cuda.is_initialized():
            return None, None
        return _mib(torch.cuda.max_memory_allocated()), _mib(torch.cuda.max_memory_reserved())


def _mib(value: int | None) -> int | None:
    return None if value is None else round(value / MIB)
