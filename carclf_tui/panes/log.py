"""The log pane: the stages' warnings and errors, rejected files with their reasons included."""

from __future__ import annotations

from textual.app import ComposeResult

from carclf_core.runstate import RunState

from ..widgets.logview import LogView
from .base import Pane


class LogPane(Pane):
    """Appended to even while hidden, so its scroll-back is complete when shown (the run state keeps
    only a bounded tail of the log)."""

    TAB = "log"
    LABEL = "5 Log"
    FOCUS = "#log-view"
    DRAW_HIDDEN = True

    def compose(self) -> ComposeResult:
        yield LogView(id="log-view")

    def show(self, state: RunState) -> None:
        self.query_one(LogView).show(state)
