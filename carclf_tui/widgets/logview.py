"""The log panel: warnings and errors from the stages (rejected files with their reasons included)."""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import RichLog

from carclf_core import runstate as rs

from .fmt import safe

LEVEL_STYLE = {"error": "bold red", "warning": "yellow", "info": ""}


def entry_text(entry: rs.LogEntry) -> Text:
    text = Text()
    if entry.t:
        text.append(time.strftime("%H:%M:%S ", time.localtime(entry.t)), style="dim")
    # The level as a word: it must read without colour. Everything after the time came from the
    # event log (file names, messages): escaped, so a name cannot drive the terminal or fake a line.
    text.append_text(safe(f"{entry.level.upper():<7} ", style=LEVEL_STYLE.get(entry.level, "")))
    if entry.stage:
        text.append_text(safe(f"[{entry.stage}] ", style="bold"))
    text.append_text(safe(entry.message))
    if entry.file:
        text.append_text(safe(f"  {entry.file}", style="cyan"))
    return text


class LogView(RichLog):
    """Appends only the log lines it has not shown yet (the state keeps a bounded tail)."""

    DEFAULT_CSS = """
    LogView {
        height: 1fr;
    }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(max_lines=rs.LOG_LINES, wrap=False, markup=False, highlight=False, **kwargs)
        self._shown = 0

    def show(self, state: rs.RunState) -> None:
        new = state.log_total - self._shown
        if new <= 0:
            return
        entries = list(state.log)[-min(new, len(state.log)):]
        for entry in entries:
            self.write(entry_text(entry))
        self._shown = state.log_total
