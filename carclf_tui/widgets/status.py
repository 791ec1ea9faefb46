"""The status line on top of the dashboard: the run, what runs now, warnings and errors."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from carclf_core import runstate as rs

from .stages import STATUS_STYLE


class StatusLine(Static):
    """One line: the run, what runs now, warnings and errors (words, so it reads without colour)."""

    DEFAULT_CSS = """
    StatusLine {
        height: 1;
        padding: 0 1;
    }
    """

    def show(self, run_name: str, state: rs.RunState, busy: bool) -> None:
        text = Text()
        text.append("carclf ", style="bold")
        text.append(run_name)
        running = state.running_stage()
        if running:
            symbol, style = STATUS_STYLE[rs.RUNNING]
            text.append(f"  {symbol} {running}", style=style)
            if running == "train" and state.epochs:
                text.append(f" epoch {state.epoch}/{state.epochs}")
        else:
            symbol, style = STATUS_STYLE.get(state.run_status, ("·", ""))
            text.append(f"  {symbol} {'idle' if state.run_status == rs.PENDING else state.run_status}", style=style)
        if busy and not running:
            text.append("  (runner starting)", style="dim")
        text.append(f"  warnings {state.warnings}  errors {state.errors}",
                    style="bold red" if state.errors else "")
        self.update(text)
