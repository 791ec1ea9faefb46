"""The ordered stages of a run and the code that runs them: ``run_stage`` and ``run_all``.

A stage is a function ``(StageContext) -> StageResult``. It reports only through ``ctx.emit`` and
polls ``ctx.check_cancelled()`` in its loops, so a SIGINT turns into a clean stop that keeps whatever
the stage already wrote. Heavy modules (TensorFlow, Keras) are imported inside the stage functions.
"""

from __future__ import annotations

import dataclasses
import errno
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from . import dataset
from .config import Config
from .events import (LogLine, RunFinished, RunStarted, Sink, StageFailed, StageFinished, StageInterrupted,
                     StageProgress, StageStarted)
from .runs import RunDir, atomic_path, write_json_atomic


class StageCancelled(Exception):
    """Raised inside a stage when a stop was requested; what the stage finished is kept."""


class StageError(RuntimeError):
    """A stage cannot run; the message says what to do (missing input, bad data, offline weights)."""


@dataclasses.dataclass
class StageResult:
    summary: str
    """One line for the stages panel."""
    data: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class StageContext:
    config: Config
    run: RunDir
    emit: Sink
    cancel: threading.Event = dataclasses.field(default_factory=threading.Event)
    cancel_reason: str = "stop requested"
    stage: str = ""

    def check_cancelled(self) -> None:
        if self.cancel.is_set():
            raise StageCancelled(self.cancel_reason)

    def is_cancelled(self) -> bool:
        return self.cancel.is_set()

    def log(self, level: str, message: str, file: str = "") -> None:
        self.emit(LogLine(level=level, message=message, stage=self.stage, file=file))

    def progress(self, done: int, total: int | None, started: float, **info: Any) -> None:
        elapsed = max(time.monotonic() - started, 1e-9)
        rate = done / elapsed if done else None
        eta = (total - done) / rate if (rate and total) else None
        self.emit(StageProgress(stage=self.stage, done=done, total=total, rate=rate, eta_s=eta, info=info))

    def stage_dir(self, name: str | None = None) -> Path:
        return self.run.stage_dir(name or self.stage)


# --- the stages ----------------------------------------------------------------------------------

def run_index(ctx: StageContext) -> StageResult:
    cfg = ctx.config.data
    started = time.monotonic()
    try:
        frame = dataset.build_index(cfg, progress=lambda done, total: ctx.progress(done, total, started),
                                    cancelled=ctx.is_cancelled)
    except dataset.DatasetError as exc:
        raise StageError(str(exc)) from exc
    ctx.check_cancelled()
    out = ctx.stage_dir()
    with atomic_path(out / "index.csv") as tmp:
        frame.to_csv(tmp, index=False)
    counts = dataset.class_counts(frame)
    with atomic_path(out / "class_counts.csv") as tmp:
        counts.to_csv(tmp, index=False)
    for label, others in dataset.case_variants(frame).items():
        ctx.log("warning", f"class names differing only in case merged into {label!r}: {', '.join(others)}")
    rejected = frame[frame["status"] == dataset.REJECTED]
    for row in rejected.itertuples():
        ctx.log("warning", f"rejected: {row.reason}", file=row.path)
    usable = len(frame) - len(rejected)
    if usable == 0:
        raise StageError(f"data.dir: no usable images in {cfg.dir} ({len(frame)} files, all rejected)")
    summary = f"{usable:,} images in {len(counts):,} classes, {len(rejected):,} rejected"
    return StageResult(summary, {"images": usable, "classes": len(counts), "rejected": len(rejected),
                                 "files": len(frame)})


def load_index(run: RunDir) -> pd.DataFrame:
    path = run.path / "index" / "index.csv"
    if not path.is_file():
        raise StageError(f"{path}: missing; run the index stage first")
    return pd.read_csv(path, dtype={"path": str, "label": str, "reason": str}, keep_default_na=False)


def usable_images(run: RunDir, config: Config) -> pd.DataFrame:
    """Index rows the later stages may use: checked ok, and kept by the prefilter when it filters."""
    index = load_index(run)
    usable = index[index["status"] == dataset.OK]
    kept_path = run.path / "prefilter" / "kept.csv"
    if config.prefilter.mode == "filter" and kept_path.is_file():
        kept = set(pd.read_csv(kept_path, dtype={"path": str}, keep_default_na=False)["path"])
        usable = usable[usable["path"].isin(kept)]
    return usable


def run_prefilter(ctx: StageContext) -> StageResult:
    from . import prefilter  # imports TensorFlow only when a model has to run

    return prefilter.run(ctx)


def run_split(ctx: StageContext) -> StageResult:
    cfg = ctx.config.split
    usable = usable_images(ctx.run, ctx.config)
    counts = dataset.class_counts(usable.assign(status=dataset.OK))
    classes = dataset.select_classes(counts, cfg.top_n, cfg.min_per_class)
    small = counts[counts["count"] < cfg.min_per_class]
    for row in small.itertuples():
        ctx.log("warning", f"class {row.label!r} dropped: {row.count} images < split.min_per_class "
                           f"{cfg.min_per_class}")
    if len(classes) < 2:
        raise StageError(f"split: {len(classes)} class(es) left after filtering (need at least 2); "
                         f"lower split.min_per_class or add images")
    try:
        splits = dataset.stratified_split(usable, classes, cfg)
    except dataset.DatasetError as exc:
        raise StageError(str(exc)) from exc
    out = ctx.stage_dir()
    with atomic_path(out / "splits.csv") as tmp:
        splits.to_csv(tmp, index=False)
    write_json_atomic(out / "classes.json", list(classes))
    sizes = splits["split"].value_counts().to_dict()
    summary = (f"{len(classes)} classes: {sizes.get('train', 0):,} train / {sizes.get('val', 0):,} val / "
               f"{sizes.get('test', 0):,} test")
    return StageResult(summary, {"classes": len(classes), **{k: int(v) for k, v in sizes.items()}})


def run_train(ctx: StageContext) -> StageResult:
    from . import train  # Keras and TensorFlow are imported only when training runs

    return train.run(ctx)


def run_evaluate(ctx: StageContext) -> StageResult:
    from . import evaluate

    return evaluate.run(ctx)


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    title: str
    func: Callable[[StageContext], StageResult]


STAGES: tuple[Stage, ...] = (
    Stage("index", "Index images", run_index),
    Stage("prefilter", "Prefilter non-car images", run_prefilter),
    Stage("split", "Top-N classes and splits", run_split),
    Stage("train", "Fine-tune", run_train),
    Stage("evaluate", "Evaluate and export", run_evaluate),
)
STAGE_BY_NAME = {s.name: s for s in STAGES}


def stage_names() -> tuple[str, ...]:
    return tuple(s.name for s in STAGES)


# --- running -------------------------------------------------------------------------------------

_DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def failure_message(exc: BaseException) -> str:
    """One line for a failed stage: a StageError's own words, plain words for a full disk."""
    if isinstance(exc, StageError):
        return str(exc)
    if isinstance(exc, ModuleNotFoundError) and exc.name == "tensorflow":
        return ("TensorFlow is not installed: pip install -e '.[cpu]' (or '.[gpu]' on a GPU machine); the "
                "dashboard runs without it, this stage does not")
    cause: BaseException | None = exc
    while cause is not None:  # Keras and h5py wrap the OSError of a failed write
        if isinstance(cause, OSError) and cause.errno in _DISK_FULL:
            where = f" writing {cause.filename}" if cause.filename else ""
            return (f"disk full{where} ({cause.strerror}); files written before are intact, free space "
                    f"and resume the run")
        cause = cause.__cause__ or cause.__context__
    text = str(exc)
    if any(marker in text for marker in ("No space left", "File too large", "errno = 28", "errno = 27")):
        return f"disk full ({text}); files written before are intact, free space and resume the run"
    return f"{type(exc).__name__}: {exc}"


def run_stage(ctx: StageContext, name: str) -> str:
    """Run one stage, recording its outcome in events and ``state.json``.

    Returns:
        ``done``, ``failed`` or ``interrupted``.
    """
    stage = STAGE_BY_NAME[name]
    ctx.stage = name
    started_wall = time.time()
    started = time.monotonic()
    ctx.run.update_stage_state(name, status="running", started=started_wall)
    ctx.emit(StageStarted(stage=name))
    try:
        result = stage.func(ctx)
    except (StageCancelled, KeyboardInterrupt) as exc:
        reason = str(exc) or ctx.cancel_reason
        ctx.emit(StageInterrupted(stage=name, reason=reason))
        ctx.run.update_stage_state(name, status="interrupted", finished=time.time(), summary=reason)
        return "interrupted"
    except Exception as exc:  # a stage failure is reported, never re-raised into the runner
        message = failure_message(exc)
        ctx.emit(StageFailed(stage=name, error=message, traceback=traceback.format_exc()))
        ctx.run.update_stage_state(name, status="failed", finished=time.time(), summary=message)
        return "failed"
    duration = time.monotonic() - started
    ctx.emit(StageFinished(stage=name, duration_s=duration, summary=result.summary, result=result.data))
    ctx.run.update_stage_state(name, status="done", finished=time.time(), duration_s=duration,
                               summary=result.summary, result=result.data)
    return "done"


def pending_stages(run: RunDir) -> list[str]:
    """Stages of ``run`` not yet done, in order: what ``--resume`` runs."""
    state = run.read_state().get("stages", {})
    names = list(stage_names())
    for i, name in enumerate(names):
        if state.get(name, {}).get("status") != "done":
            return names[i:]
    return []


def run_all(ctx: StageContext, names: Sequence[str] | None = None) -> str:
    """Run ``names`` (default: every stage) in order, stopping at the first that does not finish.

    Returns:
        ``done``, ``failed`` or ``interrupted`` for the run as a whole.
    """
    import os

    names = list(names) if names is not None else list(stage_names())
    ctx.emit(RunStarted(run_dir=str(ctx.run.path), stages=tuple(names), pid=os.getpid()))
    status = "done"
    for name in names:
        status = run_stage(ctx, name)
        if status != "done":
            break
    ctx.emit(RunFinished(status=status))
    return status
