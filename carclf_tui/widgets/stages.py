"""The stages panel: one row a stage (status, duration, one-line result) and the selected stage's detail."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable, Static

from carclf_core import display
from carclf_core import runstate as rs

from . import fmt
from .tables import ThumbFollowsScroll

# Symbol and word both: the status must read without colour (NO_COLOR).
STATUS_STYLE = {
    rs.PENDING: ("·", "dim"),
    rs.RUNNING: ("▶", "bold yellow"),
    rs.DONE: ("✓", "green"),
    rs.FAILED: ("✗", "bold red"),
    rs.INTERRUPTED: ("■", "magenta"),
    rs.STALE: ("↻", "yellow"),
}

RESUME_HINT = "u (resume) brings it up to date"
"""What to do about a stale stage (the status line says it shorter: ``u resumes``)."""


def status_text(stage: rs.StageState) -> Text:
    if stage.status == rs.RUNNING and stage.waiting:  # a shard did its share; other machines finish it
        return Text("◷ waiting", style="yellow")
    symbol, style = STATUS_STYLE.get(stage.status, ("?", ""))
    label = f"{symbol} {stage.status}"
    if stage.status == rs.RUNNING and stage.total:
        label += f" {100 * stage.done // max(stage.total, 1)}%"
    return Text(label, style=style)


def stage_duration(stage: rs.StageState, now: float) -> str:
    """The stage's whole time (earlier attempts of a resumed stage included)."""
    if stage.status == rs.RUNNING and stage.started is not None:
        # whole seconds: tenths would change (and send the row again) at every event
        return fmt.timer(stage.elapsed(now))
    return fmt.duration(stage.duration_s)


class StagesTable(ThumbFollowsScroll, DataTable):
    """The stages in run order; the cursor row is the stage the run keys act on."""

    DEFAULT_CSS = """
    StagesTable {
        height: auto;
        max-height: 12;
    }
    """

    COLUMNS = ("stage", "status", "time", "result")

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._order: list[str] = []
        self._last: tuple[rs.RunState, float] | None = None
        self._width = 0

    def on_mount(self) -> None:
        for name in self.COLUMNS:
            self.add_column(name, key=name)

    @property
    def stages(self) -> tuple[str, ...]:
        """The stages shown, in run order."""
        return tuple(self._order)

    @property
    def selected_stage(self) -> str | None:
        if not self._order:
            return None
        return self._order[min(max(self.cursor_row, 0), len(self._order) - 1)]

    def on_resize(self) -> None:
        if self._last is not None:
            self.show(*self._last)  # the results are cut to the new width

    def result_width(self, state: rs.RunState, now: float) -> int:
        """Columns the result has: what the stage, status and time columns leave (a result is cut at a
        word to it, ``…`` last; the detail below the table says it whole). Measured from the cells
        themselves, not the table's columns: those are measured later, when the table is idle."""
        stages = [state.stages[name] for name in state.stage_order]
        used = sum(max([len(title), *(len(cell) for cell in cells)]) + 2 * self.cell_padding
                   for title, cells in (("stage", [display.printable(st.name) for st in stages]),
                                        ("status", [status_text(st).plain for st in stages]),
                                        ("time", [stage_duration(st, now) for st in stages])))
        return max(12, (self.size.width or self.app.size.width) - used - 2 * self.cell_padding)

    def show(self, state: rs.RunState, now: float) -> None:
        """Redraw from ``state``; rows are updated in place so the cursor stays put."""
        self._last = (state, now)
        train = training_line(state, now)
        width = self.result_width(state, now)
        # a column's measured width only grows: for another width the rows are added again
        if state.stage_order != self._order or width != self._width:
            self._width = width
            row = self.cursor_row
            self.clear()
            for column in self.columns.values():  # measured anew: a column's width only grows
                column.content_width = column.label.cell_len
            self._order = list(state.stage_order)
            for name in self._order:
                self.add_row(*self._cells(state.stages[name], now, train, width), key=name)
            if self._order:
                self.move_cursor(row=min(max(row, 0), len(self._order) - 1))
            return
        for name in self._order:
            for column, value in zip(self.COLUMNS, self._cells(state.stages[name], now, train, width), strict=True):
                if self.get_cell(name, column) != value:
                    self.update_cell(name, column, value, update_width=True)

    @staticmethod
    def _cells(stage: rs.StageState, now: float, train: str = "", width: int = 200) -> tuple:
        # Text, not str: a DataTable parses str cells as markup, and a summary holds paths from outside
        progress = train if stage.name == "train" and train else progress_line(stage)
        return (fmt.safe(stage.name), status_text(stage), stage_duration(stage, now),
                Text(fmt.words(display.printable(stage.summary or progress), width)))

    def _update_column_widths(self, updated_cells: set) -> None:
        # DataTable measures updated cells when idle, but keeps rows it rendered before then cached
        # under an update counter that a width change does not move (textual#3533): a row drawn
        # between ``update_cell`` and the measuring kept its old column widths until the focus or
        # cursor changed. Drop the render caches once the widths are known.
        super()._update_column_widths(updated_cells)
        self.notify_style_update()

    def _update_dimensions(self, new_rows) -> None:
        # The same for rows added again at a new width (their columns measured anew, see show)
        super()._update_dimensions(new_rows)
        self.notify_style_update()


def training_line(state: rs.RunState, now: float) -> str:
    """``epoch 7/12 · 58 % · ETA 1:10`` (or ``building the model 12s``) while training runs, else empty."""
    p = rs.training_progress(state, now)
    if p is None:
        return ""
    parts = [f"epoch {p.epoch}/{p.epochs or '-'}"] if p.epoch else []
    if p.activity != "training":
        parts.append(p.activity + (f" {fmt.timer(max(0.0, now - p.since))}" if p.since is not None else ""))
    if p.fraction is not None:
        parts.append(f"{100 * p.fraction:.0f} %")
    if p.run_eta_s is not None:
        parts.append(f"ETA {fmt.timer(p.run_eta_s)}")
    return " · ".join(parts)


def progress_line(stage: rs.StageState) -> str:
    """``1,234 / 5,000  1,356 img/s  eta 0:03`` for a running stage, empty otherwise."""
    if stage.status != rs.RUNNING or not stage.done:
        return ""
    total = f" / {stage.total:,}" if stage.total else ""
    eta = f"  eta {fmt.duration(stage.eta_s)}" if stage.eta_s is not None else ""
    return f"{stage.done:,}{total}  {fmt.rate(stage.rate)}{eta}"


class StageDetail(Static):
    """Progress, error and traceback of the selected stage."""

    DEFAULT_CSS = """
    StageDetail {
        height: auto;
        padding: 0 1;
    }
    """

    def show(self, stage: rs.StageState | None, now: float) -> None:
        if stage is None:
            self.update("")
            return
        text = Text()
        text.append_text(fmt.safe(f"{stage.name}: ", style="bold"))
        text.append_text(status_text(stage))
        took = stage_duration(stage, now)
        if took:
            text.append(f"  ({took})")
        if stage.status == rs.RUNNING and stage.total:
            text.append("\n" + fmt.bar(stage.done / stage.total, 40))
        line = progress_line(stage)
        if line:
            text.append("\n" + line)
        if stage.summary and stage.status != rs.RUNNING:
            text.append("\n")
            text.append_text(fmt.safe(stage.summary))
        if stage.status == rs.STALE:
            # Why it is stale names what changed (an upstream stage's output, a config key), so the
            # user can tell whether bringing it up to date is worth the time.
            symbol, style = STATUS_STYLE[rs.STALE]
            text.append("\n\n")
            text.append_text(fmt.safe(f"{symbol} stale: {stage.stale_reason or 'its inputs changed since it was made'}",
                                      style=style))
            text.append(f"\n{RESUME_HINT}; r runs this stage alone again")
        if stage.status == rs.FAILED and stage.traceback:
            text.append("\n\nlast lines:\n", style="bold red")
            text.append_text(fmt.safe_lines("\n".join(stage.traceback.strip().split("\n")[-12:]), style="red"))
        self.update(text)
