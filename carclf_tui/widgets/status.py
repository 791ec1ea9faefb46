"""The status line on top of the dashboard: the run, what runs now, warnings and errors."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from carclf_core import runstate as rs

from .fmt import safe
from .stages import STATUS_STYLE

MIN_NAME = 12
"""Fewest characters of the run's name kept when the line is narrow (its start and end, ``…`` between)."""


def run_word(state: rs.RunState, busy: bool) -> tuple[str, str, str]:
    """What the run as a whole is doing now: ``(symbol, word, style)``.

    Never ``done`` while a stage is stale, pending, failed or stopped (the run's last RunFinished
    says done for the stages it ran, not for the run); ``starting the runner`` from the key press
    until the runner's first event, where the previous attempt's word would be a claim about the past.
    """
    running = state.running_stage()
    if running:
        symbol, style = STATUS_STYLE[rs.RUNNING]
        return symbol, running, style
    if busy:
        symbol, style = STATUS_STYLE[rs.RUNNING]
        return symbol, "starting the runner", style
    statuses = [state.stages[name].status for name in state.stage_order]
    for word in (rs.FAILED, rs.INTERRUPTED):
        if state.run_status == word or (word in statuses and state.run_status != rs.RUNNING):
            symbol, style = STATUS_STYLE[word]
            return symbol, word, style
    done = sum(1 for status in statuses if status == rs.DONE)
    if statuses and done == len(statuses):
        symbol, style = STATUS_STYLE[rs.DONE]
        return symbol, "done", style
    if not done and not any(status == rs.STALE for status in statuses):
        symbol, style = STATUS_STYLE[rs.PENDING]
        return symbol, "idle", style
    return "◐", f"{done}/{len(statuses)} done", "yellow"


class StatusLine(Static):
    """One line: the run, what runs now, warnings and errors (words, so it reads without colour).

    Laid out by width: what the run does, its errors and what the reader skipped always show; the run's
    name gives way first (cut in its middle), then the word ``carclf``, then the stale hint's words.
    """

    DEFAULT_CSS = """
    StatusLine {
        height: 1;
        padding: 0 1;
    }
    """

    _shown: Text | None = None
    _last: tuple[str, rs.RunState, bool] | None = None

    def show(self, run_name: str, state: rs.RunState, busy: bool) -> None:
        self._last = (run_name, state, busy)
        text = self.line(run_name, state, busy, self.size.width - 2 if self.size.width else 200)
        if text != self._shown:  # the same line again would be sent to the terminal again, in full
            self._shown = text
            self.update(text)

    def on_resize(self) -> None:
        if self._last is not None:
            self.show(*self._last)

    @staticmethod
    def line(run_name: str, state: rs.RunState, busy: bool, width: int) -> Text:
        """The status line for ``width`` cells."""
        symbol, word, style = run_word(state, busy)
        now = Text()
        now.append_text(safe(f"  {symbol} {word}", style=style))
        if state.running_stage() == "train":
            progress = rs.training_progress(state, state.batch.last_t or 0.0)
            if progress is not None and progress.epoch:  # as the stages table's row says it
                now.append(f" epoch {progress.epoch}/{progress.epochs or '-'}")
        stale = sum(1 for name in state.stage_order if state.stages[name].status == rs.STALE)
        stale_long = stale_short = Text()
        if stale and not busy and not state.running_stage():
            s_symbol, s_style = STATUS_STYLE[rs.STALE]
            stale_long = Text(f"  {s_symbol} {stale} stale: u resumes", style=s_style)
            stale_short = Text(f"  {s_symbol} {stale} stale", style=s_style)
        tail = Text()
        tail.append(f"  warnings {state.warnings}  errors {state.errors}", style="bold red" if state.errors else "")
        # What the reader could not use is counted where it is always seen (the log says which and why)
        skipped = state.bad_lines + state.fold_errors
        if skipped:
            tail.append(f"  {skipped} event line{'s' if skipped != 1 else ''} skipped", style="yellow")
        if state.reader_problem:
            tail.append("  ✗ event log unreadable (see log)", style="bold red")
        name = safe(run_name)  # a folder name, from outside
        for prefix, stale_text in (("carclf ", stale_long), ("", stale_long), ("", stale_short)):
            room = width - len(prefix) - now.cell_len - stale_text.cell_len - tail.cell_len
            if room >= min(MIN_NAME, name.cell_len):
                break
        if name.cell_len > room:
            keep = max(MIN_NAME, room) - 1
            head = (keep + 1) // 2
            name = name[:head] + Text("…") + name[len(name) - (keep - head):]
        text = Text()
        text.append(prefix, style="bold")
        for part in (name, now, stale_text, tail):
            text.append_text(part)
        return text
