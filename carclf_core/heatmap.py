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

from .metrics import as_matrix

SHADES = " .:-=+*#%@"
"""Light to dense; index 0 (a blank) is a clipped count of ``clip[0]`` or less."""


def _block_max(m: np.ndarray, blocks: int) -> tuple[np.ndarray, np.ndarray]:
    """Group rows and columns into ``blocks`` contiguous groups and keep each block's largest count.

    The maximum, not the sum: summed blocks of a 300-class matrix saturate any clip range, while
    the largest single count keeps the same scale as an unaggregated cell.

    Returns:
        (blocks x blocks matrix, first class index of each group).
    """
    n = m.shape[0]
    starts = (np.arange(blocks) * n) // blocks
    rows = np.maximum.reduceat(m, starts, axis=0)
    return np.maximum.reduceat(rows, starts, axis=1), starts


def _shade(values: np.ndarray, clip: tuple[int, int]) -> np.ndarray:
    low, high = clip
    scaled = (np.clip(values, low, high) - low) / max(high - low, 1)
    idx = np.where(values <= low, 0, np.maximum(1, np.ceil(scaled * (len(SHADES) - 1)).astype(np.int64)))
    return np.asarray(list(SHADES))[idx]


def _label(name: str, width: int) -> str:
    return name[:width].ljust(width) if width > 0 else ""


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
        The lines, each at most ``width`` characters; empty when the box is too small for any grid.
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
    label_w = min(max(len(c) for c in classes), 14) if classes else 0
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
        lines.append((label + "|" + row)[:width])
    lines.extend(lines_note)
    lines.append(legend[:width])
    return lines[:height]
