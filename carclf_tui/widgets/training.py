"""The training monitor's text parts: what training is doing with its speed and ETAs, the patience
meter, and the epoch table (its columns chosen by priority for the width)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import DataTable

from carclf_core import runstate as rs
from carclf_core.display import printable

from . import fmt
from .plots import ACCURACY_KEYS, Pacer, TextLines, output_backlog
from .stages import STATUS_STYLE
from .tables import ThumbFollowsScroll

SEPARATOR = " · "


Item = Text | tuple[Text, Text | None]
"""What :func:`flow` lays out: a text, or a text with a shorter one (None: left out) for narrow lines."""


def _lines(items: Sequence[Text], width: int) -> list[Text]:
    lines: list[Text] = []
    line = Text(no_wrap=True, end="")
    for item in items:
        if line.plain and cell_len(line.plain) + len(SEPARATOR) + item.cell_len > width:
            lines.append(line)
            line = Text(no_wrap=True, end="")
        if line.plain:
            line.append(SEPARATOR, style="dim")
        line.append_text(item)
    if line.plain:
        lines.append(line)
    return lines


def flow(groups: Sequence[Sequence[Item]], width: int) -> list[Text]:
    """Lay out ``groups`` of items as lines at most ``width`` cells wide: items joined by ``·``, a line
    broken only between items, each group starting on a line of its own. A group that would take more
    lines than its short forms need turns items short, the last ones first, until it takes no more;
    an item wider than the line is cut with an ellipsis."""
    out: list[Text] = []
    for group in groups:
        full = [item[0] if isinstance(item, tuple) else item for item in group]
        short = [(item[1] if isinstance(item, tuple) else item) for item in group]
        fewest = len(_lines([t for t in short if t is not None], width))
        chosen: list[Text | None] = list(full)
        for i in reversed(range(len(group))):
            if len(_lines([t for t in chosen if t is not None], width)) <= fewest:
                break
            chosen[i] = short[i]
        out += _lines([t for t in chosen if t is not None], width)
    for line in out:
        line.truncate(max(width, 1), overflow="ellipsis")
    return out


def patience_items(state: rs.RunState, stop_eta_s: float | None = None, running: bool = True) -> list[Item]:
    """``patience ███░░░ 3/12``, ``best val_loss 0.4321 at epoch 5``, and while ``running``, when it stops:
    ``stops after epoch 14 unless ...`` (in ``stop_eta_s``)."""
    p = state.patience
    if p is None:
        return [(Text("patience: no early-stopping report yet", style="dim"), Text("patience -", style="dim"))]
    style = "green" if p.wait == 0 else ("yellow" if p.wait < p.patience - 1 else "bold red")

    def meter(cells: int) -> Text:
        text = Text("patience ", style="bold")
        text.append(fmt.bar(p.wait / max(p.patience, 1), cells), style=style)
        text.append(f" {p.wait}/{p.patience}")
        return text

    monitor = printable(p.monitor)  # from the event log
    best = Text(f"best {monitor} {fmt.number(p.best)}")
    if p.best_epoch:
        best.append(f" at epoch {p.best_epoch}")
    items: list[Item] = [(meter(max(4, min(p.patience, 24))), meter(4)), best]
    if not running:
        return items
    if p.stop_after < (state.epochs or 10**9):
        stop = Text(f"stops after epoch {p.stop_after} unless {monitor} improves")
        short = Text(f"stops after {p.stop_after}")
        if stop_eta_s is not None:
            stop.append(f" (in {fmt.timer(stop_eta_s)})")
            short.append(f" (in {fmt.timer(stop_eta_s)})")
        items.append((stop, short))
    else:
        items.append((Text(f"runs to the last epoch ({state.epochs}) unless {monitor} stalls"), None))
    return items


def progress_items(state: rs.RunState, progress: rs.TrainingProgress | None, now: float) -> list[Item]:
    """What training does now, with its step, speed and ETAs; or how it ended."""
    train = state.stages.get("train")
    last = state.epoch_rows[-1] if state.epoch_rows else None
    phase = fmt.safe(f" ({state.phase})") if state.phase else Text()
    if progress is None:
        status = train.status if train is not None else rs.PENDING
        symbol, style = STATUS_STYLE.get(status, ("·", ""))
        if last is None:
            ended = {rs.INTERRUPTED: "stopped", rs.FAILED: "failed"}.get(status)
            words = f"training {ended} before an epoch ended" if ended else "training has not started"
            return [Text(f"{symbol} {words}", style=style or "dim")]
        head = Text(f"{symbol} ", style=style)
        head.append(f"epoch {last.epoch}/{last.epochs or state.epochs or '-'}")
        head.append_text(phase)
        if status == rs.INTERRUPTED:
            head.append(" · stopped", style=style)
        elif status == rs.FAILED:
            head.append(" · failed", style=style)
        return [head, Text(f"last epoch {fmt.rate(last.images_per_s)}"),
                Text("run ETA finished") if status == rs.DONE else Text("nothing running", style="dim")]
    symbol, style = STATUS_STYLE[rs.RUNNING]

    def head(with_phase: bool) -> Text:
        text = Text(f"{symbol} ", style=style)
        if progress.epoch:
            text.append(f"epoch {progress.epoch}/{progress.epochs or '-'}")
            if with_phase:
                text.append_text(phase)
        if progress.activity != "training":
            if progress.epoch:
                text.append(": ")
            wait_style = "bold yellow" if progress.activity == "no batch since" else ""
            text.append(progress.activity, style=wait_style)
            if progress.since is not None:
                text.append(f" {fmt.timer(max(0.0, now - progress.since))}", style=wait_style)
        return text

    items: list[Item] = [(head(True), head(False))]
    if progress.steps and progress.activity == "training":
        step = Text(f"step {progress.step}/{progress.steps}")
        bar = step.copy()
        bar.append(" " + fmt.bar(progress.step / progress.steps, 10))
        items.append((bar, step))
    items.append(Text(fmt.rate(progress.images_per_s) if progress.images_per_s is not None else "- img/s"))
    if progress.epoch_eta_s is not None:
        eta = fmt.timer(progress.epoch_eta_s)
        items.append((Text(f"epoch ETA {eta}"), Text(f"ETA {eta}")))
    run_eta = fmt.timer(progress.run_eta_s)
    items.append((Text(f"run ETA {run_eta}"), Text(f"run {run_eta}")))
    return items


def learning_rate_item(state: rs.RunState) -> Item:
    last = state.epoch_rows[-1] if state.epoch_rows else None
    rate = fmt.scientific(last.learning_rate if last else None, 2)
    return Text(f"learning rate {rate}"), Text(f"lr {rate}")


def workers_items(state: rs.RunState) -> list[Item]:
    """The machines of a training on several machines and each one's last-epoch speed; none on one."""
    workers = state.workers
    if workers is None:
        return []
    count = Text(f"{len(workers.addresses)} machines")
    if not workers.images_per_s:
        return [count]
    speeds = ", ".join(fmt.rate(r, unit="").strip() for r in workers.images_per_s)
    return [(Text(f"{len(workers.addresses)} machines: {speeds} img/s"), count)]


class TrainingStats(TextLines):
    """The lines over the plots: what training does (building, compiling, training, validating) with its
    step, smoothed speed and ETAs, then the patience meter and the learning rate.

    Redrawn at once when what training does changes, otherwise at most about once a second (the
    :class:`~carclf_tui.widgets.plots.Pacer`): batch events come four times a second, and each redraw
    of a changed figure is bytes sent to the terminal.
    """

    DEFAULT_CSS = """
    TrainingStats {
        height: auto;
        padding: 0 1;
    }
    """

    def __init__(self, clock: Callable[[], float] = time.time, **kwargs) -> None:
        super().__init__(**kwargs)
        self.clock = clock
        self.pacer = Pacer()
        self._state: rs.RunState | None = None
        self._key: tuple = ()

    def show(self, state: rs.RunState, clock: bool = False) -> None:
        """Draw ``state``: at once when what training does changed, else paced; ``clock``: the time moved
        (elapsed times and ETAs tick on even without new events)."""
        progress = rs.training_progress(state, self.clock())
        key = (progress.activity if progress else "", progress.epoch if progress else 0, state.rev_stages,
               len(state.epoch_rows), state.patience)
        if key == self._key and self._state is not None:
            if not clock and state.rev_training == self._state.rev_training:
                return
            if not self.pacer.due(output_backlog(self.app)):
                return
        else:
            self.pacer.drawn()
        self._state, self._key = state, key
        self.draw()

    def draw(self) -> None:
        state = self._state
        if state is None or self.content_size.width <= 0:
            return
        now = self.clock()
        progress = rs.training_progress(state, now)
        items = progress_items(state, progress, now)
        rest = patience_items(state, progress.stop_eta_s if progress else None, running=progress is not None)
        rest += [learning_rate_item(state), *workers_items(state)]
        self.set_lines(flow([items, rest], self.content_size.width))


class Column:
    """An epoch-table column: its key, the width its values need, and its rank (columns of a higher
    rank are dropped first when the table is narrow)."""

    def __init__(self, key: str, width: int, rank: int,
                 value: Callable[[rs.EpochRow, int | None], Text]) -> None:
        self.key, self.width, self.rank, self.value = key, width, rank, value


def _metric_cell(names: tuple[str, ...], prefix: str = "") -> Callable[[rs.EpochRow, int | None], Text]:
    def cell(row: rs.EpochRow, best: int | None) -> Text:
        return Text(fmt.number(rs.metric(row.metrics, names, prefix)), justify="right")

    return cell


def _epoch_cell(row: rs.EpochRow, best: int | None) -> Text:
    # the mark is a character, not only a colour: it must read with NO_COLOR
    return Text(f"{row.epoch}*", style="bold green") if row.epoch == best else Text(f"{row.epoch} ")


TOP5 = ("top5", "top_k_categorical_accuracy")
COLUMNS = (
    Column("epoch", 5, 0, _epoch_cell),
    Column("loss", 6, 4, _metric_cell(("loss",))),
    Column("acc", 6, 5, _metric_cell(ACCURACY_KEYS)),
    Column("top5", 6, 9, _metric_cell(TOP5)),
    Column("val_loss", 8, 1, _metric_cell(("loss",), "val_")),
    Column("val_acc", 7, 0, _metric_cell(ACCURACY_KEYS, "val_")),
    Column("val_top5", 8, 8, _metric_cell(TOP5, "val_")),
    Column("lr", 8, 7, lambda row, best: Text(fmt.scientific(row.learning_rate, 1), justify="right")),
    Column("time", 6, 6, lambda row, best: Text(fmt.duration(row.duration_s), justify="right")),
    Column("img/s", 6, 6, lambda row, best: Text(fmt.rate(row.images_per_s, ""), justify="right")),
)
"""In display order. Validation accuracy and the epoch never go; top-5 and the learning rate go first."""


def fitting_columns(width: int, padding: int = 2) -> tuple[Column, ...]:
    """The columns that fit ``width`` cells (each takes its width plus ``padding``), dropping the
    highest rank first; the epoch and validation accuracy always stay."""
    kept = list(COLUMNS)
    for rank in sorted({c.rank for c in COLUMNS if c.rank > 0}, reverse=True):
        if sum(c.width + padding for c in kept) <= width:
            break
        kept = [c for c in kept if c.rank != rank]
    return tuple(kept)


class EpochTable(ThumbFollowsScroll, DataTable):
    """One row an epoch, the columns that fit the width (validation accuracy always); * marks the best."""

    DEFAULT_CSS = """
    EpochTable {
        height: 1fr;
        overflow-x: hidden;
    }
    """

    SCROLLBAR = 2
    """Cells kept for the vertical scroll bar."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", **kwargs)
        self._rows: list[rs.EpochRow] = []
        self._best: int | None = None
        self.columns_shown: tuple[Column, ...] = ()

    def on_resize(self) -> None:
        columns = fitting_columns(self.size.width - self.SCROLLBAR, 2 * self.cell_padding)
        if columns != self.columns_shown:
            self._build(columns)
        if self.row_count:
            # The cursor scrolled into view while the tab was hidden or not yet laid out scrolled a
            # table of no height: once it has its size, bring the cursor (the newest epoch) into view.
            self.call_after_refresh(self.move_cursor, row=self.cursor_row)

    def _build(self, columns: tuple[Column, ...]) -> None:
        row = self.cursor_row
        self.clear(columns=True)
        self.columns_shown = columns
        for column in columns:
            self.add_column(column.key, key=column.key)
        for epoch in self._rows:
            self.add_row(*self._cells(epoch), key=str(epoch.epoch))
        if self.row_count:
            self.move_cursor(row=min(max(row, 0), self.row_count - 1))

    def show(self, state: rs.RunState) -> None:
        rows = state.epoch_rows
        best = state.patience.best_epoch if state.patience else None
        if rows == self._rows and best == self._best:
            return
        keep = len(self._rows)
        follow = self.cursor_row >= self.row_count - 1
        if rows[:keep] != self._rows or best != self._best:
            # A restarted attempt replaced epochs, or the best moved: redraw all (a few hundred rows).
            self._rows, self._best = list(rows), best
            self._build(self.columns_shown)
        else:
            self._rows, self._best = list(rows), best
            for row in rows[keep:]:
                self.add_row(*self._cells(row), key=str(row.epoch))
        if follow and self.row_count:
            self.move_cursor(row=self.row_count - 1)

    def _cells(self, row: rs.EpochRow) -> tuple[Text, ...]:
        return tuple(column.value(row, self._best) for column in self.columns_shown)
