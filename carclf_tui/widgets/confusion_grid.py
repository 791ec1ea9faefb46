"""The confusion heatmap's layout and drawing: pure functions of a matrix and a box (numpy, Rich).

Imported by :mod:`carclf_tui.widgets.confusion` with the first matrix, so the dashboard opens
without loading numpy. See that module for what the colours and cells mean.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from rich.cells import cell_len, set_cell_size
from rich.color import Color
from rich.style import Style
from rich.text import Span, Text

from carclf_core import heatmap
from carclf_core import runstate as rs
from carclf_core.display import number, printable

from .fmt import CONFUSION_VIEWS as MODES

PALETTE: tuple[tuple[int, int, int], ...] = (
    (38, 52, 150),
    (140, 35, 160),
    (205, 35, 65),
    (235, 110, 25),
    (250, 205, 40),
    (255, 250, 215),
)
"""Background of the levels, faint to strong (a plasma-like ramp). In 16 colours they become blue,
magenta, red, bright red, bright yellow and bright white: six levels stay six colours."""
DARK_TEXT_FROM = 4
"""Palette entries from this one on are light: their counts are written in black, the others in white."""
MAX_CELL_W = 12
"""Widest cell in columns (a cell is never wider than twice its height, so cells look square)."""
MIN_COUNT_W = 4
"""A cell gets at least this many columns while there is room: three digits and a space."""


def palette_index(level: int, top: int) -> int:
    """The :data:`PALETTE` entry of ``level`` (1..``top``): spread so the top level is always the
    strongest colour, whatever the number of levels."""
    if top <= 1:
        return len(PALETTE) - 1
    return len(PALETTE) - 1 - round((top - level) * (len(PALETTE) - 1) / (top - 1))


def level_styles(top: int) -> list[Style]:
    """The style of each level 0..``top``: level 0 has no background."""
    styles = [Style()]
    for level in range(1, top + 1):
        index = palette_index(level, top)
        styles.append(Style(bgcolor=Color.from_rgb(*PALETTE[index]),
                            color="black" if index >= DARK_TEXT_FROM else "white"))
    return styles


@dataclasses.dataclass(frozen=True)
class Window:
    """The part of the matrix shown: true classes ``rows[0]`` up to ``rows[1]`` (exclusive), predicted
    ``cols[0]`` up to ``cols[1]``."""

    rows: tuple[int, int]
    cols: tuple[int, int]


@dataclasses.dataclass(frozen=True)
class Grid:
    """How a window is laid out: groups of classes per row and column, cell and label sizes."""

    window: Window
    row_starts: np.ndarray
    """First class (absolute index) of each row of cells."""
    col_starts: np.ndarray
    cell_w: int
    cell_h: int
    label_w: int
    """Columns of the class name beside each row (0: numbers only)."""
    number_w: int

    @property
    def rows(self) -> int:
        return len(self.row_starts)

    @property
    def cols(self) -> int:
        return len(self.col_starts)

    @property
    def blocked(self) -> bool:
        """A cell holds more than one class on some axis."""
        (r0, r1), (c0, c1) = self.window.rows, self.window.cols
        return self.rows < r1 - r0 or self.cols < c1 - c0

    @property
    def prefix_w(self) -> int:
        return self.number_w + 1 + (self.label_w + 1 if self.label_w else 0) + 1

    def row_range(self, i: int) -> tuple[int, int]:
        """The classes (absolute, end exclusive) in row ``i``."""
        return _span(self.row_starts, i, self.window.rows[1])

    def col_range(self, j: int) -> tuple[int, int]:
        return _span(self.col_starts, j, self.window.cols[1])


def _span(starts: np.ndarray, i: int, stop: int) -> tuple[int, int]:
    return int(starts[i]), int(starts[i + 1]) if i + 1 < len(starts) else stop


def plan_grid(window: Window, names: Sequence[str], width: int, height: int) -> Grid:
    """Lay ``window`` out in ``width`` x ``height`` cells (the ruler line included).

    The grid gets at least half the width unless it needs less; class names take what is left, up
    to their full length (under 4 columns they are left out, the numbers remain). A square window
    (the whole matrix, or a diagonal block) is grouped alike on both axes, so the diagonal stays the
    diagonal; cells then grow to fill the space, up to :data:`MAX_CELL_W` wide and half as high.
    """
    (r0, r1), (c0, c1) = window.rows, window.cols
    n_rows, n_cols = r1 - r0, c1 - c0
    number_w = len(str(max(r1, c1)))
    longest = max((cell_len(names[i]) for i in range(r0, r1)), default=0)  # wide characters take two
    grid_h = max(1, height - 1)
    min_grid = min(n_cols * MIN_COUNT_W, max(width // 2, 8))
    label_w = max(0, min(longest, width - number_w - 3 - min_grid))
    if label_w < 4:
        label_w = 0
    grid_w = max(1, width - (number_w + 1 + (label_w + 1 if label_w else 0) + 1))
    if window.rows == window.cols:
        rows = cols = max(1, min(n_rows, grid_h, grid_w))
    else:
        rows, cols = max(1, min(n_rows, grid_h)), max(1, min(n_cols, grid_w))
    cw_max, ch_max = max(1, grid_w // cols), max(1, grid_h // rows)
    cell_h = max(1, min(ch_max, cw_max // 2))
    cell_w = max(1, min(cw_max, MAX_CELL_W, max(2 * cell_h, MIN_COUNT_W)))
    if label_w < longest:  # names cut: hand them the columns the grid does not use
        spare = grid_w - cols * cell_w
        label_w = min(longest, label_w + spare) if label_w or spare >= 4 else 0
    return Grid(window, r0 + heatmap.group_starts(n_rows, rows), c0 + heatmap.group_starts(n_cols, cols),
                cell_w, cell_h, label_w, number_w)


def zoom_window(grid: Grid, cursor: tuple[int, int], n: int, height: int) -> Window:
    """The window Enter on a block opens: from the block's first classes, as many classes a side as the
    rows hold one a cell (so one Enter reaches single cells; the arrows pan on from there)."""
    (r0, _), (c0, _) = grid.row_range(cursor[0]), grid.col_range(cursor[1])
    side = max(1, min(n, height - 1, grid.rows * grid.cell_h))
    r0, c0 = min(r0, n - side), min(c0, n - side)
    return Window((r0, r0 + side), (c0, c0 + side))


def pan(window: Window, rows: int, cols: int, n: int) -> Window:
    """``window`` moved by ``rows`` and ``cols`` classes, kept inside the ``n`` classes."""

    def shift(span: tuple[int, int], by: int) -> tuple[int, int]:
        by = max(-span[0], min(by, n - span[1]))
        return span[0] + by, span[1] + by

    return Window(shift(window.rows, rows), shift(window.cols, cols))


@dataclasses.dataclass(frozen=True)
class Scale:
    """What the colours mean for one matrix: the values coloured, the level edges, and their names."""

    kind: str
    """``row share`` or ``count``."""
    values: np.ndarray
    edges: tuple[float, ...]
    names: list[str]

    @property
    def top(self) -> int:
        return len(self.edges) + 1


def make_scale(counts: np.ndarray, kind: str) -> Scale:
    """The colour scale of ``counts`` by ``kind``: shares of each true class (fixed edges), or counts
    (edges from the largest count in the matrix, so zooming in keeps the colours)."""
    if kind == "row share":
        edges = heatmap.SHARE_EDGES
        return Scale(kind, heatmap.row_shares(counts), edges, heatmap.level_names(edges, share=True))
    high = int(counts.max()) if counts.size else 0
    count_edges = heatmap.count_edges(max(high, 1))
    return Scale(kind, counts, count_edges, heatmap.level_names(count_edges, share=False, high=max(high, 1)))


@dataclasses.dataclass(frozen=True)
class Cells:
    """The values of each cell of a grid: largest count, largest scale value, and colour level."""

    counts: np.ndarray
    values: np.ndarray
    levels: np.ndarray
    diagonal: np.ndarray
    """Cells that hold a class's own (correct) predictions."""


def grid_cells(grid: Grid, counts: np.ndarray, scale: Scale) -> Cells:
    (r0, r1), (c0, c1) = grid.window.rows, grid.window.cols
    rows, cols = grid.row_starts - r0, grid.col_starts - c0
    shown = heatmap.block_max(counts[r0:r1, c0:c1], rows, cols)
    values = heatmap.block_max(scale.values[r0:r1, c0:c1], rows, cols)
    row_stop = np.append(grid.row_starts[1:], r1)
    col_stop = np.append(grid.col_starts[1:], c1)
    # a cell holds a diagonal entry when its true and predicted class ranges overlap
    diagonal = (grid.row_starts[:, None] < col_stop[None, :]) & (grid.col_starts[None, :] < row_stop[:, None])
    return Cells(shown, values, heatmap.levels(values, scale.edges), diagonal)


def render_grid(grid: Grid, cells: Cells, names: Sequence[str], top: int, cursor: tuple[int, int] | None,
                no_color: bool, zoomed: bool = False) -> Text:
    """The ruler and the rows of ``grid``: colour (or shade characters when ``no_color``), counts in
    the cells wide enough, the cursor's cell, row name and column number in reverse. Left of the ruler,
    which way the axes go (or, zoomed in, how to get back out).

    Built as one string and a list of spans, a span per run of equal cells (a 300-class matrix at
    200x60 is 2,600 cells: appending each as its own ``Text`` cost 50 ms a cursor move).
    """
    styles = [Style() for _ in range(top + 1)] if no_color else level_styles(top)
    shades = heatmap.level_shades(top) if no_color else " " * (top + 1)
    cursor_style = Style(reverse=True, bold=True)
    cur_r, cur_c = cursor if cursor is not None else (-1, -1)
    cw, ch = grid.cell_w, grid.cell_h
    hint = "Esc: zoom out" if zoomed else "true ↓  predicted →"
    head = Text((hint if len(hint) < grid.prefix_w - 1 else "").ljust(grid.prefix_w - 1), style="dim")
    head.append("│", style="dim")
    head.append_text(ruler(grid, cur_c))
    parts: list[str] = [head.plain]
    spans: list[Span] = list(head.spans)
    at = len(head.plain)

    def add(chunk: str, style: Style | str | None) -> None:
        nonlocal at
        parts.append(chunk)
        if style:
            spans.append(Span(at, at + len(chunk), style))
        at += len(chunk)

    counts, levels, diagonal = cells.counts.tolist(), cells.levels.tolist(), cells.diagonal.tolist()
    for i in range(grid.rows):
        first, stop = grid.row_range(i)
        for line in range(ch):
            add("\n", None)
            middle = line == (ch - 1) // 2
            label = f"{first + 1:>{grid.number_w}} " if middle else " " * (grid.number_w + 1)
            if grid.label_w:
                name = names[first] + ("…" if stop - first > 1 else "") if middle else ""
                cut = set_cell_size(name, grid.label_w - 1) + "…" if cell_len(name) > grid.label_w else name
                label += set_cell_size(cut, grid.label_w) + " "
            add(label, "reverse bold" if i == cur_r else None)
            add("│", "dim")
            run, run_style = [], None  # consecutive cells of one style: one span
            for j in range(grid.cols):
                level, count = levels[i][j], counts[i][j]
                fill = shades[level] * cw
                if middle and count and cw >= MIN_COUNT_W and len(str(count)) < cw:
                    fill = fill[: cw - len(str(count)) - 1] + " " + str(count)
                elif middle and not count and diagonal[i][j]:
                    fill = fill[: (cw - 1) // 2] + "·" + fill[(cw - 1) // 2 + 1:]  # where the diagonal is
                style = styles[level] + cursor_style if (i, j) == (cur_r, cur_c) else styles[level]
                if style is not run_style and run:
                    add("".join(run), run_style)
                    run = []
                run.append(fill)
                run_style = style
            if run:
                add("".join(run), run_style)
    return Text("".join(parts), spans=spans, no_wrap=True, overflow="crop")


def ruler(grid: Grid, cursor_col: int = -1) -> Text:
    """The column numbers above the grid: each column's first class where they fit (right-aligned in
    their cells), else one every 2, 5, 10, ... columns; the cursor's column in reverse."""
    cw = grid.cell_w
    numbers = [str(int(s) + 1) for s in grid.col_starts]
    wide = max(len(n) for n in numbers) + 1
    step = next(s for s in (1, 2, 5, 10, 20, 50, 100, 200, 500, 10**9) if s * cw >= wide or s == 10**9)
    chars = [" "] * (grid.cols * cw)
    for j in range(0, grid.cols, step):
        label = numbers[j]
        start = j * cw + (cw - len(label) if step == 1 else 0)
        if start + len(label) <= len(chars):
            chars[start:start + len(label)] = label
    text = Text("".join(chars), style="dim")
    if 0 <= cursor_col < grid.cols:
        text.stylize("reverse bold", cursor_col * cw, (cursor_col + 1) * cw)
    return text


def legend_text(scale: Scale, grid: Grid | None, no_color: bool, width: int, keys: Sequence[Text] = ()) -> Text:
    """What the colours (or characters) mean, and what a cell and its number are, in lines of ``width``;
    ``keys`` (what more keys show) at the end."""
    pieces = [Text(f"(c) {'share of the true class' if scale.kind == 'row share' else 'images'}:", style="dim")]
    styles = level_styles(scale.top)
    shades = heatmap.level_shades(scale.top)
    for level, name in enumerate(scale.names, start=1):
        # drawn, not blank: a swatch of coloured spaces would be taken for a separator and dropped at a
        # line's start
        swatch = (Text(shades[level] * 2, style="bold") if no_color
                  else Text("██", style=Style(color=styles[level].bgcolor)))
        pieces.append(Text(" ") + swatch + Text(f" {name}"))
    if grid is not None and grid.cell_w >= MIN_COUNT_W:
        pieces.append(Text(" · numbers: images", style="dim"))
    if grid is not None and grid.blocked:
        pieces.append(Text(f" · a cell: its largest of ~{_per_cell(grid)}×{_per_cell(grid)} classes", style="dim"))
    return flow([*pieces, *keys], width)


def _per_cell(grid: Grid) -> str:
    per = (grid.window.rows[1] - grid.window.rows[0]) / grid.rows
    return f"{per:.0f}" if per >= 10 else f"{per:.1f}"


def flow(pieces: Sequence[Text], width: int) -> Text:
    """``pieces`` in order, a new line where the next would not fit ``width`` (a piece is never split,
    one wider than ``width`` is cut)."""
    out, line = Text(), 0
    for piece in pieces:
        size = piece.cell_len
        if line and line + size > width:
            out.rstrip()
            out.append("\n")
            line = 0
            plain = piece.plain
            piece = piece[len(plain) - len(plain.lstrip(" ·")):]  # no separator at a line's start
            size = piece.cell_len
        if size > width:
            piece = piece.copy()
            piece.truncate(width, overflow="ellipsis")
            size = width
        out.append_text(piece)
        line += size
    out.rstrip()
    return out


def cursor_text(grid: Grid, counts: np.ndarray, names: Sequence[str], cursor: tuple[int, int], can_open: bool,
                width: int) -> Text:
    """One or two lines on the cell under the cursor: the classes, the count and its share of the row,
    what Enter does there."""
    (r0, r1), (c0, c1) = grid.row_range(cursor[0]), grid.col_range(cursor[1])
    text = Text()
    if r1 - r0 == 1 and c1 - c0 == 1:
        count = int(counts[r0, c0])
        total = int(counts[r0].sum())
        share = f" ({count / total:.1%} of its {total:,})" if total else ""
        pieces = [Text("true "), Text(f"{r0 + 1} {names[r0]}", style="bold"),
                  Text(" → predicted "), Text(f"{c0 + 1} {names[c0]}", style="bold"),
                  Text(f" · {count:,} image{'s' if count != 1 else ''}{share}"),
                  Text("   Enter: its images" if can_open and count else "", style="dim")]
        if r0 == c0:
            pieces.insert(4, Text(" (correct)", style="green"))
    else:
        block = counts[r0:r1, c0:c1]
        pieces = [Text("true "), Text(f"{r0 + 1}-{r1}", style="bold"), Text(" × predicted "),
                  Text(f"{c0 + 1}-{c1}", style="bold"),
                  Text(f" · {int(block.sum()):,} images, largest cell {int(block.max()) if block.size else 0:,}"),
                  Text("   Enter: zoom in", style="dim")]
    text = flow(pieces, width)
    return text


def header_text(confusion: rs.Confusion, counts: np.ndarray, info: dict[str, Any], mode: str,
                zoomed: Window | None, width: int) -> Text:
    """Which matrix this is (its dense ``counts``) and how good it is: accuracy, balanced accuracy and
    top-5, each with its 95 % interval where known, beside chance, the majority baseline (and whether
    the accuracy's interval clears it) and top-5 chance; the other views (``v``) where the first line
    has room; a line naming the sink classes (``metrics.sink_classes``) when there are any."""
    names_count = len(confusion.classes)
    test = confusion.split == "test"
    first = [Text(f" {mode} ", style="reverse bold"),
             Text(" of the test split" if test else f" of the {printable(confusion.split)} sample", style="bold"),
             Text(f" · {names_count:,} classes · {confusion.sample:,} {'photos' if test else 'images'}")]
    if confusion.epoch:
        first.append(Text(f" · {'best epoch' if test else 'epoch'} {confusion.epoch}"))
    others = Text("   v: " + " · ".join(m for m in MODES if m != mode), style="dim")
    if sum(piece.cell_len for piece in first) + others.cell_len <= width:
        first.append(others)
    numbers = _summary(counts, info if test else {})
    second = []
    for key, label in (("accuracy", "accuracy"), ("balanced_accuracy", "balanced"), ("top5", "top-5")):
        if key in numbers:
            piece = Text(f"{' · ' if second else ''}{label} ") + Text(number(numbers[key], 3), style="bold")
            low_high = numbers.get(f"{key}_ci")
            if low_high is not None:  # the 95 % interval, at the precision a few dozen photos allow
                piece.append(f" [{number(low_high[0], 2)}, {number(low_high[1], 2)}]")
            second.append(piece)
    baselines = [(k, label) for k, label in (("chance", "chance"), ("majority_baseline", "majority"),
                                              ("top5_chance", "top-5 chance")) if k in numbers]
    for n, (key, label) in enumerate(baselines):
        text = f"{'   vs ' if n == 0 else ' · '}{label} {number(numbers[key], 3)}"
        if key == "majority_baseline" and "clears_majority" in numbers:
            text += " (cleared)" if numbers["clears_majority"] else " (not cleared by the interval)"
        second.append(Text(text, style="dim"))
    out = flow(first, width) + Text("\n") + flow(second, width)
    sinks = numbers["sinks"] if "sinks" in numbers else _sinks(counts, confusion.classes)
    if sinks:
        from carclf_core.metrics import sink_text

        out += Text("\n") + flow([Text(printable(sink_text(sinks)), style="yellow")], width)
    return out


_last_sinks: list[Any] = [None, []]
"""The last matrix whose sinks were found, and its sinks: the header redraws on every cursor move."""


def _sinks(counts: np.ndarray, classes: Sequence[str]) -> list[dict[str, Any]]:
    from carclf_core.metrics import sink_classes

    if _last_sinks[0] is not counts:
        _last_sinks[:] = [counts, sink_classes(counts, classes) if counts.size else []]
    return _last_sinks[1]


def _summary(counts: np.ndarray, info: dict[str, Any]) -> dict[str, Any]:
    """The evaluate stage's numbers where it reported them (the test matrix), else what the matrix
    itself says: accuracy, balanced accuracy, chance and the majority baseline of its sample."""
    from carclf_core import metrics

    numbers: dict[str, Any] = {}
    if counts.size:
        numbers.update(metrics.summary_metrics(counts))
        totals = counts.sum(axis=1)
        numbers["chance"] = 1.0 / len(counts)
        numbers["majority_baseline"] = float(totals.max() / totals.sum()) if totals.sum() else 0.0
    numbers.update({k: v for k, v in info.items()
                    if k in ("accuracy", "balanced_accuracy", "top5", "chance", "majority_baseline", "top5_chance",
                             "accuracy_ci", "balanced_accuracy_ci", "top5_ci", "clears_majority", "sinks")})
    if counts.size and "accuracy_ci" not in numbers:  # a validation sample, or a run from before intervals
        numbers["accuracy_ci"] = metrics.wilson_interval(float(np.trace(counts)), float(counts.sum()))
        numbers["clears_majority"] = numbers["accuracy_ci"][0] > numbers["majority_baseline"]
    return numbers
