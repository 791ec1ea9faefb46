"""Headless console renderer: one event sink that draws rich progress on a terminal and plain,
throttled lines when output goes to a file (nohup, cron, CI).

Every line it writes goes through :func:`carclf_core.display.printable` and is printed as a Rich
``Text`` (never as markup, never with emoji codes replaced): file names, paths and messages can hold
escape sequences and newlines, and this output is also ``runner.log``, which the dashboard shows.
Numbers may be NaN or infinite (a diverging training) and are shown as such. The sink never raises
into the stage that emits: an event it cannot show costs one line saying so.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from typing import IO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from carclf_core import heatmap
from carclf_core.display import number, printable
from carclf_core.events import (
    BatchEnded,
    ConfigChanged,
    ConfusionReady,
    EpochEnded,
    Event,
    LogLine,
    PatienceChanged,
    RunFinished,
    RunStarted,
    StageFailed,
    StageFinished,
    StageInterrupted,
    StageProgress,
    StagesStale,
    StageStarted,
)

PLAIN_INTERVAL_S = 5.0
MAX_WARNINGS_SHOWN = 5


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if not math.isfinite(seconds):
        return number(seconds)
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _rate(value: float | None, unit: str) -> str:
    """``1,356 img/s`` (``unit`` " img/s"); empty for none or zero, ``NaN img/s`` / ``inf img/s`` as such."""
    if not value:
        return ""
    return f"{value:,.0f}{unit}" if math.isfinite(value) else f"{number(value)}{unit}"


class ConsoleRenderer:
    """Event sink for ``--run-all``; call :meth:`close` at the end for the summary."""

    def __init__(self, stream: IO[str] | None = None, interactive: bool | None = None):
        self.stream = stream or sys.stdout
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.console = Console(file=self.stream, force_terminal=self.interactive or None,
                               highlight=False, soft_wrap=True)
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.last_plain = 0.0
        self.warnings: dict[str, int] = {}
        self.results: list[tuple[str, str, str]] = []
        self.run_dir = ""
        self.reported_stale: dict[str, str] = {}

    # --- output helpers --------------------------------------------------------------------------
    def note(self, text: str) -> None:
        """One line of the caller's own (made display-safe like every other)."""
        self._line(text)

    def _line(self, text: str) -> None:
        line = Text(printable(text))
        if self.progress is not None:
            self.progress.console.print(line)
        else:
            self.console.print(line)

    def _stop_bar(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
            self.task = None

    def _start_bar(self, stage: str, total: int | None) -> None:
        self._stop_bar()
        if not self.interactive:
            return
        self.progress = Progress(TextColumn("{task.description}", style="bold", markup=False), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[rate]}", markup=False),
                                 TimeRemainingColumn(), TextColumn("{task.fields[info]}", markup=False),
                                 console=self.console, transient=True)
        self.progress.start()
        self.task = self.progress.add_task(printable(stage), total=total, rate="", info="")

    def _throttled(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last_plain >= PLAIN_INTERVAL_S:
            self.last_plain = now
            self._line(text)

    # --- the sink --------------------------------------------------------------------------------
    def __call__(self, event: Event) -> None:
        try:
            self._show(event)
        except Exception as exc:  # the monitor never fails the stage it watches
            with contextlib.suppress(Exception):  # not even when the console cannot write at all
                self._stop_bar()
                self._line(f"  (console: cannot show a {event.kind} event: {type(exc).__name__}: {exc})")

    def _show(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.run_dir = event.run_dir
            self._line(f"run {event.run_dir}: {', '.join(event.stages)}")
        elif isinstance(event, StageStarted):
            self._line(f"[{event.stage}] started")
            self._start_bar(event.stage, event.total)
        elif isinstance(event, StageProgress):
            self._progress(event)
        elif isinstance(event, BatchEnded):
            if self.progress is not None and self.task is not None:
                self.progress.update(self.task, completed=event.step, total=event.steps,
                                     description=f"train epoch {event.epoch}", rate=_rate(event.images_per_s, " img/s"),
                                     info=f"loss {number(event.loss, 3)}")
        elif isinstance(event, EpochEnded):
            self._line(self._epoch_text(event))
        elif isinstance(event, PatienceChanged):
            if event.wait:
                self._line(f"  early stopping: {event.wait}/{event.patience} epochs without a better "
                           f"{event.monitor} (best {number(event.best)} at epoch {event.best_epoch or '-'})")
        elif isinstance(event, ConfusionReady):
            if event.split == "test":
                self._confusion(event)
        elif isinstance(event, LogLine):
            self._log(event)
        elif isinstance(event, StagesStale):
            for stage, reason in event.stale.items():
                if stage not in self.reported_stale or self.reported_stale[stage] != reason:
                    self._line(f"[{stage}] stale: {reason}")
            self.reported_stale = dict(event.stale)
        elif isinstance(event, ConfigChanged):
            changed = ", ".join(f"{key} {old} -> {new}" for key, (old, new) in event.changes.items())
            self._line(f"config changed ({event.source}): {changed}")
        elif isinstance(event, StageFinished):
            self._stop_bar()
            self.results.append((event.stage, "done", event.summary))
            self._line(f"[{event.stage}] done in {event.duration_s:.1f}s: {event.summary}")
        elif isinstance(event, StageFailed):
            self._stop_bar()
            self.results.append((event.stage, "failed", event.error))
            self._line(f"[{event.stage}] FAILED: {event.error}")
        elif isinstance(event, StageInterrupted):
            self._stop_bar()
            self.results.append((event.stage, "interrupted", event.reason))
            self._line(f"[{event.stage}] interrupted ({event.reason}); finished work is kept")
        elif isinstance(event, RunFinished):
            self._stop_bar()

    def _progress(self, event: StageProgress) -> None:
        info = printable(", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}"
                                   for k, v in event.info.items() if isinstance(v, (int, float, str))))
        rate = _rate(event.rate, "/s")
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, completed=event.done, total=event.total, rate=rate, info=info)
        else:
            total = f"/{event.total:,}" if event.total else ""
            done = event.total is not None and event.done >= event.total
            self._throttled(f"[{event.stage}] {event.done:,}{total} {rate} eta {_fmt_eta(event.eta_s)} {info}".rstrip(),
                            force=done)

    @staticmethod
    def _epoch_text(event: EpochEnded) -> str:
        m = event.metrics
        parts = [f"epoch {event.epoch}/{event.epochs}"]
        for key, label in (("loss", "loss"), ("categorical_accuracy", "acc"), ("val_loss", "val_loss"),
                           ("val_categorical_accuracy", "val_acc")):
            if key in m:
                parts.append(f"{label} {number(m[key])}")
        if event.images_per_s:
            parts.append(_rate(event.images_per_s, " img/s"))
        parts.append(f"{event.duration_s:.1f}s")
        return "  " + "  ".join(parts)

    def _confusion(self, event: ConfusionReady) -> None:
        """The test split's confusion matrix as an ASCII heatmap (the per-epoch validation ones are
        left to the dashboard: one a epoch would flood a log)."""
        width = max(min(self.console.width, 120), 40)
        self._line(f"  test confusion matrix ({event.sample} images):")
        # names escaped before the layout, so the axis measures what is printed
        classes = [printable(name) for name in event.classes]
        for line in heatmap.render(event.counts(), classes, width - 2, 40):
            self._line("  " + line)

    def _log(self, event: LogLine) -> None:
        if event.level == "debug":  # for the log file (events.jsonl) and the dashboard's log tab only
            return
        if event.level == "info":
            self._line(f"  {event.message}")
            return
        key = f"{event.stage}:{event.level}"
        count = self.warnings.get(key, 0) + 1
        self.warnings[key] = count
        where = f" ({event.file})" if event.file else ""
        if count <= MAX_WARNINGS_SHOWN or event.level == "error":
            self._line(f"  {event.level}: {event.message}{where}")
        elif count == MAX_WARNINGS_SHOWN + 1:
            self._line(f"  ... more {event.stage} warnings in events.jsonl")

    def close(self) -> None:
        """Stop any bar and print the run's summary table; a console that cannot write it costs the
        table, never the runner's exit status or its state."""
        try:
            self._summary()
        except Exception as exc:
            with contextlib.suppress(Exception):
                print(printable(f"(console: cannot show the summary: {type(exc).__name__}: {exc})"), file=sys.stderr)

    def _summary(self) -> None:
        self._stop_bar()
        if not self.results:
            return
        # Text everywhere: a str title or cell is parsed as markup, and a summary holds paths
        table = Table(title=Text(printable(f"carclf run {self.run_dir}")), show_lines=False)
        table.add_column("stage")
        table.add_column("status")
        table.add_column("result")
        for stage, status, text in self.results:
            table.add_row(Text(printable(stage)), Text(printable(status)), Text(printable(text)))
        self.console.print(table)
