"""Plotext plots: training curves (per epoch, plus the current epoch's batches) and the prefilter histogram.

Each widget owns one plot object (plotext's module-level API is global state) and draws it only on the
UI thread, in ``render``. ``show`` replaces the data and asks for a repaint; it does nothing when the
section of the state it draws has not changed, so a burst of events costs one redraw.

A diverging training reports NaN or infinite losses: those points are left out of the figure (plotext
cannot place them) and the title says how many; whatever else plotext fails on is shown in the plot's
place instead of taking the dashboard down.
"""

from __future__ import annotations

import math
import time

from rich.text import Text
from textual.app import RenderResult
from textual_plotext import PlotextPlot

from carclf_core import runstate as rs

# Keras names the accuracy after the metric object; accept the usual spellings.
ACCURACY_KEYS = ("categorical_accuracy", "accuracy", "sparse_categorical_accuracy")


def _metric(row: rs.EpochRow, names: tuple[str, ...], prefix: str = "") -> float | None:
    for name in names:
        value = row.metrics.get(prefix + name)
        if value is not None:
            return float(value)
    return None


def _finite(points: list[tuple[float, float]]) -> tuple[list[tuple[float, float]], int]:
    """The points plotext can draw, and how many were NaN or infinite."""
    kept = [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)]
    return kept, len(points) - len(kept)


class SafePlot(PlotextPlot):
    """A plotext plot whose drawing failure shows as a line of text, never as a dashboard crash."""

    def render(self) -> RenderResult:
        try:
            return super().render()
        except Exception as exc:  # plotext on data it cannot scale: the monitor stays up
            return Text(f"cannot draw this plot ({type(exc).__name__}: {exc})", style="dim")


class CurvePlot(SafePlot):
    """Loss or accuracy per epoch for train and validation, with the running epoch's batch curve.

    Epoch values sit at x = epoch; batch points of epoch ``e`` at x = e - 1 + step/steps, so the live
    batch curve grows towards where the epoch's point will land.
    """

    DEFAULT_CSS = """
    CurvePlot {
        height: 1fr;
        min-height: 6;
    }
    """

    BATCH_REDRAW_S = 0.5
    """Most often the plot is rebuilt for new batches alone (building a plotext figure costs
    milliseconds; a new epoch row always redraws at once)."""

    def __init__(self, metric: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.metric = metric
        self._revision = -1
        self._epochs = -1
        self._drawn_at = 0.0

    def show(self, state: rs.RunState) -> None:
        if state.rev_training == self._revision:
            return
        now = time.monotonic()
        if len(state.epoch_rows) == self._epochs and now - self._drawn_at < self.BATCH_REDRAW_S:
            return
        self._revision, self._epochs, self._drawn_at = state.rev_training, len(state.epoch_rows), now
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        names = ("loss",) if self.metric == "loss" else ACCURACY_KEYS
        rows = state.epoch_rows
        dropped = 0
        for prefix, label, marker in (("", "train", "braille"), ("val_", "val", "braille")):
            points, lost = _finite([(r.epoch, v) for r in rows if (v := _metric(r, names, prefix)) is not None])
            dropped += lost
            if points:
                xs, ys = zip(*points, strict=True)
                plt.plot(list(xs), list(ys), label=label, marker=marker)
        batch = state.batch
        steps = batch.total_steps or (batch.last_step or 1)
        values = batch.loss if self.metric == "loss" else batch.accuracy
        points, lost = _finite([(batch.epoch - 1 + s / steps, v) for s, v in zip(batch.steps, values, strict=False)
                                if v is not None])
        finished = rows[-1].epoch if rows else 0
        if batch.epoch > finished:  # the running epoch only; a finished one has its point
            dropped += lost
            if points:
                xs, ys = zip(*points, strict=True)
                plt.plot(list(xs), list(ys), label=f"epoch {batch.epoch} batches", marker="dot")
        title = "loss" if self.metric == "loss" else "accuracy"
        plt.title(f"{title} ({dropped} NaN/inf not drawn)" if dropped else title)
        if state.patience and state.patience.best_epoch and rows:
            plt.vline(state.patience.best_epoch)
        plt.xlabel("epoch")
        self.refresh()


class HistogramPlot(SafePlot):
    """The prefilter's car-probability histogram with the threshold marked as a vertical line."""

    DEFAULT_CSS = """
    HistogramPlot {
        height: 1fr;
        min-height: 6;
    }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._key: tuple | None = None

    def show(self, edges: tuple[float, ...], counts: tuple[int, ...], threshold: float | None) -> None:
        key = (edges, counts, threshold)
        if key == self._key:
            return
        self._key = key
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("car probability (summed over car classes)")
        if counts and len(edges) == len(counts) + 1:
            centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)]
            plt.bar(centres, list(counts), width=0.8 * (edges[1] - edges[0]) if len(edges) > 1 else 0.04)
            plt.xlim(edges[0], edges[-1])
            ticks = [edges[0] + (edges[-1] - edges[0]) * k / 4 for k in range(5)]
            plt.xticks(ticks, [f"{t:.2f}" for t in ticks])
        if threshold is not None:
            plt.vline(threshold)
        plt.xlabel(f"threshold {threshold:.2f}" if threshold is not None else "car probability")
        self.refresh()
