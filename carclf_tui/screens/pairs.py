"""Test images with their predictions, as a table and as pictures: the images of one cell of the
confusion matrix (true class X predicted as Y; Enter on a cell of the test matrix), the test photos the
model got most wrong (``l``: worst first) and a batch of test photos with their predictions (``b``, as
the reference write-up shows them). Escape closes.

The rows come from the evaluate stage's ``evaluate/predictions.csv`` (columns ``path``, ``label``,
``predicted``, ``probability``, ``correct``, ``top5``, and ``true_probability`` since round three;
paths relative to the run's ``data.dir``) and ``batch_predictions.csv`` (the first batch), read in a
worker once per version of the file; the pictures are decoded by :mod:`..widgets.pictures`.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Static

from carclf_core.display import number, printable
from carclf_core.errors import CarclfError
from carclf_core.runs import RunDir

from ..panes.base import report_worker_error
from ..widgets.footer import KeysFooter
from ..widgets.pictures import Picture, PictureStrip, ThumbnailCache
from ..widgets.tables import fill_table

PREDICTION_COLUMNS = ("path", "label", "predicted", "probability", "correct", "top5")
TOP_LOSSES = 200
"""Most rows the worst-photos list holds (the worst first: a user looks at the first few dozen)."""


class Predictions:
    """The run's ``predictions.csv``, read once per version of the file (thread-safe: workers call it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple = ()
        self._table: Any = None

    def table(self, run: RunDir) -> Any:
        """The whole ``predictions.csv`` as a pandas table, read again only when the file changed.

        Raises:
            FileNotFoundError: the evaluate stage has not written its predictions.
            KeyError, ValueError: the file lacks a column or holds a value that is not a number.
        """
        path = run.evaluate_dir / "predictions.csv"
        stat = path.stat()
        key = (stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if key != self._key:
                self._table, self._key = read_predictions(path), key
            return self._table

    def pair(self, run: RunDir, true: str, predicted: str) -> list[dict[str, Any]]:
        """The test images of class ``true`` predicted as ``predicted``, most confident first (raises as
        :meth:`table`)."""
        table = self.table(run)
        rows = table[(table["label"] == true) & (table["predicted"] == predicted)]
        return rows.sort_values("probability", ascending=False, kind="stable").to_dict("records")

    def top_losses(self, run: RunDir, limit: int = TOP_LOSSES) -> list[dict[str, Any]]:
        """The test photos the model got most wrong, worst first: by their loss, ``-log`` of the
        probability of the true class (``loss``), where the file has it; in a file from before it
        (no ``true_probability``), the wrong ones, most confident first (raises as :meth:`table`)."""
        table = self.table(run)
        if "true_probability" in table.columns:
            rows = table.sort_values("loss", ascending=False, kind="stable")
        else:
            rows = table[~table["correct"]].sort_values("probability", ascending=False, kind="stable")
        return rows.head(limit).to_dict("records")

    def batch(self, run: RunDir) -> list[dict[str, Any]]:
        """The test batch the evaluate stage wrote with its predictions (``batch_predictions.csv``), in
        its order (raises as :meth:`table`, for that file)."""
        return read_predictions(run.evaluate_dir / "batch_predictions.csv").to_dict("records")


def read_predictions(path: Path) -> Any:
    """A predictions file (``predictions.csv`` or ``batch_predictions.csv``) as a pandas table, its
    probabilities as numbers, ``correct`` as booleans, and the ``loss`` of each image where the file
    has the true class's probability.

    Raises:
        FileNotFoundError: the file is not there.
        KeyError: it lacks a column (named).
    """
    import pandas as pd  # loaded with the first listing asked for

    table = pd.read_csv(path, dtype={"path": str, "label": str, "predicted": str, "top5": str, "correct": str},
                        keep_default_na=False)
    missing = [c for c in PREDICTION_COLUMNS if c not in table.columns]
    if missing:
        raise KeyError(f"{path}: no column {', '.join(missing)}")
    table["probability"] = pd.to_numeric(table["probability"], errors="coerce")
    table["correct"] = table["correct"].str.strip().str.lower() == "true"
    if "true_probability" in table.columns:
        true = pd.to_numeric(table["true_probability"], errors="coerce")
        # a probability of 0 in float32 is an infinite loss; shown as such, sorted first
        table["loss"] = [-math.log(p) if p > 0 else math.inf for p in true.fillna(-1.0)]
        table.loc[true.isna(), "loss"] = math.nan
    return table


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
        yield KeysFooter(compact=True)

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self._load()

    def _columns(self) -> tuple[tuple[str, str], ...]:
        return (("#", "n"), ("probability", "probability"), ("file", "path"))

    def _fetch(self) -> list[dict[str, Any]]:
        """The rows to list (in a worker thread; raises as :meth:`Predictions.table`)."""
        return self.predictions.pair(self.run, self.true, self.predicted)

    def _cells(self, n: int, row: dict[str, Any]) -> tuple[Text, ...]:
        # the file column fits the screen (no sideways scrolling), the scroll bar's columns left free (the app's
        # width: the screen's is 0 until laid out, and the rows can come first);
        # the ids differ at the end of the name
        width = max(20, self.app.size.width - 24)
        return (Text(str(n), justify="right"), Text(number(row["probability"], 3), justify="right"),
                Text(tail(printable(row["path"]), width)))

    def _caption(self, n: int, row: dict[str, Any], width: int) -> Text:
        caption = Text(no_wrap=True, overflow="ellipsis")
        caption.append(f"#{n} ", style="dim")
        caption.append(number(row["probability"], 3), style="bold")
        caption.append("\n" + tail(printable(Path(str(row["path"])).name), width), style="dim")
        return caption

    READING = "predictions.csv"
    """What the title says is being read until the rows come."""

    def _title(self) -> Text:
        """The heading, then what is being read or what went wrong."""
        text = self._heading()
        if self.rows is None and not self.error:
            text.append(f" · reading {self.READING}…", style="dim")
        if self.error:
            text.append("\n")
            text.append(printable(self.error), style="yellow")
        return text

    def _heading(self) -> Text:
        text = Text()
        text.append("true ", style="dim")
        text.append(f"{self.numbers[0] + 1} {printable(self.true)}", style="bold")
        text.append(" → predicted ", style="dim")
        text.append(f"{self.numbers[1] + 1} {printable(self.predicted)}", style="bold")
        if self.rows is not None:
            text.append(f" · {len(self.rows):,} test image{'s' if len(self.rows) != 1 else ''}")
        return text

    @work(thread=True, exclusive=True, name="read predictions", exit_on_error=False)
    def _load(self) -> None:
        try:
            rows = self._fetch()
            data_dir = Path(self.run.load_config().data.dir)
        except FileNotFoundError as exc:
            self.post_message(PairFailed(f"{exc.filename or self.run.evaluate_dir / 'predictions.csv'}: not there; "
                                         "the evaluate stage writes it"))
            return
        except (CarclfError, OSError, ValueError, KeyError) as exc:
            self.post_message(PairFailed(str(exc)))
            return
        self.post_message(PairLoaded(rows, data_dir))

    def on_pair_loaded(self, message: PairLoaded) -> None:
        self.rows, self.data_dir = message.rows, message.data_dir
        fill_table(self.query_one(DataTable), self._columns(),
                   ((self._cells(n, row), str(n - 1)) for n, row in enumerate(self.rows, start=1)))
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
            pictures.append(Picture(self.data_dir / str(row["path"]), self._caption(n, row, width)))
        strip.show(pictures)

    def on_worker_state_changed(self, event) -> None:
        report_worker_error(self, event)

    def action_close(self) -> None:
        self.dismiss()


def cut(name: str, width: int) -> str:
    """The start of ``name`` in ``width`` columns (``…`` last when cut): a class name reads from its make."""
    return name if len(name) <= width else name[: max(0, width - 1)] + "…"


class PredictionsScreen(PairScreen):
    """Test photos with their true class, predicted class and probability: the worst first (``l``,
    ``kind="losses"``: the loss is ``-log`` of the true class's probability; wrong labels and photos
    that are not cars show up here first) or the evaluate stage's first batch (``b``, ``kind="batch"``).
    Each card says ✓ or ✗, the prediction and its probability, and the true class."""

    TITLES = {"losses": "the test photos most wrong, worst first",
              "batch": "a batch of test photos with their predictions"}
    DEFAULT_CSS = """
    PredictionsScreen #pair-table {
        max-height: 30%;
    }
    """

    def __init__(self, run: RunDir, kind: str, predictions: Predictions, cache: ThumbnailCache) -> None:
        super().__init__(run, "", "", (0, 0), predictions, cache)
        self.kind = kind

    READING = "the predictions"

    def _heading(self) -> Text:
        text = Text(self.TITLES[self.kind], style="bold")
        if self.rows is not None:
            wrong = sum(1 for row in self.rows if not row["correct"])
            text.append(f" · {len(self.rows):,} shown, {wrong:,} wrong")
            if self.kind == "losses" and self.rows and "loss" not in self.rows[0]:
                text.append(" (a predictions.csv from before the true class's probability was kept: the wrong "
                            "ones, most confident first)", style="dim")
        return text

    def _fetch(self) -> list[dict[str, Any]]:
        return self.predictions.top_losses(self.run) if self.kind == "losses" else self.predictions.batch(self.run)

    def _columns(self) -> tuple[tuple[str, str], ...]:
        first = ("loss", "loss") if self.kind == "losses" else ("", "correct")
        return (("#", "n"), first, ("predicted", "predicted"), ("p", "probability"), ("true", "label"),
                ("file", "path"))

    def _cells(self, n: int, row: dict[str, Any]) -> tuple[Text, ...]:
        # laid out by width: the class names share what the number columns leave, the file the rest
        names = max(8, (self.app.size.width - 36) // 3)
        file = max(12, self.app.size.width - 30 - 2 * names)  # the scroll bar's columns left free
        mark = Text("✓", style="green") if row["correct"] else Text("✗", style="bold red")
        first = Text(number(row.get("loss"), 3), justify="right") if self.kind == "losses" else mark
        return (Text(str(n), justify="right"), first, Text(cut(printable(row["predicted"]), names)),
                Text(number(row["probability"], 2), justify="right"), Text(cut(printable(row["label"]), names)),
                Text(tail(printable(row["path"]), file)))

    def _caption(self, n: int, row: dict[str, Any], width: int) -> Text:
        caption = Text(no_wrap=True, overflow="ellipsis")
        caption.append("✓ " if row["correct"] else "✗ ", style="green" if row["correct"] else "bold red")
        caption.append(number(row["probability"], 2), style="bold")
        caption.append(" " + cut(printable(row["predicted"]), max(1, width - 7)))
        caption.append("\ntrue " + cut(printable(row["label"]), max(1, width - 5)), style="dim")
        return caption
