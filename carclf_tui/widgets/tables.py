"""What the dashboard's tables share."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import DataTable


def fill_table(table: DataTable, columns: Sequence[tuple[str, str]],
               rows: Iterable[tuple[Sequence[Text], str | None]]) -> None:
    """Add ``columns`` (label, key) to the empty ``table``, each as wide as its widest cell, then
    ``rows`` (cells, key).

    A table left to measure its columns itself does so when idle, and on a busy machine a frame was
    sometimes drawn before that and never again: a list filled from a worker showed its file column at
    the width of its heading ("…_20").
    """
    rows = list(rows)
    for i, (label, key) in enumerate(columns):
        table.add_column(label, key=key, width=max([cell_len(label), *(cells[i].cell_len for cells, _ in rows)]))
    for cells, key in rows:
        table.add_row(*cells, key=key)


class ThumbFollowsScroll:
    """Mixed into a Textual widget scrolled by code (a table following its newest row).

    Textual moves a vertical scroll bar's thumb only while the bar is shown: a widget scrolled while its
    bar was still hidden (rows added to a hidden tab, then the tab laid out on a busy machine) kept the
    thumb at the top beside scrolled-down content until the next scroll. The bar takes the position
    when it appears.
    """

    def watch_show_vertical_scrollbar(self, shown: bool) -> None:
        if shown:
            self.vertical_scrollbar.position = self.scroll_y  # type: ignore[attr-defined]
