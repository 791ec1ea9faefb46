"""The training pane: what training does with its speed and ETAs, the devices, loss and accuracy curves
with the patience meter, and the epoch table."""

from __future__ import annotations

import threading
from functools import partial

from textual.app import ComposeResult
from textual.containers import Horizontal

from carclf_core import runstate as rs
from carclf_core.runstate import RunState

from ..widgets.devices import DeviceLine, DevicesSampled, sample_devices
from ..widgets.plots import CurvePlot
from ..widgets.training import EpochTable, TrainingStats
from .base import Pane


class TrainingPane(Pane):
    """The training monitor; the epoch table has focus, so arrows and page keys scroll it.

    From the first time the tab is shown, a thread worker samples the devices about once a second (the
    GPUs through NVML, else the runner's process); the pane tells it which runner to watch. Not before:
    loading NVML has no place in the dashboard's first frame.
    """

    TAB = "training"
    LABEL = "2 Training"
    FOCUS = "#epoch-table"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._stop_sampling = threading.Event()
        self._sampling = False
        self._runner_pid: int | None = None
        self._training = False

    def compose(self) -> ComposeResult:
        yield TrainingStats(clock=self.app.clock, id="train-stats")
        yield DeviceLine(id="devices")
        with Horizontal(id="curves"):
            yield CurvePlot("loss", id="loss-plot")
            yield CurvePlot("accuracy", id="acc-plot")
        yield EpochTable(id="epoch-table")

    def _start_sampling(self) -> None:
        if self._sampling:
            return
        self._sampling = True
        post = self.post_message  # thread-safe: the worker hands each report over without waiting
        self.run_worker(partial(sample_devices, self._sampling_target, lambda report: post(DevicesSampled(report)),
                                self._stop_sampling), thread=True, name="sample devices", group="devices",
                        exit_on_error=False)

    def on_unmount(self) -> None:
        self._stop_sampling.set()

    def _sampling_target(self) -> tuple[int | None, bool]:
        # read from the worker's thread: two attributes the UI thread replaces whole
        return self._runner_pid, self._training

    def on_devices_sampled(self, message: DevicesSampled) -> None:
        self.query_one(DeviceLine).show(message.report, self._training)

    def _watch_runner(self, state: RunState) -> None:
        runner = self.app.runner
        process = runner.process
        if process is not None and runner.own_child_alive():
            self._runner_pid = process.pid
        else:
            self._runner_pid = state.runner_pid if state.run_status == rs.RUNNING and state.runner_pid else None
        self._training = state.running_stage() == "train"

    def show(self, state: RunState) -> None:
        self._watch_runner(state)
        self._start_sampling()
        self.query_one(TrainingStats).show(state)
        for plot in self.query(CurvePlot):
            plot.show(state)
        self.query_one(EpochTable).show(state)

    def tick(self, state: RunState) -> None:
        self._watch_runner(state)
        # Elapsed times and ETAs move with the clock alone; plots catch up on batches they held back.
        self.query_one(TrainingStats).show(state, clock=rs.training_progress(state, self.app.clock()) is not None)
        for plot in self.query(CurvePlot):
            plot.show(state)
