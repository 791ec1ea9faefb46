"""The device line of the training tab: each GPU's use (NVML), else the runner's CPU and memory, and a
hint when a GPU idles while training runs.

The sampling (:func:`sample_devices`) runs in a thread worker about once a second and posts each
report; NVML calls take milliseconds and must not hold up a key, and the first one loads the driver's
library. Nothing here touches TensorFlow.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from rich.text import Text
from textual.message import Message

from .. import devices
from . import fmt
from .plots import TextLines
from .training import Item, flow

SAMPLE_EVERY_S = 1.0
"""Seconds between samples."""


class DevicesSampled(Message):
    """A new device report from the sampling worker (only the newest matters)."""

    def __init__(self, report: devices.DeviceReport) -> None:
        super().__init__()
        self.report = report

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, DevicesSampled)


def sample_devices(target: Callable[[], tuple[int | None, bool]], post: Callable[[devices.DeviceReport], None],
                   stop: threading.Event, every: float = SAMPLE_EVERY_S) -> None:
    """Sample until ``stop`` is set: ``target()`` gives the runner's pid (None: none) and whether training
    runs; each report goes to ``post``. NVML is loaded here, in the worker's thread, on first use."""
    nvml, reason = devices.load_nvml()
    monitor = devices.DeviceMonitor(nvml, reason)
    while not stop.is_set():
        pid, training = target()
        post(monitor.sample(pid, training))
        stop.wait(every)


def gpu_item(gpu: devices.GpuSample) -> Item:
    """``GPU0 NVIDIA H100 87 % ████░ 41.0/80.0 GiB 63 °C 310 W``, and ``GPU0 87 % 41/80 GiB`` where
    several GPUs share narrow lines."""
    style = "yellow" if gpu.utilisation <= devices.IDLE_UTILISATION else ""
    text = Text(f"GPU{gpu.index} ", style="bold")
    text.append_text(fmt.safe(gpu.name))  # from the driver: shown escaped like any outside text
    text.append(f" {gpu.utilisation:3d} % ", style=style)
    text.append(fmt.bar(gpu.utilisation / 100, 5))
    text.append(f" {gpu.memory_used / 2**30:.1f}/{gpu.memory_total / 2**30:.1f} GiB")
    if gpu.temperature is not None:
        text.append(f" {gpu.temperature} °C")
    if gpu.power is not None:
        text.append(f" {gpu.power:.0f} W")
    short = Text(f"GPU{gpu.index} ", style="bold")
    short.append(f"{gpu.utilisation} %", style=style)
    short.append(f" {gpu.memory_used / 2**30:.0f}/{gpu.memory_total / 2**30:.0f} GiB")
    return text, short


def report_items(report: devices.DeviceReport | None, training: bool) -> list[list[Item]]:
    """The report as groups of items for :func:`~carclf_tui.widgets.training.flow`; without a GPU and
    with no runner to watch, none unless ``training`` (then the line says why there is nothing)."""
    if report is None:
        return []
    if report.gpus:
        groups: list[list[Item]] = [[gpu_item(gpu) for gpu in report.gpus]]
    elif report.runner is not None:
        r = report.runner
        groups = [[Text(f"runner pid {r.pid}", style="bold"), Text(f"CPU {r.cpu_percent:.0f} %"),
                   Text(f"memory {r.rss / 2**30:.1f} GiB")]]
        if report.source:  # why there is no GPU line, where there is room
            groups[0].append((fmt.safe(report.source, style="dim"), None))
    elif not training:
        return []  # no GPU and nothing running: nothing worth a line
    else:
        groups = [[fmt.safe(line, style="dim") for line in devices.describe(report)]]
    if report.hint:
        groups.append([fmt.safe(report.hint, style="bold yellow")])
    return groups


class DeviceLine(TextLines):
    """One line a GPU (or one for the runner's process), and the idle-GPU hint when there is one."""

    DEFAULT_CSS = """
    DeviceLine {
        height: auto;
        max-height: 4;
        padding: 0 1;
    }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.report: devices.DeviceReport | None = None
        self.training = False

    def show(self, report: devices.DeviceReport, training: bool) -> None:
        """Draw ``report``; ``training``: the train stage runs (a line even when there is no GPU)."""
        if (report, training) == (self.report, self.training):
            return
        self.report, self.training = report, training
        self.draw()

    def draw(self) -> None:
        if self.content_size.width > 0:
            self.set_lines(flow(report_items(self.report, self.training), self.content_size.width))
