"""The confusion tab's parts: a colour heatmap with a cell cursor, its legend, the header with the
accuracies beside their baselines, and the most-confused and per-class tables.

Cells are coloured by level (:func:`carclf_core.heatmap.levels`): a fixed scale of the share of the
true class's images (or of counts, ``c``), drawn as a background colour from :data:`PALETTE`. Rich
downsamples those colours to 256 or 16 where the terminal has no more, and the palette is chosen so
its six colours stay six different colours in 16 (blue, magenta, red, bright red, yellow, white).
Without colour (NO_COLOR) each level is a character of :data:`carclf_core.heatmap.SHADES` instead.

The grid fills the space it has: cells up to 12 columns wide with their count written in, square to
the eye; with more classes than rows, classes are grouped into blocks that each show their largest
cell, and Enter zooms into a block (Escape back out); Enter on a single cell asks for its images.
Class names come from folder and file names: they are escaped (:func:`carclf_core.display.printable`)
before they are measured and laid out, and every text is built as ``Text``, never as markup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import ContentSwitcher, DataTable, Static

from carclf_core import runstate as rs
from carclf_core.display import printable

if TYPE_CHECKING:
    from .confusion_grid import Cells, Grid, Window

from .fmt import CONFUSION_VIEWS as MODES  # noqa: E402  (shared with confusion_grid without a cycle)
from .fmt import words  # noqa: E402
from .tables import fill_table  # noqa: E402

SCALES = ("row share", "count")


class ConfusionHeatmap(Widget, can_focus=True):
    """The heatmap of one matrix with a cell cursor (arrows, Home/End, PgUp/PgDn), Enter to zoom into a
    block or open a cell, Escape to zoom back out."""

    DEFAULT_CSS = """
    ConfusionHeatmap {
        width: 1fr;
        height: 1fr;
        min-height: 4;
    }
    ConfusionHeatmap:focus {
        background-tint: $foreground 3%;
    }
    """

    BINDINGS = [
        Binding("up", "move(-1, 0)", "Up", show=False),
        Binding("down", "move(1, 0)", "Down", show=False),
        Binding("left", "move(0, -1)", "Left", show=False),
        Binding("right", "move(0, 1)", "Right", show=False),
        Binding("pageup", "move(-10, 0)", "Up 10", show=False),
        Binding("pagedown", "move(10, 0)", "Down 10", show=False),
        Binding("home", "diagonal", "To the diagonal", show=False),
        Binding("enter", "open", "Zoom in / images", show=False, id="confusion-open"),
        Binding("escape,backspace", "zoom_out", "Zoom out", show=False, id="confusion-back"),
    ]

    class CellChosen(Message):
        """Enter on a single cell: the images of true class ``true`` predicted as ``predicted``."""

        def __init__(self, true: int, predicted: int) -> None:
            super().__init__()
            self.true = true
            self.predicted = predicted

    class Changed(Message):
        """The cursor moved or the window changed: the pane redraws what describes them."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.counts: Any = None
        """The matrix shown (numpy, rows true); None before the first."""
        self.names: list[str] = []
        self.scale: Any = None
        self.windows: list[tuple[Window, tuple[int, int]]] = []
        """The zoom stack: each window zoomed from, with the cursor it had."""
        self.cursor = (0, 0)
        self._grid: Grid | None = None
        self._grid_size = (0, 0)
        self._cells: Cells | None = None

    @property
    def window(self) -> Window:
        if self.windows:
            return self.windows[-1][0]
        from .confusion_grid import Window

        n = len(self.names)
        return Window((0, n), (0, n))

    @property
    def zoomed(self) -> Window | None:
        return self.windows[-1][0] if self.windows else None

    def set_matrix(self, counts: Any, names: list[str], scale: str) -> None:
        """Show ``counts`` (rows true) with class ``names``, coloured by ``scale``; the cursor and zoom
        stay where they were when the classes are the same (a new epoch's matrix)."""
        if names != self.names:
            self.windows, self.cursor = [], (0, 0)
        from .confusion_grid import make_scale

        self.counts, self.names = counts, names
        self.scale = make_scale(counts, scale)
        self._grid = None
        self.refresh()
        self.post_message(self.Changed())

    @property
    def grid(self) -> Grid | None:
        """The layout for the current size (None before the first matrix)."""
        if not self.names:
            return None
        size = (self.size.width or 78, self.size.height or 20)
        if self._grid is None or (self._grid.window, self._grid_size) != (self.window, size):
            from .confusion_grid import grid_cells, plan_grid

            self._grid, self._grid_size = plan_grid(self.window, self.names, *size), size
            self._cells = grid_cells(self._grid, self.counts, self.scale)
            self.cursor = (min(self.cursor[0], self._grid.rows - 1), min(self.cursor[1], self._grid.cols - 1))
        return self._grid

    def on_resize(self) -> None:
        self._grid = None
        self.post_message(self.Changed())

    def render(self) -> Text:
        grid = self.grid
        if grid is None or self._cells is None:
            return Text()  # the header above says there is no matrix yet
        from .confusion_grid import render_grid

        try:
            return render_grid(grid, self._cells, self.names, self.scale.top, self.cursor if self.has_focus else None,
                               self.app.no_color, zoomed=bool(self.windows))
        except Exception as exc:  # a drawing bug must not take the dashboard down
            return Text(f"cannot draw the heatmap ({type(exc).__name__}: {exc})", style="red")

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    # --- keys ------------------------------------------------------------------------------------
    def action_move(self, rows: int, cols: int) -> None:
        grid = self.grid
        if grid is None:
            return
        want = (self.cursor[0] + rows, self.cursor[1] + cols)
        self.cursor = (min(max(want[0], 0), grid.rows - 1), min(max(want[1], 0), grid.cols - 1))
        over = (want[0] - self.cursor[0], want[1] - self.cursor[1])
        if self.windows and not grid.blocked and over != (0, 0):  # past a zoomed window's edge: pan it
            from .confusion_grid import pan

            window, back = self.windows[-1]
            self.windows[-1] = (pan(window, *over, len(self.names)), back)
        self.refresh()
        self.post_message(self.Changed())

    def action_diagonal(self) -> None:
        """Jump to the diagonal cell of the cursor's row."""
        grid = self.grid
        if grid is not None:
            self.cursor = (self.cursor[0], min(self.cursor[0], grid.cols - 1))
            self.refresh()
            self.post_message(self.Changed())

    def action_open(self) -> None:
        """Zoom into the block under the cursor, or ask for the single cell's images."""
        grid = self.grid
        if grid is None:
            return
        rows, cols = grid.row_range(self.cursor[0]), grid.col_range(self.cursor[1])
        if rows[1] - rows[0] == 1 and cols[1] - cols[0] == 1:
            self.post_message(self.CellChosen(rows[0], cols[0]))
            return
        from .confusion_grid import zoom_window

        window = zoom_window(grid, self.cursor, len(self.names), self._grid_size[1])
        self.windows.append((window, self.cursor))
        self.cursor = (rows[0] - window.rows[0], cols[0] - window.cols[0])
        self._grid = None
        self.refresh()
        self.post_message(self.Changed())

    def action_zoom_out(self) -> None:
        if not self.windows:
            return
        _, self.cursor = self.windows.pop()
        self._grid = None
        self.refresh()
        self.post_message(self.Changed())

    def describe(self, can_open: bool, width: int) -> Text:
        """The line under the grid on the cursor's cell."""
        grid = self.grid
        if grid is None:
            return Text()
        from .confusion_grid import cursor_text

        return cursor_text(grid, self.counts, self.names, self.cursor, can_open, width)


class ConfusionView(Vertical):
    """The confusion tab's content: the header, then the heatmap (with its cursor line and legend), the
    most-confused pairs or the per-class table, one at a time (:data:`MODES`)."""

    DEFAULT_CSS = """
    ConfusionView {
        height: 1fr;
        padding: 0 1;
    }
    ConfusionView > #confusion-header {
        height: auto;
    }
    ConfusionView > ContentSwitcher, ConfusionView #confusion-map {
        height: 1fr;
    }
    ConfusionView #confusion-cursor, ConfusionView #confusion-legend {
        height: 2;  /* fixed: a legend that grew a line would shrink the grid, which changes the legend */
    }
    ConfusionView DataTable {
        height: 1fr;
    }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.mode = MODES[0]
        self.scale = SCALES[0]
        self.confusion: rs.Confusion | None = None
        self.info: dict[str, Any] = {}
        self._filled: set[str] = set()
        """The tables filled for the current matrix (filled when first shown)."""
        self._classes_width = 0
        """The width the per-class table was laid out for."""

    def compose(self) -> ComposeResult:
        yield Static(id="confusion-header")
        with ContentSwitcher(initial="confusion-map", id="confusion-switcher"):
            with Vertical(id="confusion-map"):
                yield ConfusionHeatmap(id="confusion-heatmap")
                yield Static(id="confusion-cursor")
                yield Static(id="confusion-legend")
            yield DataTable(id="confusion-pairs", cursor_type="row", zebra_stripes=True)
            yield DataTable(id="confusion-classes", cursor_type="row", zebra_stripes=True)

    @property
    def heatmap(self) -> ConfusionHeatmap:
        return self.query_one(ConfusionHeatmap)

    @property
    def can_open(self) -> bool:
        """Enter on a cell lists its images: only the test matrix has per-image predictions."""
        return self.confusion is not None and self.confusion.split == "test"

    def main_widget(self) -> Widget:
        """What the arrows act on in the current mode."""
        return {"heatmap": self.heatmap, "most confused": self.query_one("#confusion-pairs"),
                "per class": self.query_one("#confusion-classes")}[self.mode]

    def show(self, state: rs.RunState) -> None:
        """Show the newest matrix (and, for the test matrix, the evaluate stage's numbers)."""
        confusion = state.confusion
        evaluate = state.stages.get("evaluate")
        test = confusion is not None and confusion.split == "test"
        info = dict(evaluate.info) if evaluate is not None and test else {}
        if confusion is self.confusion and info == self.info:
            return
        self.confusion, self.info = confusion, info
        self._filled = set()
        if confusion is not None:
            names = [printable(name) for name in confusion.classes]
            self.heatmap.set_matrix(confusion.counts(), names, self.scale)  # numpy comes with the first matrix
        self._show_mode()

    def cycle(self) -> str:
        """Switch to the next view; returns its name."""
        self.mode = MODES[(MODES.index(self.mode) + 1) % len(MODES)]
        self._show_mode()
        return self.mode

    def toggle_scale(self) -> str:
        """Colour the heatmap by the other scale (row share or count); returns its name."""
        self.scale = SCALES[(SCALES.index(self.scale) + 1) % len(SCALES)]
        heatmap = self.heatmap
        if heatmap.names:
            heatmap.set_matrix(heatmap.counts, heatmap.names, self.scale)
        self._describe()
        return self.scale

    def _show_mode(self) -> None:
        switcher = self.query_one(ContentSwitcher)
        switcher.current = {"heatmap": "confusion-map", "most confused": "confusion-pairs",
                            "per class": "confusion-classes"}[self.mode]
        if self.confusion is not None and self.mode not in self._filled:
            try:
                if self.mode == "most confused":
                    self._fill_pairs()
                elif self.mode == "per class":
                    self._fill_classes()
            except Exception as exc:  # a drawing bug must not take the dashboard down
                self.app.log.error(f"confusion tables: {exc!r}")
            self._filled.add(self.mode)
        self._describe()

    def _describe(self) -> None:
        try:
            self._draw_texts()
        except Exception as exc:  # a drawing bug must not take the dashboard down
            self.query_one("#confusion-header", Static).update(
                Text(f"cannot describe this matrix ({type(exc).__name__}: {exc})", style="red"))

    def _draw_texts(self) -> None:
        width = max(20, (self.size.width or 80) - 2)
        c = self.confusion
        header = self.query_one("#confusion-header", Static)
        if c is None:
            header.update(Text("no confusion matrix yet: the train stage sends one after each epoch, the "
                               "evaluate stage the test split's", style="dim"))
            return
        from .confusion_grid import header_text, legend_text

        heatmap = self.heatmap
        header.update(header_text(c, heatmap.counts, self.info, self.mode, heatmap.zoomed, width))
        if self.mode == "heatmap":
            grid = heatmap.grid
            self.query_one("#confusion-cursor", Static).update(heatmap.describe(self.can_open, width))
            # the test split's photos have their predictions stored (evaluate/predictions.csv)
            keys = [Text(" · l: worst photos · b: a batch", style="dim")] if self.can_open else []
            self.query_one("#confusion-legend", Static).update(legend_text(heatmap.scale, grid, self.app.no_color,
                                                                           width, keys))

    def on_confusion_heatmap_changed(self, message: ConfusionHeatmap.Changed) -> None:
        message.stop()
        self._describe()

    def on_resize(self) -> None:
        self._describe()
        if "per class" in self._filled and self.size.width != self._classes_width:
            self._filled.discard("per class")  # laid out again for this width when next shown
            if self.mode == "per class":
                self._show_mode()

    # --- the tables ------------------------------------------------------------------------------
    def _fill_pairs(self) -> None:
        from carclf_core import metrics

        heatmap = self.heatmap
        counts, names = heatmap.counts, heatmap.names
        table = self.query_one("#confusion-pairs", DataTable)
        table.clear(columns=True)
        totals = counts.sum(axis=1)
        index = {name: i for i, name in enumerate(names)}
        rows: list[tuple[tuple[Text, ...], str | None]] = []
        for true, predicted, count in metrics.most_confused(counts, names, k=500):
            i, j = index[true], index[predicted]
            share = count / totals[i] if totals[i] else 0.0
            rows.append(((Text(f"{count:,}", justify="right"), Text(f"{share:.1%}", justify="right"),
                          Text(f"{i + 1} {true}"), Text(f"{j + 1} {predicted}")), f"{i}:{j}"))
        if not rows:
            rows.append(((Text("-"), Text("-"), Text("no confusions in this matrix", style="dim"), Text("")), None))
        fill_table(table, (("count", "count"), ("of true", "share"), ("true class", "true"),
                           ("predicted as", "predicted")), rows)

    def _fill_classes(self) -> None:
        from carclf_core import metrics

        heatmap = self.heatmap
        counts, names = heatmap.counts, heatmap.names
        table = self.query_one("#confusion-classes", DataTable)
        table.clear(columns=True)
        # laid out by width, as the training tab's table: at 80 columns short headings, and the class
        # names and what they are taken for share what the numbers leave (cut, ``…`` last)
        width = self._classes_width = max(40, self.size.width or 80)
        wide = width >= 110
        columns = (("class (worst recall first)" if wide else "class, worst first", "class"),
                   ("recall", "recall"), ("precision" if wide else "prec", "precision"), ("f1", "f1"),
                   ("support" if wide else "n", "support"),
                   ("most often taken for" if wide else "taken for", "confused"))
        room = width - (46 if wide else 32)  # what the numbers, their headings and the padding leave
        longest = max((len(f"{i + 1} {name}") for i, name in enumerate(names)), default=0)
        class_width = max(12, min(longest, room // 2))
        names_width = max(12, room - class_width)
        off = counts.copy()
        off[range(len(off)), range(len(off))] = 0
        rows = metrics.per_class_metrics(counts, names)
        order = sorted(range(len(rows)), key=lambda i: (rows[i][2], -rows[i][4], i))
        shown: list[tuple[tuple[Text, ...], str | None]] = []
        for i in order:
            _, precision, recall, f1, support = rows[i]
            j = int(off[i].argmax()) if off.size else 0
            count = f" ({int(off[i, j])})" if off.size and off[i, j] else ""
            taken = Text(words(names[j], names_width - len(count)) + count) if count else Text("-", style="dim")
            shown.append(((Text(words(f"{i + 1} {names[i]}", class_width)),
                           *(Text(f"{v:.3f}", justify="right") for v in (recall, precision, f1)),
                           Text(f"{int(support):,}", justify="right"), taken), str(i)))
        fill_table(table, columns, shown)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a most-confused pair: the same as Enter on its cell."""
        if event.data_table.id != "confusion-pairs" or event.row_key.value is None:
            return
        event.stop()
        true, _, predicted = str(event.row_key.value).partition(":")
        if predicted:
            self.post_message(ConfusionHeatmap.CellChosen(int(true), int(predicted)))
