"""What the machine is doing while a run trains: each NVIDIA GPU through NVML, else the runner's CPU.

Sampled in the dashboard process (never through TensorFlow) about once a second, from a worker
thread: NVML calls take a few milliseconds and must not hold up a key press. Without an NVIDIA GPU
(or without the driver's NVML library) the runner process's CPU and memory come from psutil.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from types import ModuleType
from typing import Any

IDLE_UTILISATION = 10
"""GPU utilisation (%) at or under which a training GPU counts as idle."""
IDLE_SAMPLES = 5
"""Consecutive idle samples while training runs before the dashboard says so."""


@dataclasses.dataclass(frozen=True)
class GpuSample:
    index: int
    name: str
    utilisation: int
    """Percent of the last sample period a kernel ran."""
    memory_used: int
    memory_total: int
    """Bytes."""
    temperature: int | None
    """Degrees Celsius."""
    power: float | None
    """Watts."""


@dataclasses.dataclass(frozen=True)
class ProcessSample:
    pid: int
    cpu_percent: float
    """Of one core (200 % = two cores busy)."""
    rss: int
    """Resident memory in bytes, the process and its children."""


@dataclasses.dataclass(frozen=True)
class DeviceReport:
    gpus: tuple[GpuSample, ...] = ()
    runner: ProcessSample | None = None
    hint: str = ""
    """A problem worth a look, e.g. the GPU idling while training runs (input-bound?)."""
    source: str = ""
    """Why there is no GPU line, when there is none ("no NVIDIA driver", ...)."""


def load_nvml() -> tuple[ModuleType | None, str]:
    """NVML (``nvidia-ml-py``'s ``pynvml``) initialised, or None with the reason."""
    try:
        import pynvml
    except ImportError:
        return None, "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:  # no driver library, or no device: a CPU machine
        return None, f"no NVIDIA GPU ({exc})"
    return pynvml, ""


class DeviceMonitor:
    """Samples the GPUs (or the runner's process) and remembers enough to spot an idle GPU.

    Args:
        nvml: an initialised NVML module, or None for none (``load_nvml`` finds the real one; tests
            pass a stand-in with the same functions, since this machine has no NVIDIA driver).
        reason: why ``nvml`` is None, shown instead of a GPU line.
    """

    def __init__(self, nvml: Any | None, reason: str = ""):
        self.nvml = nvml
        self.reason = reason
        self._recent_idle: deque[bool] = deque(maxlen=IDLE_SAMPLES)
        self._process: Any = None

    def gpus(self) -> tuple[GpuSample, ...]:
        if self.nvml is None:
            return ()
        nv = self.nvml
        samples = []
        for index in range(nv.nvmlDeviceGetCount()):
            handle = nv.nvmlDeviceGetHandleByIndex(index)
            name = nv.nvmlDeviceGetName(handle)
            util = nv.nvmlDeviceGetUtilizationRates(handle).gpu
            memory = nv.nvmlDeviceGetMemoryInfo(handle)
            samples.append(GpuSample(
                index=index,
                name=name.decode() if isinstance(name, bytes) else str(name),
                utilisation=int(util),
                memory_used=int(memory.used),
                memory_total=int(memory.total),
                temperature=_optional(nv, nv.nvmlDeviceGetTemperature, handle, nv.NVML_TEMPERATURE_GPU),
                power=_optional(nv, nv.nvmlDeviceGetPowerUsage, handle),
            ))
        return tuple(samples)

    def process(self, pid: int | None) -> ProcessSample | None:
        """CPU and memory of the runner ``pid`` and its children (psutil); None when it is gone."""
        if pid is None:
            self._process = None
            return None
        import psutil

        try:
            if self._process is None or self._process.pid != pid:
                self._process = psutil.Process(pid)
                self._process.cpu_percent(None)  # the first call only starts the measurement
            family = [self._process, *self._process.children(recursive=True)]
            cpu = sum(p.cpu_percent(None) for p in family)
            rss = sum(p.memory_info().rss for p in family)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            self._process = None
            return None
        return ProcessSample(pid, float(cpu), int(rss))

    def sample(self, runner_pid: int | None, training: bool) -> DeviceReport:
        """One report: the GPUs, or the runner's process when there is no GPU; a hint when the GPUs
        idled for :data:`IDLE_SAMPLES` samples in a row while training runs."""
        gpus = self.gpus()
        runner = None if gpus else self.process(runner_pid)
        idle = bool(gpus) and training and all(g.utilisation <= IDLE_UTILISATION for g in gpus)
        self._recent_idle.append(idle)
        hint = ""
        if len(self._recent_idle) == IDLE_SAMPLES and all(self._recent_idle):
            hint = f"GPU idle ({max(g.utilisation for g in gpus)} %) while training: input-bound? (see input.*)"
        return DeviceReport(gpus, runner, hint, "" if gpus else self.reason)


def _optional(nv, read, *args) -> Any:
    """A reading some GPUs do not support (temperature, power): None instead of an error."""
    try:
        value = read(*args)
    except nv.NVMLError:
        return None
    return value / 1000.0 if read is nv.nvmlDeviceGetPowerUsage else int(value)  # NVML reports milliwatts


def describe(report: DeviceReport) -> list[str]:
    """One short line per GPU, or one for the runner process: what the dashboard shows."""
    lines = [
        f"GPU{g.index} {g.name}  {g.utilisation:3d} %  {_gib(g.memory_used)}/{_gib(g.memory_total)} GiB"
        + (f"  {g.temperature} °C" if g.temperature is not None else "")
        + (f"  {g.power:.0f} W" if g.power is not None else "")
        for g in report.gpus
    ]
    if not lines and report.runner is not None:
        r = report.runner
        lines.append(f"runner pid {r.pid}  CPU {r.cpu_percent:.0f} %  memory {_gib(r.rss)} GiB")
    if not lines:
        lines.append(f"no runner running; {report.source}" if report.source else "no runner running")
    if report.hint:
        lines.append(report.hint)
    return lines


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f}"
