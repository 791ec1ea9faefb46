"""Plots: training curves (per epoch, plus the running epoch's batches) and the prefilter histogram.

plotext draws them. Each widget owns one plotext figure (never plotext's module-level one, which the
whole process shares) and builds it on the UI thread, for its current size, when what it shows changes.
The figure's output, text with ANSI colours, becomes Rich lines; :class:`TextLines` compares them with
the lines shown and repaints only the cells that changed, so a new batch point sends a handful of cells
to the terminal, not the figure. What we add to plotext's drawing:

- The scales: the value axis widened to round tick steps (a small change of the data keeps the same
  axis, so the same drawing), whole-number epoch ticks.
- The legend is a line of its own above the figure, never over the curves; it names the best epoch
  (and the prefilter's threshold), drawn as a vertical line in a colour of the 16-colour palette.
- The validation curve also carries a mark (``×``) at each epoch, so train and val differ in shape as
  well as colour (``NO_COLOR``); the running epoch's batches are dots, not joined.
- Backgrounds are dropped: the figure sits on the dashboard's own background.
- A diverging training reports NaN or infinite values: those points are left out (plotext would scale
  to them) and the legend says how many. Whatever else fails while drawing shows in the plot's place
  instead of taking the dashboard down.

plotext is imported when a plot first draws (its tab's first showing), never for the first frame.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from rich.ansi import AnsiDecoder
from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual.app import RenderResult
from textual.geometry import Region
from textual.widget import Widget

from carclf_core import runstate as rs

ACCURACY_KEYS = rs.ACCURACY_KEYS

TRAIN_STYLE = "cyan"
VAL_STYLE = "magenta"
BATCH_STYLE = "yellow"
MARK_STYLE = "bold green"
"""The best epoch and the threshold: a named colour of the 16-colour palette, distinct from the
background in 16, 256 and true colour (a theme colour may not be), and always labelled in words."""

VAL_MARK = "×"
BEST_LINE = "┊"
"""plotext's dotted vertical line, the best epoch's."""
THRESHOLD_LINE = "┃"


def output_backlog(app: object) -> int:
    """Frames written but not yet taken by the terminal (Textual's writer thread queues them; a slow
    link fills the queue). Reads Textual's private writer, so anything unexpected reads as 0."""
    writer = getattr(getattr(app, "_driver", None), "_writer_thread", None)
    try:
        return int(writer._queue.qsize())  # type: ignore[union-attr]
    except Exception:
        return 0


class Pacer:
    """How often a figure redraws for changes that can wait (the running epoch's batches).

    Every ``base`` seconds while the terminal keeps up; each time a redraw finds frames still queued
    for the terminal the interval doubles (up to ``most``), and it halves back once the queue is empty.
    Changes that cannot wait (a finished epoch) always draw at once.
    """

    def __init__(self, base: float = 1.0, most: float = 16.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.base, self.most, self.clock = base, most, clock
        self.interval = base
        self._last = -math.inf

    def due(self, backlog: int) -> bool:
        """Whether a waiting change may draw now; ``backlog``: frames queued for the terminal."""
        now = self.clock()
        if now - self._last < self.interval:
            return False
        self.interval = min(self.most, self.interval * 2) if backlog else max(self.base, self.interval / 2)
        self._last = now
        return True

    def drawn(self) -> None:
        """A change that could not wait was drawn: the next waiting one waits a full interval."""
        self._last = self.clock()


def _cells(line: Text) -> list[tuple[str, str]]:
    """Each character of a single-width line with the style it is drawn in."""
    styles = [str(line.style)] * len(line.plain)
    for span in line.spans:
        for i in range(max(span.start, 0), min(span.end, len(styles))):
            styles[i] = f"{styles[i]} {span.style}"
    return list(zip(line.plain, styles, strict=True))


REGION_GAP = 8
"""Unchanged cells between two changes of a line above which they are sent as two regions (each region
costs a cursor move, about as many bytes as a few cells)."""


def changed_regions(old: Sequence[Text], new: Sequence[Text], width: int) -> list[Region] | None:
    """The cells that differ between two drawings of the same size: on each changed line, runs of
    changed cells (runs closer than :data:`REGION_GAP` joined); None when the sizes differ (everything
    is new)."""
    if len(old) != len(new):
        return None
    regions = []
    for y, (a, b) in enumerate(zip(old, new, strict=True)):
        if a.plain == b.plain and a.spans == b.spans and a.style == b.style:
            continue
        if cell_len(a.plain) != len(a.plain) or cell_len(b.plain) != len(b.plain):
            regions.append(Region(0, y, width, 1))  # wide characters: cells and characters differ
            continue
        ca, cb = _cells(a), _cells(b)
        size = max(len(ca), len(cb))
        ca += [(" ", "")] * (size - len(ca))
        cb += [(" ", "")] * (size - len(cb))
        start = end = -1
        for x in (x for x in range(size) if ca[x] != cb[x]):
            if start >= 0 and x - end > REGION_GAP:
                regions.append(Region(start, y, end - start + 1, 1))
                start = -1
            if start < 0:
                start = x
            end = x
        if start >= 0:
            regions.append(Region(start, y, end - start + 1, 1))
    return regions


class TextLines(Widget):
    """Shows lines of text it is handed, repainting only the cells that changed since the last ones.

    Subclasses build their lines for the widget's current size in :meth:`draw` and hand them to
    :meth:`set_lines`; a resize draws again. With ``height: auto`` the widget keeps the most lines it
    had since the last resize (fewer are padded with blank ones): a height that follows the text would
    move everything under it, and a moved widget is sent to the terminal whole.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._lines: list[Text] = []
        self._most_lines = 0

    @property
    def lines(self) -> list[Text]:
        """The lines shown now."""
        return list(self._lines)

    def render(self) -> RenderResult:
        return Text("\n", no_wrap=True, overflow="crop", end="").join(self._lines)

    def draw(self) -> None:
        """Build the lines for the current size and :meth:`set_lines` them."""

    def on_resize(self) -> None:
        self._most_lines = 0
        self.draw()

    def set_lines(self, lines: list[Text]) -> None:
        width = self.content_size.width
        auto = self.styles.height is not None and self.styles.height.is_auto
        if auto:
            self._most_lines = max(self._most_lines, len(lines))
            lines = lines + [Text(end="") for _ in range(self._most_lines - len(lines))]
        regions = changed_regions(self._lines, lines, width) if self._lines else None
        layout = auto and len(lines) != len(self._lines)
        self._lines = lines
        if regions is None or layout:
            self.refresh(layout=layout)
        elif regions:
            self.refresh(*regions)

    def get_content_height(self, container, viewport, width: int) -> int:
        return len(self._lines)



# --- scales -------------------------------------------------------------------------------------------


def nice_step(span: float, count: int) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) that cuts ``span`` into about ``count`` parts."""
    raw = span / max(count, 1)
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def _decimals(step: float) -> int:
    text = f"{step:.6f}".rstrip("0")
    return len(text.split(".")[1]) if "." in text else 0


def y_range(values: Sequence[float], rows: int) -> tuple[float, float, float]:
    """``(low, high, step)``: the values' range widened to whole tick steps, so a small change of the
    data keeps the same axis (and the same drawing)."""
    low, high = min(values), max(values)
    if high - low < 1e-12:
        low, high = low - 0.5 * (abs(low) or 1), high + 0.5 * (abs(high) or 1)
    step = nice_step(high - low, max(1, min(6, rows // 2 + 1)))
    return math.floor(low / step + 1e-9) * step, math.ceil(high / step - 1e-9) * step, step


def integer_ticks(low: int, high: int, dots: int, label_width: int) -> list[int]:
    """Whole-number ticks from ``low`` to ``high`` spaced so labels ``label_width`` wide do not touch."""
    span = max(high - low, 1)
    cells_per_unit = dots / 2 / span
    step = 1
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10**4, 10**5):
        if step * cells_per_unit >= label_width + 1:
            break
    first = low if low % step == 0 or low == 1 else low + step - low % step
    ticks = [first] + [t for t in range((low // step + 1) * step, high + 1, step) if t > first]
    if low == 1 and step > 1 and len(ticks) > 1 and (ticks[1] - 1) * cells_per_unit < label_width + 1:
        ticks.pop(1)  # 1 and the first multiple of the step would touch
    return ticks


def y_ticks(low: float, high: float, step: float) -> list[tuple[float, str]]:
    """The value axis's ticks from ``low`` to ``high`` every ``step``, labelled with the decimals the step needs."""
    decimals = _decimals(step)
    count = int(round((high - low) / step)) + 1
    return [(low + i * step, f"{low + i * step:.{decimals}f}") for i in range(count)]


def legend(items: Sequence[tuple[str, str, str, int]], width: int) -> Text:
    """Legend items ``(text, shorter text, style, rank)`` on one line: while the line is too long, the
    items of the highest rank left take their shorter text (rank 0 never does)."""
    chosen = [full for full, _, _, _ in items]
    for rank in sorted({r for *_, r in items if r > 0}, reverse=True):
        if cell_len("  ".join(c for c in chosen if c)) <= width:
            break
        chosen = [short if r == rank else c for c, (_, short, _, r) in zip(chosen, items, strict=True)]
    text = Text(no_wrap=True, overflow="ellipsis", end="")
    for part, (_, _, style, _) in zip(chosen, items, strict=True):
        if part:
            if text.plain:
                text.append("  ")
            text.append(part, style=style)
    text.truncate(width, overflow="ellipsis")
    return text


def _finite(points: Sequence[tuple[float, float]]) -> tuple[list[tuple[float, float]], int]:
    """The points that can be drawn, and how many were NaN or infinite."""
    kept = [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)]
    return kept, len(points) - len(kept)


# --- plotext -------------------------------------------------------------------------------------------


def load_plotext() -> None:
    """Import the plotext modules the plots use (from a thread, ahead of the first plot: the import
    lock makes a plot drawn meanwhile wait for it; figures are still built on the UI thread only)."""
    import plotext._kernel.terminal  # noqa: F401
    import plotext._primitives.marker  # noqa: F401


def new_figure() -> Any:
    """A plotext figure of its own (the master plot of a new plotext terminal object, which plotext's
    global functions never touch). plotext loads here, on the first plot drawn, unless the screen's
    warm-up loaded it already."""
    from plotext._kernel.terminal import terminal

    own = terminal()
    own.limit(False, False)  # sized by the widget, not by the terminal plotext finds (Textual's, or none)
    return own._master


def pixel(style: str) -> Any:
    """A plotext pixel for a Rich ``style`` such as ``"bold green"`` (a palette colour name and ``bold``)."""
    from plotext._primitives.pixel import pixel as pixel_class

    words = style.split()
    colours = [w for w in words if w != "bold"]
    return pixel_class(foreground=colours[0] if colours else None, style="bold" if "bold" in words else None)


def marker(symbol: str, style: str) -> Any:
    """A plotext marker drawing ``symbol`` (a character, or ``braille`` / ``hd`` for plotext's
    high-resolution dots) in a Rich ``style`` (see :func:`pixel`)."""
    from plotext._primitives.marker import marker as marker_class

    return marker_class(symbol, pixel(style))


def start(figure: Any, width: int, height: int) -> Any:
    """Clear ``figure`` and size it ``width`` x ``height`` cells, with no colour of its own, the left and
    lower axes only and no legend inside (ours is a line above)."""
    figure.clear()
    figure.theme("colorless")
    figure.canvas("default")
    figure.plot_size(width, height)
    figure.axes(False, side=1)
    figure.legend(False)
    return figure


def _foreground(style: Style | str) -> Style:
    style = Style.parse(style) if isinstance(style, str) else style
    return Style(color=style.color, bold=style.bold)


def figure_lines(figure: Any) -> list[Text]:
    """``figure`` built, as one Rich line a row: plotext's colours (the palette's numbers, so the
    terminal's palette decides) and bold kept, backgrounds dropped."""
    lines = []
    for line in AnsiDecoder().decode(figure.build().string().rstrip("\n")):
        text = Text(line.plain, no_wrap=True, end="")
        for span in line.spans:
            style = _foreground(span.style)
            if style:
                text.stylize(style, span.start, span.end)
        lines.append(text)
    return lines


def tick_labels(ticks: Sequence[tuple[float, str]]) -> tuple[list[float], list[str]]:
    return [value for value, _ in ticks], [label for _, label in ticks]


class SafeDrawing(TextLines):
    """A figure whose drawing failure shows as a line of text, never as a dashboard crash."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._figure: Any = None

    @property
    def plotext_figure(self) -> Any:
        """This widget's own plotext figure, made on its first drawing (on the UI thread, as all drawing)."""
        if self._figure is None:
            self._figure = new_figure()
        return self._figure

    def draw(self) -> None:
        width, height = self.content_size.width, self.content_size.height
        if width <= 0 or height <= 0:
            return
        try:
            lines = self.figure(width, height)
        except Exception as exc:  # data the figure cannot scale: the monitor stays up
            lines = [Text(f"cannot draw this plot ({type(exc).__name__}: {exc})", style="dim")]
        self.set_lines(lines)

    def figure(self, width: int, height: int) -> list[Text]:
        """The figure's lines for a ``width`` x ``height`` widget."""
        raise NotImplementedError


class CurvePlot(SafeDrawing):
    """Loss or accuracy per epoch for train and validation, with the running epoch's batch curve.

    Epoch values sit at x = epoch; batch points of epoch ``e`` at x = e - 1 + step/steps, so the live
    batch curve grows towards where the epoch's point will land. A finished epoch (or a new best)
    draws at once; new batches alone wait for the :class:`Pacer`.
    """

    DEFAULT_CSS = """
    CurvePlot {
        width: 1fr;
        height: 1fr;
        min-height: 6;
        padding-right: 1;
    }
    """

    def __init__(self, metric: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.metric = metric
        self.pacer = Pacer()
        self._state: rs.RunState | None = None
        self._drawn: tuple = ()

    @staticmethod
    def _key(state: rs.RunState) -> tuple:
        """What the curves of ``state`` are drawn from (the status: the empty plot's words)."""
        best = state.patience.best_epoch if state.patience else None
        epoch_key = (len(state.epoch_rows), state.epoch_rows[-1].epoch if state.epoch_rows else 0, best)
        train = state.stages.get("train")
        return (state.rev_training, train.status if train else "", epoch_key)

    def shows(self, state: rs.RunState) -> bool:
        """Whether the drawing is of ``state``, with no batches held back for the pacer."""
        return self._drawn == self._key(state)

    def show(self, state: rs.RunState) -> None:
        """Draw ``state``'s curves: at once for a new epoch or best, paced for new batches alone."""
        key = self._key(state)
        if self._drawn and key == self._drawn:
            return
        if self._drawn and key[1:] == self._drawn[1:] and not self.pacer.due(output_backlog(self.app)):
            return
        if not self._drawn or key[1:] != self._drawn[1:]:
            self.pacer.drawn()
        self._state, self._drawn = state, key
        self.draw()

    def figure(self, width: int, height: int) -> list[Text]:
        state = self._state
        names = ("loss",) if self.metric == "loss" else ACCURACY_KEYS
        title = "loss" if self.metric == "loss" else "accuracy"
        if state is None or height < 5 or width < 16:
            return [Text(title, style="bold")]
        rows = state.epoch_rows
        dropped = 0
        series = []
        for prefix in ("", "val_"):
            points, lost = _finite([(r.epoch, v) for r in rows
                                    if (v := rs.metric(r.metrics, names, prefix)) is not None])
            dropped += lost
            series.append(points)
        batch = state.batch
        finished = rows[-1].epoch if rows else 0
        batch_points: list[tuple[float, float]] = []
        if batch.epoch > finished and batch.steps:  # the running epoch only; a finished one has its point
            steps = batch.total_steps or (batch.last_step or 1)
            values = batch.loss if self.metric == "loss" else batch.accuracy
            batch_points, lost = _finite([(batch.epoch - 1 + s / steps, v)
                                          for s, v in zip(batch.steps, values, strict=False) if v is not None])
            dropped += lost
        best = state.patience.best_epoch if state.patience and rows else None
        # shortened first: the NaN count (only its brackets go), the batches, the best epoch, the series, the title
        items = [(title, "loss" if self.metric == "loss" else "acc", "bold", 1), ("⠤⠤ train", "⠤train", TRAIN_STYLE, 2),
                 (f"⠤{VAL_MARK}⠤ val", f"{VAL_MARK}val", VAL_STYLE, 2)]
        if best:
            items.append((f"{BEST_LINE} best {best}", f"{BEST_LINE}best {best}", MARK_STYLE, 3))
        if batch_points:
            items.append((f"⠂⠂ epoch {batch.epoch} batches", f"⠂ep {batch.epoch}", BATCH_STYLE, 4))
        if dropped:
            items.append((f"({dropped} NaN/inf not drawn)", f"{dropped} NaN/inf not drawn", "bold red", 5))
        lines = [legend(items, width)]
        canvas_rows = height - 3  # under the legend: the curves, then the x axis and its labels
        fig = start(self.plotext_figure, width, height - 1)
        values = [y for points in (*series, batch_points) for _, y in points]
        if not values:
            train = state.stages.get("train")
            message = "waiting for the first batch" if train and train.status == rs.RUNNING else "no epochs yet"
            fig.ruler(0, 0).ticks([], [])
            fig.ruler(1, 0).ticks([], [])
            fig.ruler(0, 0).lim(1, 2)
            fig.ruler(1, 0).lim(0, 1)
            body = figure_lines(fig)
            body[canvas_rows // 2] = Text(f" {message:^{width - 1}}", style="dim", no_wrap=True, end="")
            return lines + body
        y_low, y_high, y_step = y_range(values, canvas_rows)
        labels = y_ticks(y_low, y_high, y_step)
        canvas_width = max(4, width - 1 - max(len(label) for _, label in labels))
        x_high = max([finished, batch.epoch if batch_points else 0, 1])
        x_low = 0 if batch_points and batch.epoch == 1 else 1
        if x_high == x_low:
            x_high += 1
        ticks = integer_ticks(max(1, x_low), x_high, 2 * canvas_width, len(str(x_high)))
        # plotext leaves out a tick label that would stick out of the figure: the last epoch's label
        # gets the room it needs right of its tick
        margin = len(str(x_high)) // 2
        fig.ruler(0, 0).lim(x_low, x_high + margin * (x_high - x_low) / max(1, canvas_width - 1 - margin))
        fig.ruler(0, 0).ticks(ticks, [str(t) for t in ticks])
        fig.ruler(1, 0).lim(y_low, y_high)
        fig.ruler(1, 0).ticks(*tick_labels(labels))
        if best:  # under the curves: plotext draws lines first
            fig.line(best, orientation=1, relative=True, pixel=pixel(MARK_STYLE), style="dotted")
        if batch_points:
            fig.draw(fig.signal(*zip(*batch_points, strict=True), marker=marker("braille", BATCH_STYLE)))
        for points, style in ((series[0], TRAIN_STYLE), (series[1], VAL_STYLE)):
            if points:
                fig.draw(fig.signal(*zip(*points, strict=True), marker=marker("braille", style)).lines(True))
        if series[1]:
            fig.draw(fig.signal(*zip(*series[1], strict=True), marker=marker(VAL_MARK, VAL_STYLE)))
        return lines + figure_lines(fig)


class HistogramPlot(SafeDrawing):
    """The prefilter's car-probability histogram with the threshold as a labelled vertical line."""

    DEFAULT_CSS = """
    HistogramPlot {
        width: 1fr;
        height: 1fr;
        min-height: 6;
    }
    """

    BAR_STYLE = "cyan"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._key: tuple | None = None

    def show(self, edges: tuple[float, ...], counts: tuple[int, ...], threshold: float | None) -> None:
        key = (edges, counts, threshold)
        if key == self._key:
            return
        self._key = key
        self.draw()

    def figure(self, width: int, height: int) -> list[Text]:
        edges, counts, threshold = self._key or ((), (), None)
        items = [("car probability (summed over car classes)", "car probability", "bold", 2)]
        if threshold is not None:
            items.append((f"{THRESHOLD_LINE} threshold {threshold:.2f}", f"{THRESHOLD_LINE} {threshold:.2f}",
                          MARK_STYLE, 1))
        lines = [legend(items, width)]
        if height < 5 or width < 16:
            return lines
        if not counts or len(edges) != len(counts) + 1:
            return lines + [Text("no scores yet", style="dim")]
        _, y_high, y_step = y_range([0.0, float(max(counts) or 1)], height - 3)
        lo, hi = edges[0], edges[-1]
        fig = start(self.plotext_figure, width, height - 1)
        # empty bins are left out: plotext draws a bar of height 0 as a line on the axis
        bars = [((a + b) / 2, n) for a, b, n in zip(edges, edges[1:], counts, strict=False) if n]
        if bars:
            fig.draw(fig.bar(*zip(*bars, strict=True), width=1, marker=marker("hd", self.BAR_STYLE)))
        # after the bars, which set ticks of their own (one a bar)
        fig.ruler(0, 0).lim(lo, hi)
        fig.ruler(0, 0).ticks(*tick_labels([(lo + (hi - lo) * k / 4, f"{lo + (hi - lo) * k / 4:.2f}")
                                            for k in range(5)]))
        fig.ruler(1, 0).lim(0.0, y_high)
        fig.ruler(1, 0).ticks(*tick_labels(y_ticks(0.0, y_high, max(1.0, y_step))))
        if threshold is not None and hi > lo:
            # a signal drawn after the bars, so the threshold shows over them too
            fig.draw(fig.segment([threshold, threshold], [0.0, y_high], marker=marker(THRESHOLD_LINE, MARK_STYLE)))
        return lines + figure_lines(fig)
