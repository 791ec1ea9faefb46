"""The training monitor's text parts: patience meter, throughput/ETA/learning rate, and the epoch table."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable, Static

from carclf_core import runstate as rs
from carclf_core.display import printable

from . import fmt
from .plots import ACCURACY_KEYS


def patience_text(state: rs.RunState) -> Text:
    """``patience ███░░░ 3/12 · best val_loss 0.4321 at epoch 5 · will stop after epoch 14``."""
    p = state.patience
    text = Text()
    if p is None:
        text.append("patience: no early-stopping report yet", style="dim")
        return text
    cells = max(4, min(p.patience, 24))
    text.append("patience ", style="bold")
    style = "green" if p.wait == 0 else ("yellow" if p.wait < p.patience - 1 else "bold red")
    text.append(fmt.bar(p.wait / max(p.patience, 1), cells), style=style)
    text.append(f" {p.wait}/{p.patience}")
    monitor = printable(p.monitor)  # from the event log
    text.append(f"\nbest {monitor} {fmt.number(p.best)}")
    if p.best_epoch:
        text.append(f" at epoch {p.best_epoch}")
    if p.stop_after < (state.epochs or 10**9):
        text.append(f"\nwill stop after epoch {p.stop_after} unless {monitor} improves")
    else:
        text.append(f"\nruns to the last epoch ({state.epochs}) unless {monitor} stalls")
    return text


def stats_text(state: rs.RunState) -> Text:
    """Epoch and step, throughput, epoch and run ETA, learning rate."""
    text = Text()
    last = state.epoch_rows[-1] if state.epoch_rows else None
    b = state.batch
    running = state.stages.get("train") is not None and state.stages["train"].status == rs.RUNNING
    text.append("epoch ", style="bold")
    text.append(f"{state.epoch or '-'}/{state.epochs or '-'}")
    if state.phase:
        text.append_text(fmt.safe(f" ({state.phase})"))
    if running and b.total_steps:
        text.append(f"  step {b.last_step}/{b.total_steps}")
    speed = b.images_per_s if running and b.images_per_s else (last.images_per_s if last else None)
    text.append("\nthroughput ", style="bold")
    text.append(fmt.rate(speed))
    if running:
        text.append("\nepoch ETA ", style="bold")
        text.append(fmt.duration(b.eta_s) or "-")
    text.append("\nrun ETA ", style="bold")
    train = state.stages.get("train")
    if train is not None and train.status == rs.DONE:
        text.append("finished")
    else:
        text.append(fmt.duration(last.eta_s) if last and last.eta_s is not None else "-")
    text.append("\nlearning rate ", style="bold")
    text.append(fmt.scientific(last.learning_rate if last else None, 2))
    return text


class TrainingStats(Static):
    """Patience meter and the live figures, side by side with the epoch table."""

    DEFAULT_CSS = """
    TrainingStats {
        height: auto;
        padding: 0 1;
    }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._revision = (-1, -1)

    def show(self, state: rs.RunState) -> None:
        key = (state.rev_training, state.rev_stages)
        if key == self._revision:
            return
        self._revision = key
        text = patience_text(state)
        text.append("\n")
        text.append_text(stats_text(state))
        self.update(text)


class EpochTable(DataTable):
    """One row an epoch: train and val loss/accuracy/top-5, learning rate, time, images/s; * marks the best."""

    DEFAULT_CSS = """
    EpochTable {
        height: 1fr;
    }
    """

    COLUMNS = ("epoch", "loss", "acc", "top5", "val_loss", "val_acc", "val_top5", "lr", "time", "img/s")

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", **kwargs)
        self._rows: list[rs.EpochRow] = []
        self._best: int | None = None

    def on_mount(self) -> None:
        for name in self.COLUMNS:
            self.add_column(name, key=name)

    def show(self, state: rs.RunState) -> None:
        rows = state.epoch_rows
        best = state.patience.best_epoch if state.patience else None
        if rows == self._rows and best == self._best:
            return
        keep = len(self._rows)
        if rows[:keep] != self._rows or best != self._best:
            # A restarted attempt replaced epochs, or the best moved: redraw all (a few hundred rows).
            self.clear()
            keep = 0
        follow = self.cursor_row >= self.row_count - 1
        for row in rows[keep:]:
            self.add_row(*self._cells(row, best), key=str(row.epoch))
        self._rows, self._best = list(rows), best
        if follow and self.row_count:
            self.move_cursor(row=self.row_count - 1)

    @staticmethod
    def _cells(row: rs.EpochRow, best: int | None) -> tuple:
        m = row.metrics

        def pick(names: tuple[str, ...], prefix: str = "") -> str:
            for name in names:
                if prefix + name in m:
                    return fmt.number(float(m[prefix + name]))
            return "-"

        mark = Text(f"{row.epoch}*", style="bold green") if row.epoch == best else Text(str(row.epoch))
        lr = fmt.scientific(row.learning_rate, 1)
        return (mark, pick(("loss",)), pick(ACCURACY_KEYS), pick(("top5", "top_k_categorical_accuracy")),
                pick(("loss",), "val_"), pick(ACCURACY_KEYS, "val_"),
                pick(("top5", "top_k_categorical_accuracy"), "val_"), lr, fmt.duration(row.duration_s),
                fmt.rate(row.images_per_s, ""))
