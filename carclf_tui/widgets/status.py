"""The status line on top of the dashboard: the run, what runs now, warnings and errors."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from carclf_core import runstate as rs

from .fmt import safe
from .stages import STATUS_STYLE


class StatusLine(Static):
    """One line: the run, what runs now, warnings and errors (words, so it reads without colour)."""

    DEFAULT_CSS = """
    StatusLine {
        height: 1;
        padding: 0 1;
    }
    """

    _shown: Text | None = None

    def show(self, run_name: str, state: rs.RunState, busy: bool) -> None:
        text = Text()
        text.append("carclf ", style="bold")
        text.append_text(safe(run_name))  # a folder name, from outside
        running = state.running_stage()
        if running:
            symbol, style = STATUS_STYLE[rs.RUNNING]
            text.append_text(safe(f"  {symbol} {running}", style=style))
            if running == "train" and state.epochs:
                text.append(f" epoch {state.epoch}/{state.epochs}")
        else:
            symbol, style = STATUS_STYLE.get(state.run_status, ("·", ""))
            text.append(f"  {symbol} {'idle' if state.run_status == rs.PENDING else state.run_status}", style=style)
        if busy and not running:
            text.append("  (runner starting)", style="dim")
        stale = sum(1 for name in state.stage_order if state.stages[name].status == rs.STALE)
        if stale and not busy:
            symbol, style = STATUS_STYLE[rs.STALE]
            text.append(f"  {symbol} {stale} stale: u resumes", style=style)
        text.append(f"  warnings {state.warnings}  errors {state.errors}",
                    style="bold red" if state.errors else "")
        # What the reader could not use is counted where it is always seen (the log says which and why)
        skipped = state.bad_lines + state.fold_errors
        if skipped:
            text.append(f"  {skipped} event line{'s' if skipped != 1 else ''} skipped", style="yellow")
        if state.reader_problem:
            text.append("  ✗ event log unreadable (see log)", style="bold red")
        if text != self._shown:  # the same line again would be sent to the terminal again, in full
            self._shown = text
            self.update(text)
