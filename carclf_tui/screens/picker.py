"""The run picker (``o``, and on start when several runs exist): every run in the folder with its status,
classes, accuracies, time spent and age; enter opens the highlighted run, escape closes.

The folder is listed and each run summarised in a thread worker (:func:`carclf_core.catalog.summarize`
reads a few small files a run), so the picker draws at once and rows fill in as their summaries
arrive; a damaged run shows ``damaged`` and why, never an error.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static
from textual.worker import get_current_worker

from carclf_core import catalog
from carclf_core import runstate as rs
from carclf_core.display import printable
from carclf_core.runs import RunDir, list_runs

from ..widgets import fmt
from ..widgets.stages import STATUS_STYLE
from .confirm import dialog_css

# Symbol and word, as in the stages table, so a run's status reads without colour.
RUN_STATUS_STYLE = {
    catalog.RUNNING: STATUS_STYLE[rs.RUNNING],
    catalog.DONE: STATUS_STYLE[rs.DONE],
    catalog.STALE: STATUS_STYLE[rs.STALE],
    catalog.FAILED: STATUS_STYLE[rs.FAILED],
    catalog.INTERRUPTED: STATUS_STYLE[rs.INTERRUPTED],
    catalog.PARTIAL: ("◐", ""),
    catalog.NEW: STATUS_STYLE[rs.PENDING],
    catalog.DAMAGED: ("!", "bold red"),
}
COLUMNS = ("run", "status", "classes", "val acc", "test acc", "time", "age")
WIDTHS = {"status": 22, "classes": 7, "val acc": 7, "test acc": 8, "time": 8, "age": 5}
"""Fixed widths of the columns filled in later: measuring every updated cell again (DataTable's
``update_width``) cost more UI time than reading the runs did. A status is at most ``◐ partial 2/5
done`` or ``■ interrupted evaluate`` (a longer detail is cut, and said whole below the table)."""
DROPPED_FIRST = ("val acc", "classes", "age", "test acc")
"""The columns a narrow picker leaves out, first first: the run, its status and its time always show
(the line under the table says the whole summary in words)."""
MIN_RUN = 22
"""Fewest columns of the run's name (its start and end, ``…`` between) before a column is left out."""
PADDING = 2
"""A DataTable cell's padding, one column each side."""


def fitting_columns(width: int) -> tuple[tuple[str, ...], int]:
    """The columns a table ``width`` wide shows, and the width of the run's name in it."""
    shown = list(COLUMNS)
    for name in DROPPED_FIRST:
        if MIN_RUN + sum(WIDTHS[c] + PADDING for c in shown if c != "run") + PADDING <= width:
            break
        shown.remove(name)
    rest = sum(WIDTHS[c] + PADDING for c in shown if c != "run") + PADDING
    return tuple(shown), max(MIN_RUN, width - rest)


def middle_cut(text: str, width: int) -> str:
    """``text`` in ``width`` columns, cut in its middle (``…``): run names differ at both ends (the
    date first, the name last)."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]
SUMMARY_BATCH_S = 0.1
"""Summaries read are posted to the UI at most this often (one message, one redraw, for many rows)."""


class RunsListed(Message):
    """The worker found these runs (newest first); their summaries follow one by one."""

    def __init__(self, runs: list[RunDir]) -> None:
        super().__init__()
        self.runs = runs


class RunsSummarized(Message):
    """The summaries read since the last such message (a batch: one redraw for many rows)."""

    def __init__(self, summaries: list[catalog.RunSummary]) -> None:
        super().__init__()
        self.summaries = summaries


class ListingFailed(Message):
    """The folder itself could not be listed."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


def status_cell(summary: catalog.RunSummary) -> Text:
    symbol, style = RUN_STATUS_STYLE.get(summary.status, ("?", ""))
    label = f"{symbol} {summary.status}"
    if summary.detail and summary.status in (catalog.RUNNING, catalog.FAILED, catalog.INTERRUPTED, catalog.PARTIAL):
        label += f" {printable(summary.detail)}"
    if len(label) > WIDTHS["status"]:  # cut where it shows, not mid-word by the table: the line below says all
        label = label[: WIDTHS["status"] - 1] + "…"
    return Text(label, style=style)


def accuracy(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


class RunPicker(ModalScreen[RunDir | None]):
    """Dismisses with the chosen run (enter on its row), or None (escape).

    Args:
        root: the folder whose runs are listed.
        current: the run the dashboard shows now (marked ``●`` and highlighted first).
        clock: wall clock for the ages.
    """

    BINDINGS = [Binding("escape,o", "close", "Close")]
    DEFAULT_CSS = dialog_css("RunPicker", width=110, border="$accent") + """
    RunPicker DataTable {
        height: auto;
        max-height: 20;
    }
    RunPicker #run-detail {
        height: auto;
        color: $text-muted;
    }
    """

    def __init__(self, root: Path, current: RunDir | None = None, clock=time.time) -> None:
        super().__init__()
        self.root = Path(root)
        self.current = Path(current.path).resolve() if current is not None else None
        self.clock = clock
        self.runs: dict[str, RunDir] = {}
        """The runs listed, by row key."""
        self.summaries: dict[str, catalog.RunSummary] = {}
        """The summaries read so far, by row key."""
        self.listed = False
        """The folder has been listed (rows exist for every run)."""
        self._cells: dict[str, dict[str, Text]] = {}
        """Every row's cells (the run's name whole), by row key: what a new layout draws again."""
        self._layout: tuple[tuple[str, ...], int] | None = None
        """The columns shown and the run name's width (:func:`fitting_columns`)."""

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text.assemble(("Open a run", "bold"), f"  in {printable(self.root)}/"), id="picker-title")
            yield DataTable(id="runs", cursor_type="row", zebra_stripes=False)
            yield Static(Text("reading the runs ...", style="dim"), id="run-detail")
            yield Static(Text("enter: open the run   escape: close   up/down: choose", style="dim"))

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        self._lay_out()
        table.focus()
        self._read(self.root)

    def on_resize(self) -> None:
        self._lay_out()

    def _lay_out(self) -> None:
        """Columns by width, as the training tab's table: at 80 columns the run, its status, time,
        test accuracy and age; the rows drawn again when that changes."""
        table = self.query_one(DataTable)
        width = table.size.width or max(40, min(110, self.app.size.width) - 6)
        layout = fitting_columns(width)
        if layout == self._layout:
            return
        self._layout = layout
        columns, _ = layout
        current = self._highlighted() if table.row_count else None
        table.clear(columns=True)
        for name in columns:
            table.add_column(name, key=name, width=WIDTHS.get(name))
        for key in self._cells:
            table.add_row(*self._shown_cells(key), key=key)
        if current is not None:
            table.move_cursor(row=table.get_row_index(current))

    def _shown_cells(self, key: str) -> list[Text]:
        assert self._layout is not None
        columns, run_width = self._layout
        cells = self._cells[key]
        name = cells["run"]
        return [Text(middle_cut(name.plain, run_width)) if column == "run" else cells[column] for column in columns]

    def _set(self, key: str, column: str, value: Text) -> None:
        self._cells[key][column] = value
        assert self._layout is not None
        columns, run_width = self._layout
        if column in columns:
            shown = Text(middle_cut(value.plain, run_width)) if column == "run" else value
            self.query_one(DataTable).update_cell(key, column, shown)

    # --- reading, in a thread --------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="picker", name="read runs", exit_on_error=False)
    def _read(self, root: Path) -> None:
        worker = get_current_worker()
        try:
            runs = list(reversed(list_runs(root)))
        except OSError as exc:
            self.post_message(ListingFailed(f"{printable(root)}: {exc.strerror or exc}"))
            return
        self.post_message(RunsListed(runs))
        batch: list[catalog.RunSummary] = []
        posted = time.monotonic()
        for run in runs:
            if worker.is_cancelled:
                return
            batch.append(catalog.summarize(run))
            if time.monotonic() - posted > SUMMARY_BATCH_S:
                self.post_message(RunsSummarized(batch))
                batch, posted = [], time.monotonic()
        self.post_message(RunsSummarized(batch))

    def on_runs_listed(self, message: RunsListed) -> None:
        table = self.query_one(DataTable)
        current = ""
        for run in message.runs:
            key = str(run.path)  # the listing's own path: the worker's summaries carry the same
            self.runs[key] = run
            shown = Path(key).resolve() == self.current
            current = key if shown else current
            self._cells[key] = {"run": Text(("● " if shown else "  ") + printable(run.name)),
                                "status": Text("…", style="dim"), **{c: Text("") for c in COLUMNS[2:]}}
            table.add_row(*self._shown_cells(key), key=key)
        self.listed = True
        if not message.runs:
            self._detail(Text(f"no runs under {printable(self.root)}/ yet", style="dim"))
            return
        if current:
            table.move_cursor(row=table.get_row_index(current))
        self._show_detail()

    def on_runs_summarized(self, message: RunsSummarized) -> None:
        now = self.clock()
        for summary in message.summaries:
            key = str(summary.run.path)
            self.summaries[key] = summary
            cells = ("-" if summary.classes is None else str(summary.classes), accuracy(summary.val_accuracy),
                     accuracy(summary.test_accuracy), fmt.duration(summary.duration_s) or "-",
                     fmt.age(summary.created, now))
            if key not in self._cells:
                continue
            self._set(key, "status", status_cell(summary))
            for column, value in zip(COLUMNS[2:], cells, strict=True):
                self._set(key, column, Text(value))  # Text: never parsed as markup
        self._show_detail()

    def on_listing_failed(self, message: ListingFailed) -> None:
        self.listed = True
        self._detail(Text(f"cannot list the runs: {message.error}", style="bold red"))

    # --- the highlighted run ---------------------------------------------------------------------
    def _highlighted(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value)

    def _detail(self, text: Text) -> None:
        self.query_one("#run-detail", Static).update(text)

    def _show_detail(self) -> None:
        key = self._highlighted()
        if key is None:
            return
        text = Text(printable(key))
        summary = self.summaries.get(key)
        if summary is not None:
            # the whole summary in words too: on a narrow terminal the last columns scroll out of view
            words = [summary.status + (f": {printable(summary.detail)}" if summary.detail else "")]
            if summary.classes is not None:
                words.append(f"{summary.classes} classes")
            words += [f"{name} {accuracy(value)}" for name, value in
                      (("val acc", summary.val_accuracy), ("test acc", summary.test_accuracy)) if value is not None]
            if summary.duration_s is not None:
                words.append(f"{fmt.duration(summary.duration_s)} of stages")
            if summary.created is not None:
                words.append(f"made {fmt.age(summary.created, self.clock())} ago")
            text.append("\n" + ", ".join(words), style="bold red" if summary.status == catalog.DAMAGED else "")
        self._detail(text)

    @on(DataTable.RowHighlighted)
    def _row_highlighted(self) -> None:
        self._show_detail()

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        run = self.runs.get(str(event.row_key.value))
        if run is not None:
            self.dismiss(run)

    def action_close(self) -> None:
        self.dismiss(None)
