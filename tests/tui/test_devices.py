"""The device panel's sampling: NVIDIA GPUs through NVML, else the runner's process.

This machine has no NVIDIA driver, so the GPU path runs against a stand-in NVML module with the
functions and error type of ``nvidia-ml-py`` (the library carclf calls); the process path runs for
real on a child process."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from carclf_tui import devices


def fake_nvml(gpus: list[dict]) -> types.SimpleNamespace:
    class NVMLError(Exception):
        pass

    def reading(key):
        def read(handle, *args):
            value = gpus[handle][key]
            if value is None:
                raise NVMLError("Not Supported")
            return value
        return read

    return types.SimpleNamespace(
        NVMLError=NVMLError,
        NVML_TEMPERATURE_GPU=0,
        nvmlDeviceGetCount=lambda: len(gpus),
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetName=lambda h: gpus[h]["name"],
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=gpus[h]["util"]),
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(used=gpus[h]["used"], total=gpus[h]["total"]),
        nvmlDeviceGetTemperature=reading("temp"),
        nvmlDeviceGetPowerUsage=reading("power_mw"),
    )


H100 = {"name": b"NVIDIA H100 80GB HBM3", "util": 87, "used": 41 * 2**30, "total": 80 * 2**30, "temp": 63,
        "power_mw": 310_000}


def test_each_gpu_is_described_on_one_line():
    gpus = [H100, {**H100, "name": "NVIDIA H100", "util": 3, "temp": None, "power_mw": None}]
    report = devices.DeviceMonitor(fake_nvml(gpus)).sample(runner_pid=None, training=True)
    assert [g.utilisation for g in report.gpus] == [87, 3]
    assert report.gpus[1].temperature is None and report.gpus[1].power is None  # unsupported: no crash
    assert devices.describe(report) == ["GPU0 NVIDIA H100 80GB HBM3   87 %  41.0/80.0 GiB  63 °C  310 W",
                                        "GPU1 NVIDIA H100    3 %  41.0/80.0 GiB"]


def test_an_idle_gpu_while_training_gets_a_hint_only_after_several_samples():
    gpus = [{**H100, "util": 2}]
    monitor = devices.DeviceMonitor(fake_nvml(gpus))
    reports = [monitor.sample(None, training=True) for _ in range(devices.IDLE_SAMPLES)]
    assert all(not r.hint for r in reports[:-1])
    assert "input-bound?" in reports[-1].hint
    gpus[0]["util"] = 95
    assert not monitor.sample(None, training=True).hint  # busy again: the hint goes
    gpus[0]["util"] = 0
    assert not any(monitor.sample(None, training=False).hint for _ in range(devices.IDLE_SAMPLES + 1))


def test_without_a_gpu_the_runner_process_is_sampled_for_real():
    child = subprocess.Popen([sys.executable, "-c", "import time\nx = bytearray(64 << 20)\nwhile True: pass"])
    try:
        monitor = devices.DeviceMonitor(None, reason="no NVIDIA GPU (NVML Shared Library Not Found)")
        monitor.sample(child.pid, training=True)
        import time

        time.sleep(0.5)
        report = monitor.sample(child.pid, training=True)
        assert report.runner is not None and report.runner.pid == child.pid
        assert report.runner.cpu_percent > 20 and report.runner.rss > 60 * 2**20
        (line,) = devices.describe(report)
        assert line.startswith(f"runner pid {child.pid}  CPU ")
    finally:
        child.kill()
        child.wait()
    assert monitor.sample(child.pid, training=False).runner is None  # gone: no crash, no line
    assert devices.describe(monitor.sample(None, False)) == [
        "no runner running; no NVIDIA GPU (NVML Shared Library Not Found)"]


def test_the_real_nvml_loader_reports_why_there_is_no_gpu_here():
    nvml, reason = devices.load_nvml()
    if nvml is not None:
        pytest.skip("this machine has an NVIDIA GPU")
    assert reason.startswith(("no NVIDIA GPU", "nvidia-ml-py is not installed"))
