"""ASCII confusion heatmap: rendering only, pure functions, numpy only (the numbers are in ``metrics``).

Shared by the Textual dashboard and the headless renderer, so it imports neither TensorFlow nor any
UI library. Counts are clipped to a range as the reference's heatmap does ([0, 5] by default: wider
ranges leave the off-diagonal invisible) and shaded with characters from light to dense. When there
are more classes than cells, rows and columns are grouped into equal blocks of classes, each shown by
its largest count, and a line says so; the most-confused pairs then say which classes hide in the hot blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .display import cell_width, fit_cells
from .metrics import as_matrix

SHADES = " .:-=+*#%@"
"""Light to dense; index 0 (a blank) is a clipped count of ``clip[0]`` or less."""


SHARE_EDGES = (0.02, 0.05, 0.10, 0.25, 0.50)
"""Upper ends of the colour levels 1..5 of a row share (level 6: above 50 %). Fixed, so a colour means
the same share on every run: a confusion of 3 % of a class is as visible as one of 40 %."""
COUNT_FRACTIONS = (0.02, 0.05, 0.10, 0.25, 0.50)
"""Upper ends of the count levels as fractions of the largest count shown (rounded up to whole counts)."""


def group_starts(n: int, groups: int) -> np.ndarray:
    """First index of each of ``groups`` contiguous, near-equal groups of ``n`` items (``groups <= n``)."""
    return (np.arange(groups) * n) // groups


def block_max(m: np.ndarray, row_starts: np.ndarray, col_starts: np.ndarray) -> np.ndarray:
    """The largest value of each block when rows start groups at ``row_starts`` and columns at ``col_starts``.

    The maximum, not the sum: summed blocks of a 300-class matrix saturate any scale, while the
    largest single value keeps the same scale as an unaggregated cell.
    """
    rows = np.maximum.reduceat(m, row_starts, axis=0)
    return np.maximum.reduceat(rows, col_starts, axis=1)


def _block_max(m: np.ndarray, blocks: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns grouped alike into ``blocks`` groups; (blocks x blocks maxima, group starts)."""
    starts = group_starts(m.shape[0], blocks)
    return block_max(m, starts, starts), starts


def row_shares(matrix) -> np.ndarray:
    """Each count as a share of its row (of the true class's images); 0 in a row without images."""
    m = as_matrix(matrix).astype(np.float64)
    totals = m.sum(axis=1, keepdims=True)
    return np.divide(m, totals, out=np.zeros_like(m), where=totals > 0)


def count_edges(high: int) -> tuple[int, ...]:
    """Upper ends of the count levels for counts up to ``high``: :data:`COUNT_FRACTIONS` of it, rounded
    up to whole counts, without repeats (a small ``high`` gets fewer levels, one count each)."""
    edges = sorted({int(np.ceil(high * f)) for f in COUNT_FRACTIONS} - {0})
    return tuple(e for e in edges if e < high)


def levels(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Colour level of each value: 0 for nothing (zero or less), else 1 + how many ``edges`` lie below it.

    A value equal to an edge belongs to that edge's level, so level ``k`` holds ``(edges[k-2], edges[k-1]]``.
    """
    values = np.asarray(values, dtype=np.float64)
    ranks = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="left") + 1
    return np.where(values > 0, ranks, 0).astype(np.int64)


def level_names(edges: Sequence[float], share: bool, high: float | None = None) -> list[str]:
    """What each nonzero level holds, for a legend: ``≤2%``, ``2-5%``, ... ``>50%``; or ``1``, ``2``,
    ``3-4``, ... ``21-40`` for counts (``high`` the largest count: the last level's upper end)."""
    if share:
        names = [f"≤{edges[0]:.0%}"] if edges else []
        names += [f"{a * 100:.0f}-{b:.0%}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
        return [*names, f">{edges[-1]:.0%}" if edges else ">0%"]
    names, low = [], 1
    for top in [*edges, high if high is not None else (edges[-1] + 1 if edges else 1)]:
        top = int(top)
        names.append(str(low) if top <= low else f"{low}-{top}")
        low = top + 1
    return names


def level_shades(count: int) -> str:
    """``count + 1`` characters of :data:`SHADES` spread from blank to densest: level ``k`` is drawn with
    the ``k``-th (for terminals without colour)."""
    picks = np.round(np.linspace(0, len(SHADES) - 1, count + 1)).astype(int)
    return "".join(SHADES[i] for i in picks)


def _shade(values: np.ndarray, clip: tuple[int, int]) -> np.ndarray:
    low, high = clip
    scaled = (np.clip(values, low, high) - low) / max(high - low, 1)
    idx = np.where(values <= low, 0, np.maximum(1, np.ceil(scaled * (len(SHADES) - 1)).astype(np.int64)))
    return np.asarray(list(SHADES))[idx]


def _label(name: str, width: int) -> str:
    # by terminal cells, not code points: a wide or a decomposed name would shift its row
    return fit_cells(name, width)


def render(matrix, classes: Sequence[str], width: int, height: int, clip: tuple[int, int] = (0, 5)) -> list[str]:
    """Render a confusion matrix into at most ``height`` lines of at most ``width`` characters.

    Rows are true classes, columns predicted classes. Each cell is one character shaded by the
    count clipped to ``clip`` (counts above ``clip[1]`` look the same as ``clip[1]``). Row labels are
    shown when at least 4 characters fit beside the grid; column positions are marked by a ruler of
    class numbers. With more classes than cells, rows/columns are grouped into blocks shown by their
    largest count (a note says how many classes a cell holds).

    Args:
        matrix: n x n counts (rows true, columns predicted).
        classes: n class names.
        width: terminal cells available horizontally.
        height: lines available.
        clip: (low, high) count range for the shading.

    Returns:
        The lines, each at most ``width`` terminal cells (names are cut and padded by cells, so wide
        and combining letters keep the grid aligned); empty when the box is too small for any grid.
    """
    m = as_matrix(matrix)
    n = m.shape[0]
    if len(classes) != n:
        raise ValueError(f"{len(classes)} class names for a {n}x{n} matrix")
    if width < 8 or height < 4 or n == 0:
        return [f"{n} classes"[:width]] if height >= 1 and width >= 1 else []
    low, high = int(clip[0]), int(clip[1])
    legend = f"{low}[{SHADES[1:]}]{high}+  rows true, cols predicted"
    # lines reserved: header ruler, legend, and maybe a block note
    grid_h_max = height - 2
    label_w = min(max(cell_width(c) for c in classes), 14) if classes else 0
    number_w = len(str(n))
    prefix_w = number_w + 1 + label_w + 1
    if width - prefix_w < min(n, 8):
        # not enough room for names: numbers only
        label_w = 0
        prefix_w = number_w + 1
    grid_w_max = max(width - prefix_w - 1, 1)
    cells = min(n, grid_w_max, grid_h_max)
    if cells < n:
        grid_h_max -= 1  # the note line
        cells = min(n, grid_w_max, grid_h_max)
    if cells < 1:
        return [f"{n} classes: box too small"[:width]]
    if cells < n:
        shown, starts = _block_max(m, cells)
        per = np.diff(np.append(starts, n))
        diag_mask = np.eye(cells, dtype=bool)
        lines_note = [f"{n} classes in {cells} blocks of ~{n / cells:.1f}: cell = largest count in its block"[:width]]
        names = [f"{classes[s]}.." if k > 1 else classes[s] for s, k in zip(starts, per, strict=True)]
        numbers = [int(s) + 1 for s in starts]
    else:
        shown = m
        diag_mask = np.eye(n, dtype=bool)
        lines_note = []
        names = list(classes)
        numbers = list(range(1, n + 1))
    shades = _shade(shown, (low, high))
    # the diagonal is the good part: mark it so a dense diagonal reads apart from confusions
    # column ruler: the (first) class number every 10 columns, or every column when few
    ruler = [" "] * cells
    step = 1 if cells <= 9 else 10
    for j in range(0, cells, step):
        text = str(numbers[j])
        if j + len(text) <= cells and all(c == " " for c in ruler[j : j + len(text)]):
            ruler[j : j + len(text)] = list(text)
    header = " " * prefix_w + "|" + "".join(ruler)
    lines = [header[:width]]
    for i in range(cells):
        row = "".join(shades[i])
        if diag_mask[i, i] and shades[i, i] == " ":
            row = row[:i] + "\u00b7" + row[i + 1 :]  # an empty diagonal cell still shows where it is
        label = f"{numbers[i]:>{number_w}} " + (_label(names[i], label_w) + " " if label_w else "")
        lines.append(label + "|" + row)  # the label is label_w cells whatever its letters, the row fits
    lines.extend(lines_note)
    lines.append(legend[:width])
    return lines[:height]
