"""The log panel: the stages' warnings and errors (rejected files with their reasons), each finished
epoch, and what the dashboard noticed, wrapped to the width and filtered by level."""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import RichLog

from carclf_core import runstate as rs

from .fmt import safe

LEVEL_STYLE = {"error": "bold red", "warning": "yellow", "info": "", "debug": "dim"}
FILTERS = {"all": ("debug", "info", "warning", "error"), "warnings": ("warning", "error"), "errors": ("error",)}
"""Which levels each filter shows, in the order ``f`` steps through them."""
FILTER_WORDS = {"all": "all lines", "warnings": "warnings and errors", "errors": "errors only"}


def entry_text(entry: rs.LogEntry) -> Text:
    text = Text()
    if entry.t:
        text.append(time.strftime("%H:%M:%S ", time.localtime(entry.t)), style="dim")
    # A warning or an error says so in a word: it must read without colour (info, the most common,
    # goes unmarked, so lines fit 80 columns). Everything after the time came from the event log (file
    # names, messages): escaped, so a name cannot drive the terminal or fake a line.
    if entry.level != "info":
        text.append_text(safe(f"{entry.level.upper()} ", style=LEVEL_STYLE.get(entry.level, "bold")))
    if entry.stage:
        text.append_text(safe(f"[{entry.stage}] ", style="bold"))
    text.append_text(safe(entry.message))
    if entry.file:
        text.append_text(safe(f"  {entry.file}", style="cyan"))
    return text


def wanted(entry: rs.LogEntry, levels: tuple[str, ...]) -> bool:
    # a level the filters do not know (from a newer runner) counts as info: shown with "all"
    return (entry.level if entry.level in LEVEL_STYLE else "info") in levels


class LogView(RichLog):
    """The log, wrapped to the width; appends only the lines it has not shown yet (the state keeps a
    bounded tail, as many lines as this view), and draws them all again when the width or the filter
    changes. Says so when there is nothing to show yet."""

    DEFAULT_CSS = """
    LogView {
        height: 1fr;
    }
    """

    def __init__(self, **kwargs) -> None:
        # min_width: wrap at the panel's own width, even at 80 columns (the default is 78)
        super().__init__(max_lines=rs.LOG_LINES, wrap=True, min_width=20, markup=False, highlight=False, **kwargs)
        self._state: rs.RunState | None = None
        self._shown = 0
        self._matching = 0
        self._width = 0
        self.filter = "all"
        """The filter in use, a key of :data:`FILTERS`."""

    @property
    def matching(self) -> int:
        """Lines shown under the current filter."""
        return self._matching

    def show(self, state: rs.RunState) -> None:
        first = self._state is None
        self._state = state
        new = state.log_total - self._shown
        if first:
            self.redraw()
            return
        if new <= 0:
            return
        levels = FILTERS[self.filter]
        entries = [e for e in list(state.log)[-min(new, len(state.log)):] if wanted(e, levels)]
        if entries and not self._matching:
            self.redraw()  # the placeholder goes
            return
        for entry in entries:
            self._write(entry_text(entry))
        if state.log_total > len(state.log):
            # the state keeps the last LOG_LINES lines and so does this view: count what both hold
            self._matching = sum(1 for e in state.log if wanted(e, levels))
        else:
            self._matching += len(entries)
        self._shown = state.log_total

    def set_filter(self, name: str) -> None:
        """Show only the levels of filter ``name`` (a key of :data:`FILTERS`)."""
        self.filter = name
        self.redraw()

    def redraw(self) -> None:
        """Write every kept line that passes the filter again (a new width or filter), or say there is none."""
        state = self._state
        self.clear()
        self._matching, self._shown = 0, 0
        if state is None:
            return
        levels = FILTERS[self.filter]
        entries = [e for e in state.log if wanted(e, levels)]
        for entry in entries:
            self._write(entry_text(entry))
        self._matching, self._shown = len(entries), state.log_total
        if not entries:
            self._write(Text(self.placeholder(state), style="dim italic"))

    def _write(self, text: Text) -> None:
        # The width to wrap at, given: RichLog would measure against the console's width, which is
        # not the panel's (and not updated by a resize in every driver).
        self.write(text, width=self._width or None)

    def placeholder(self, state: rs.RunState) -> str:
        if not state.log_total:
            return "no log lines yet: warnings, errors, rejected files and each finished epoch show here"
        nothing = "no errors" if self.filter == "errors" else "no warnings or errors"
        return f"{nothing} among the {len(state.log):,} lines kept (f again shows more)"

    def on_resize(self) -> None:
        # Lines were wrapped for the old width: wrap them again (the view keeps no more than the state).
        width = max(self.scrollable_content_region.width, self.min_width)
        if width != self._width:
            self._width = width
            if self._state is not None:
                self.redraw()
