"""The training pane: loss and accuracy curves, the patience meter and live figures, the epoch table."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal

from carclf_core.runstate import RunState

from ..widgets.plots import CurvePlot
from ..widgets.training import EpochTable, TrainingStats
from .base import Pane


class TrainingPane(Pane):
    """The training monitor; the epoch table has focus, so arrows and page keys scroll it."""

    TAB = "training"
    LABEL = "2 Training"
    FOCUS = "#epoch-table"

    def compose(self) -> ComposeResult:
        with Horizontal(id="curves"):
            yield CurvePlot("loss", id="loss-plot")
            yield CurvePlot("accuracy", id="acc-plot")
        with Horizontal(id="train-bottom"):
            yield TrainingStats(id="train-stats")
            yield EpochTable(id="epoch-table")

    def show(self, state: RunState) -> None:
        for plot in self.query(CurvePlot):
            plot.show(state)
        self.query_one(TrainingStats).show(state)
        self.query_one(EpochTable).show(state)

    def tick(self, state: RunState) -> None:
        # Plots skip batch-only updates that come too fast; catch up on the last one here.
        for plot in self.query(CurvePlot):
            plot.show(state)
