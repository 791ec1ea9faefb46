"""The confusion pane: the newest confusion matrix, and ``v`` to switch between its views."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll

from carclf_core.runstate import RunState

from ..widgets.confusion import ConfusionView
from .base import Pane


class ConfusionPane(Pane):
    """Heatmap, most-confused pairs or per-class metrics of the newest matrix the train stage sent."""

    TAB = "confusion"
    LABEL = "3 Confusion"
    BINDINGS = [Binding("v", "cycle_view", "Next view", id="cycle-view")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="confusion-box"):
            yield ConfusionView(id="confusion-view")

    def show(self, state: RunState) -> None:
        self.query_one(ConfusionView).show(state)  # redraws only for a new matrix, mode or size

    def action_cycle_view(self) -> None:
        """Switch to the next view of the matrix."""
        mode = self.query_one(ConfusionView).cycle()
        self.notify(f"confusion: {mode}", timeout=2)
