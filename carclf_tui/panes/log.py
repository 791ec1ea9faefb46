"""The log pane: the stages' warnings and errors (rejected files with their reasons), each finished
epoch, filtered by level with ``f``."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from carclf_core.runstate import RunState

from ..widgets.logview import FILTER_WORDS, FILTERS, LogView
from .base import Pane


class LogPane(Pane):
    """Appended to even while hidden, so its scroll-back is complete when shown (the run state keeps
    only a bounded tail of the log). ``f`` steps the filter: all lines, warnings and errors, errors."""

    TAB = "log"
    LABEL = "5 Log"
    FOCUS = "#log-view"
    DRAW_HIDDEN = True
    BINDINGS = [Binding("f", "filter", "Filter", id="log-filter", tooltip="all lines / warnings and errors / errors")]

    DEFAULT_CSS = """
    #log-head {
        height: 1;
        padding: 0 1;
    }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._state: RunState | None = None
        self._head_shown = ""

    def compose(self) -> ComposeResult:
        yield Static(id="log-head")
        yield LogView(id="log-view")

    def show(self, state: RunState) -> None:
        self._state = state
        self.query_one(LogView).show(state)
        self._head(state)

    def _head(self, state: RunState) -> None:
        view = self.query_one(LogView)
        text = Text(f"{FILTER_WORDS[view.filter]}: {view.matching:,} of {len(state.log):,}", style="bold")
        if state.log_total > len(state.log):  # the older lines are in events.jsonl, not here
            text.append(f" (the last of {state.log_total:,})", style="bold")
        names = list(FILTERS)
        text.append(f" · f: {FILTER_WORDS[names[(names.index(view.filter) + 1) % len(names)]]}", style="dim")
        if text.plain != self._head_shown:  # unchanged: nothing to send to the terminal
            self._head_shown = text.plain
            self.query_one("#log-head", Static).update(text)

    def action_filter(self) -> None:
        """Show the next filter: all lines, warnings and errors, errors only."""
        view = self.query_one(LogView)
        names = list(FILTERS)
        view.set_filter(names[(names.index(view.filter) + 1) % len(names)])
        if self._state is not None:
            self._head(self._state)
