"""What a stage works with: :class:`StageContext` in, :class:`StageResult` out, :class:`StageCancelled`.

A stage is a function ``(StageContext) -> StageResult``. It reports only through ``ctx.emit`` and
polls ``ctx.check_cancelled()`` in its loops, so a SIGINT turns into a clean stop that keeps whatever
the stage already wrote. This module is cheap to import: stages, the registry and tests share it.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

from .cluster import Shard
from .config import Config
from .events import LogLine, Sink, StageProgress
from .runs import RunDir


class StageCancelled(Exception):
    """Raised inside a stage when a stop was requested; what the stage finished is kept."""


@dataclasses.dataclass
class StageResult:
    summary: str
    """One line for the stages panel."""
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Figures for ``state.json`` and the ``stage_finished`` event (JSON values)."""
    complete: bool = True
    """False when this runner did its share of the stage (a prefilter shard) but the stage is not
    finished: it stays running, and the runner that does the last share finishes it."""


@dataclasses.dataclass
class StageContext:
    config: Config
    run: RunDir
    emit: Sink
    cancel: threading.Event = dataclasses.field(default_factory=threading.Event)
    cancel_reason: str = "stop requested"
    stage: str = ""
    shard: Shard | None = None
    """This runner's share of a stage other runners share (``--shard I/N``); None: all of it."""

    def check_cancelled(self) -> None:
        if self.cancel.is_set():
            raise StageCancelled(self.cancel_reason)

    def is_cancelled(self) -> bool:
        return self.cancel.is_set()

    def log(self, level: str, message: str, file: str = "") -> None:
        self.emit(LogLine(level=level, message=message, stage=self.stage, file=file))

    def progress(self, done: int, total: int | None, started: float, skipped: int = 0, **info: Any) -> None:
        """Emit a StageProgress with the rate and ETA measured since the monotonic time ``started``.

        ``skipped`` units of ``done`` were not worked on since ``started`` (reused from an earlier,
        interrupted attempt), so they count as done but not towards the rate.
        """
        elapsed = max(time.monotonic() - started, 1e-9)
        rate = (done - skipped) / elapsed if done > skipped else None
        eta = (total - done) / rate if (rate and total) else None
        self.emit(StageProgress(stage=self.stage, done=done, total=total, rate=rate, eta_s=eta, info=info))

    def stage_dir(self, name: str | None = None) -> Path:
        return self.run.stage_dir(name or self.stage)
