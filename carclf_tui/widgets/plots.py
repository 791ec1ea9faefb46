"""Plots drawn as text: training curves (per epoch, plus the running epoch's batches) and the prefilter
histogram.

They are drawn here, cell by cell, rather than by a plotting library: the figure has to fit 80x24, read
without colour, and cost a few bytes a second over SSH, which takes control of every cell.

- Lines are braille dots (2x4 dots a cell). The validation curve also carries a mark (``×``) at each
  epoch, so train and val differ in shape as well as colour (``NO_COLOR``); the running epoch's batches
  are a dotted line.
- The legend is a line of its own above the plotting area; epoch ticks are whole numbers; the best
  epoch (and the prefilter's threshold) is a vertical line in a colour of the 16-colour palette, named
  in the legend.
- :class:`TextLines`, the base, repaints only the cells that changed since the last drawing: a new
  batch point sends a handful of cells, not the whole figure.
- A diverging training reports NaN or infinite values: those points are left out and the legend says
  how many. Whatever else fails while drawing shows in the plot's place instead of taking the dashboard
  down.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

from rich.cells import cell_len
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
AXIS_STYLE = "dim"

VAL_MARK = "×"
BEST_LINE = "┊"
_DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))
"""Braille dot bits by (row, column) inside a cell of 2x4 dots."""


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


# --- drawing --------------------------------------------------------------------------------------


class Canvas:
    """A grid of ``width`` x ``height`` cells: braille dots, marks that replace a cell's dots, styles."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.bits = [[0] * width for _ in range(height)]
        self.marks: list[list[str | None]] = [[None] * width for _ in range(height)]
        self.styles = [[""] * width for _ in range(height)]

    @property
    def dots(self) -> tuple[int, int]:
        """Dots across and down."""
        return 2 * self.width, 4 * self.height

    def dot(self, x: int, y: int, style: str) -> None:
        col, row = x // 2, y // 4
        if 0 <= col < self.width and 0 <= row < self.height:
            self.bits[row][col] |= _DOTS[y % 4][x % 2]
            self.styles[row][col] = style

    def line(self, x0: int, y0: int, x1: int, y1: int, style: str, every: int = 1) -> None:
        """Dots from (x0, y0) to (x1, y1); ``every`` > 1 leaves gaps (a dotted line)."""
        steps = max(abs(x1 - x0), abs(y1 - y0), 1)
        for i in range(0, steps + 1, every):
            self.dot(round(x0 + (x1 - x0) * i / steps), round(y0 + (y1 - y0) * i / steps), style)

    def mark(self, col: int, row: int, char: str, style: str) -> None:
        if 0 <= col < self.width and 0 <= row < self.height:
            self.marks[row][col] = char
            self.styles[row][col] = style

    def column(self, col: int, char: str, style: str) -> None:
        """A vertical line through the cells of ``col`` that nothing else was drawn in."""
        for row in range(self.height):
            if 0 <= col < self.width and not self.bits[row][col] and self.marks[row][col] is None:
                self.mark(col, row, char, style)

    def rows(self) -> list[Text]:
        out = []
        for row in range(self.height):
            text = Text(no_wrap=True, end="")
            for col in range(self.width):
                mark, bits = self.marks[row][col], self.bits[row][col]
                char = mark if mark is not None else (chr(0x2800 + bits) if bits else " ")
                text.append(char, style=self.styles[row][col] if char != " " else "")
            out.append(text)
        return out


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


def framed(canvas: Canvas, y_low: float, y_high: float, y_labels: Sequence[tuple[float, str]], x_low: float,
           x_high: float, x_ticks: Sequence[tuple[float, str]]) -> list[Text]:
    """``canvas`` with a value axis (``y_labels``) on its left and an x axis with ``x_ticks`` below."""
    width = max((len(label) for _, label in y_labels), default=0)
    by_row: dict[int, str] = {}
    for value, label in y_labels:
        by_row.setdefault(to_dot(value, y_low, y_high, canvas.dots[1], flip=True) // 4, label)
    out = []
    for row, body in enumerate(canvas.rows()):
        line = Text(no_wrap=True, end="")
        label = by_row.get(row)
        line.append(f"{label:>{width}}┤" if label is not None else " " * width + "│", style=AXIS_STYLE)
        line.append_text(body)
        out.append(line)
    axis = ["─"] * canvas.width
    tick_line = [" "] * (canvas.width + 1)
    for x, label in x_ticks:
        col = to_dot(x, x_low, x_high, canvas.dots[0]) // 2
        if 0 <= col < canvas.width:
            axis[col] = "┬"
        start = max(0, min(canvas.width + 1 - len(label), col + 1 - len(label) // 2))
        if all(c == " " for c in tick_line[max(0, start - 1):start + len(label) + 1]):
            tick_line[start:start + len(label)] = list(label)
    out.append(Text(" " * width + "└" + "".join(axis), style=AXIS_STYLE, no_wrap=True, end=""))
    out.append(Text(" " * width + "".join(tick_line), style=AXIS_STYLE, no_wrap=True, end=""))
    return out


def to_dot(value: float, low: float, high: float, dots: int, flip: bool = False) -> int:
    """The dot (0 .. ``dots`` - 1) a value falls on; ``flip`` for rows, which count downwards."""
    share = (value - low) / (high - low) if high > low else 0.5
    index = int(round(min(max(share, 0.0), 1.0) * (dots - 1)))
    return dots - 1 - index if flip else index


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


def _polyline(canvas: Canvas, points: Sequence[tuple[float, float]], xr: tuple[float, float],
              yr: tuple[float, float], style: str, every: int = 1) -> list[tuple[int, int]]:
    dots_x, dots_y = canvas.dots
    placed = [(to_dot(x, *xr, dots_x), to_dot(y, *yr, dots_y, flip=True)) for x, y in points]
    for (x0, y0), (x1, y1) in zip(placed, placed[1:], strict=False):
        canvas.line(x0, y0, x1, y1, style, every)
    if len(placed) == 1:
        canvas.dot(*placed[0], style)
    return placed


class SafeDrawing(TextLines):
    """A figure whose drawing failure shows as a line of text, never as a dashboard crash."""

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
        plot_rows = height - 3
        values = [y for points in (*series, batch_points) for _, y in points]
        if not values:
            train = state.stages.get("train")
            message = "waiting for the first batch" if train and train.status == rs.RUNNING else "no epochs yet"
            body = framed(Canvas(width - 1, plot_rows), 0.0, 1.0, [], 1, 2, [])
            body[plot_rows // 2] = Text(f" {message:^{width - 1}}", style="dim", no_wrap=True, end="")
            return lines + body
        y_low, y_high, y_step = y_range(values, plot_rows)
        labels = y_ticks(y_low, y_high, y_step)
        canvas = Canvas(max(4, width - 1 - max(len(label) for _, label in labels)), plot_rows)
        x_high = max([finished, batch.epoch if batch_points else 0, 1])
        x_low = 0 if batch_points and batch.epoch == 1 else 1
        if x_high == x_low:
            x_high += 1
        xr, yr = (float(x_low), float(x_high)), (y_low, y_high)
        _polyline(canvas, batch_points, xr, yr, BATCH_STYLE, every=2)
        _polyline(canvas, series[0], xr, yr, TRAIN_STYLE)
        for x, y in _polyline(canvas, series[1], xr, yr, VAL_STYLE):
            canvas.mark(x // 2, y // 4, VAL_MARK, VAL_STYLE)
        if best:
            canvas.column(to_dot(best, *xr, canvas.dots[0]) // 2, BEST_LINE, MARK_STYLE)
        ticks = integer_ticks(max(1, x_low), x_high, canvas.dots[0], len(str(x_high)))
        return lines + framed(canvas, y_low, y_high, labels, *xr, [(t, str(t)) for t in ticks])


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
    _EIGHTHS = " ▁▂▃▄▅▆▇█"

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
            items.append((f"┃ threshold {threshold:.2f}", f"┃ {threshold:.2f}", MARK_STYLE, 1))
        lines = [legend(items, width)]
        if height < 5 or width < 16:
            return lines
        rows = height - 3
        if not counts or len(edges) != len(counts) + 1:
            return lines + [Text("no scores yet", style="dim")]
        top = max(counts) or 1
        _, y_high, y_step = y_range([0.0, float(top)], rows)
        labels = y_ticks(0.0, y_high, max(1.0, y_step))
        canvas = Canvas(max(4, width - 1 - max(len(label) for _, label in labels)), rows)
        lo, hi = edges[0], edges[-1]
        for col in range(canvas.width):
            x = lo + (hi - lo) * (col + 0.5) / canvas.width
            index = min(len(counts) - 1, max(0, int((x - lo) / (hi - lo) * len(counts)))) if hi > lo else 0
            height_eighths = int(round(counts[index] / y_high * rows * 8))
            for row in range(rows):
                fill = height_eighths - (rows - 1 - row) * 8
                if fill > 0:
                    canvas.mark(col, row, self._EIGHTHS[min(fill, 8)], self.BAR_STYLE)
        if threshold is not None and hi > lo:
            col = to_dot(threshold, lo, hi, canvas.dots[0]) // 2
            for row in range(rows):
                canvas.mark(col, row, "┃", MARK_STYLE)  # over the bars too: the threshold always shows
        ticks = [(lo + (hi - lo) * k / 4, f"{lo + (hi - lo) * k / 4:.2f}") for k in range(5)]
        return lines + framed(canvas, 0.0, y_high, labels, lo, hi, ticks)
