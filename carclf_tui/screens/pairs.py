"""The test images of one cell of the confusion matrix: true class X predicted as Y, with their
probabilities, as a table and as pictures (Enter on a cell of the test matrix opens it, Escape closes).

The rows come from the evaluate stage's ``evaluate/predictions.csv`` (columns ``path``, ``label``,
``predicted``, ``probability``, ``correct``, ``top5``; paths relative to the run's ``data.dir``), read
in a worker once per version of the file; the pictures are decoded by :mod:`..widgets.pictures`.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from carclf_core.display import number, printable
from carclf_core.errors import CarclfError
from carclf_core.runs import RunDir

from ..panes.base import report_worker_error
from ..widgets.pictures import Picture, PictureStrip, ThumbnailCache

PREDICTION_COLUMNS = ("path", "label", "predicted", "probability", "correct", "top5")


class Predictions:
    """The run's ``predictions.csv``, read once per version of the file (thread-safe: workers call it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple = ()
        self._table: Any = None

    def pair(self, run: RunDir, true: str, predicted: str) -> list[dict[str, Any]]:
        """The test images of class ``true`` predicted as ``predicted``, most confident first.

        Raises:
            FileNotFoundError: the evaluate stage has not written its predictions.
            KeyError, ValueError: the file lacks a column or holds a value that is not a number.
        """
        import pandas as pd  # loaded with the first pair asked for

        path = run.evaluate_dir / "predictions.csv"
        stat = path.stat()
        key = (stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if key != self._key:
                table = pd.read_csv(path, dtype={"path": str, "label": str, "predicted": str, "top5": str},
                                    keep_default_na=False)
                missing = [c for c in PREDICTION_COLUMNS if c not in table.columns]
                if missing:
                    raise KeyError(f"{path}: no column {', '.join(missing)}")
                table["probability"] = pd.to_numeric(table["probability"], errors="coerce")
                self._table, self._key = table, key
            table = self._table
        rows = table[(table["label"] == true) & (table["predicted"] == predicted)]
        return rows.sort_values("probability", ascending=False, kind="stable").to_dict("records")


class PairLoaded(Message):
    def __init__(self, rows: list[dict[str, Any]], data_dir: Path) -> None:
        super().__init__()
        self.rows = rows
        self.data_dir = data_dir


class PairFailed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


def tail(name: str, width: int) -> str:
    """The end of ``name`` in ``width`` columns (``…`` first when cut): the image ids differ at the end."""
    return name if len(name) <= width else "…" + name[-(width - 1):]


class PairScreen(Screen):
    """Images of one (true, predicted) pair: the table of files and probabilities, and the pictures of
    the highlighted row and those after it."""

    BINDINGS = [Binding("escape,backspace", "close", "Back", id="pair-back")]
    DEFAULT_CSS = """
    PairScreen #pair-title {
        height: auto;
        padding: 0 1;
    }
    PairScreen #pair-table {
        height: auto;
        max-height: 50%;
        min-height: 3;
    }
    PairScreen #pair-detail {
        height: auto;
        padding: 0 1;
    }
    PairScreen PictureStrip {
        padding: 0 1;
    }
    """

    def __init__(self, run: RunDir, true: str, predicted: str, numbers: tuple[int, int],
                 predictions: Predictions, cache: ThumbnailCache) -> None:
        super().__init__()
        self.run = run
        self.true, self.predicted = true, predicted
        self.numbers = numbers
        self.predictions = predictions
        self.cache = cache
        self.rows: list[dict[str, Any]] | None = None
        self.data_dir: Path | None = None
        self.error = ""

    def compose(self) -> ComposeResult:
        yield Static(self._title(), id="pair-title")
        yield DataTable(id="pair-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="pair-detail")
        rows = min(16, max(4, self.app.size.height // 3))
        yield PictureStrip(self.cache, image_rows=rows, id="pair-pictures")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label, key in (("#", "n"), ("probability", "probability"), ("file", "path")):
            table.add_column(label, key=key)
        table.focus()
        self._load()

    def _title(self) -> Text:
        text = Text()
        text.append("true ", style="dim")
        text.append(f"{self.numbers[0] + 1} {printable(self.true)}", style="bold")
        text.append(" → predicted ", style="dim")
        text.append(f"{self.numbers[1] + 1} {printable(self.predicted)}", style="bold")
        if self.rows is not None:
            text.append(f" · {len(self.rows):,} test image{'s' if len(self.rows) != 1 else ''}")
        elif not self.error:
            text.append(" · reading predictions.csv…", style="dim")
        if self.error:
            text.append("\n")
            text.append(printable(self.error), style="yellow")
        return text

    @work(thread=True, exclusive=True, name="read predictions", exit_on_error=False)
    def _load(self) -> None:
        try:
            rows = self.predictions.pair(self.run, self.true, self.predicted)
            data_dir = Path(self.run.load_config().data.dir)
        except FileNotFoundError:
            self.post_message(PairFailed(f"{self.run.evaluate_dir / 'predictions.csv'}: not there; the evaluate "
                                         "stage writes it"))
            return
        except (CarclfError, OSError, ValueError, KeyError) as exc:
            self.post_message(PairFailed(str(exc)))
            return
        self.post_message(PairLoaded(rows, data_dir))

    def on_pair_loaded(self, message: PairLoaded) -> None:
        self.rows, self.data_dir = message.rows, message.data_dir
        table = self.query_one(DataTable)
        # the file column fits the screen (no sideways scrolling); the ids differ at the end of the name
        width = max(20, self.size.width - 20)
        for n, row in enumerate(self.rows, start=1):
            table.add_row(Text(str(n), justify="right"), Text(number(row["probability"], 3), justify="right"),
                          Text(tail(printable(row["path"]), width)), key=str(n - 1))
        self.query_one("#pair-title", Static).update(self._title())
        self._show_pictures(0)

    def on_pair_failed(self, message: PairFailed) -> None:
        self.error = message.error
        self.query_one("#pair-title", Static).update(self._title())

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_pictures(event.cursor_row)
        if self.rows and 0 <= event.cursor_row < len(self.rows):
            row = self.rows[event.cursor_row]
            detail = Text(printable(row["path"]))
            detail.append("\ntop 5: ", style="dim")
            detail.append(printable(row["top5"]), style="dim")
            self.query_one("#pair-detail", Static).update(detail)

    def _show_pictures(self, first: int) -> None:
        """Pictures of the highlighted row and the rows after it, as many as fit."""
        if not self.rows or self.data_dir is None:
            return
        strip = self.query_one(PictureStrip)
        width = strip.card_width - 2
        pictures = []
        for n, row in enumerate(self.rows[first:], start=first + 1):
            caption = Text(no_wrap=True, overflow="ellipsis")
            caption.append(f"#{n} ", style="dim")
            caption.append(number(row["probability"], 3), style="bold")
            caption.append("\n" + tail(printable(Path(str(row["path"])).name), width), style="dim")
            pictures.append(Picture(self.data_dir / str(row["path"]), caption))
        strip.show(pictures)

    def on_worker_state_changed(self, event) -> None:
        report_worker_error(self, event)

    def action_close(self) -> None:
        self.dismiss()
