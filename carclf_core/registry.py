"""The ordered stages as data, and the code that runs them: ``run_stage``, ``run_all``, ``pending_stages``.

Each stage is named by ``"module:function"`` and resolved with importlib only when it runs, so this
module is cheap to import: the dashboard reads the stage names from it without loading pandas, Keras
or TensorFlow.
"""

from __future__ import annotations

import dataclasses
import errno
import importlib
import os
import time
import traceback
from collections.abc import Callable, Sequence

from .errors import CarclfError
from .events import RunFinished, RunStarted, StageFailed, StageFinished, StageInterrupted, StageStarted
from .events import StageStatus as Status
from .pipeline import StageCancelled, StageContext, StageResult
from .runs import RunDir


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    title: str
    target: str
    """``"module:function"`` of the stage function, imported when the stage runs."""

    def resolve(self) -> Callable[[StageContext], StageResult]:
        module, _, function = self.target.partition(":")
        return getattr(importlib.import_module(module), function)


STAGES: tuple[Stage, ...] = (
    Stage("index", "Index images", "carclf_core.stages.index:run"),
    Stage("prefilter", "Prefilter non-car images", "carclf_core.stages.prefilter:run"),
    Stage("split", "Top-N classes and splits", "carclf_core.stages.split:run"),
    Stage("train", "Fine-tune", "carclf_core.stages.train:run"),
    Stage("evaluate", "Evaluate and export", "carclf_core.stages.evaluate:run"),
)
STAGE_BY_NAME = {s.name: s for s in STAGES}
STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)

_DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def failure_message(exc: BaseException) -> str:
    """One line for a failed stage: a CarclfError's own words, plain words for a full disk."""
    if isinstance(exc, CarclfError):
        return str(exc)
    if isinstance(exc, ModuleNotFoundError) and exc.name == "tensorflow":
        return (
            "TensorFlow is not installed: pip install -e '.[cpu]' (or '.[gpu]' on a GPU machine); the "
            "dashboard runs without it, this stage does not"
        )
    cause: BaseException | None = exc
    while cause is not None:  # Keras and h5py wrap the OSError of a failed write
        if isinstance(cause, OSError) and cause.errno in _DISK_FULL:
            where = f" writing {cause.filename}" if cause.filename else ""
            return (
                f"disk full{where} ({cause.strerror}); files written before are intact, free space and resume the run"
            )
        cause = cause.__cause__ or cause.__context__
    text = str(exc)
    if any(marker in text for marker in ("No space left", "File too large", "errno = 28", "errno = 27")):
        return f"disk full ({text}); files written before are intact, free space and resume the run"
    return f"{type(exc).__name__}: {exc}"


def run_stage(ctx: StageContext, name: str) -> Status:
    """Run one stage, recording its outcome in events and ``state.json``.

    Returns:
        DONE, FAILED or INTERRUPTED.
    """
    stage = STAGE_BY_NAME[name]
    ctx.stage = name
    started = time.monotonic()
    ctx.run.update_stage_state(name, status=Status.RUNNING, started=time.time())
    ctx.emit(StageStarted(stage=name))
    try:
        result = stage.resolve()(ctx)
    except (StageCancelled, KeyboardInterrupt) as exc:
        reason = str(exc) or ctx.cancel_reason
        ctx.emit(StageInterrupted(stage=name, reason=reason))
        ctx.run.update_stage_state(name, status=Status.INTERRUPTED, finished=time.time(), summary=reason)
        return Status.INTERRUPTED
    except Exception as exc:  # a stage failure is reported, never re-raised into the runner
        message = failure_message(exc)
        ctx.emit(StageFailed(stage=name, error=message, traceback=traceback.format_exc()))
        ctx.run.update_stage_state(name, status=Status.FAILED, finished=time.time(), summary=message)
        return Status.FAILED
    duration = time.monotonic() - started
    ctx.emit(StageFinished(stage=name, duration_s=duration, summary=result.summary, result=result.data))
    ctx.run.update_stage_state(
        name, status=Status.DONE, finished=time.time(), duration_s=duration, summary=result.summary, result=result.data
    )
    return Status.DONE


def pending_stages(run: RunDir) -> list[str]:
    """Stages of ``run`` from the first one not done, in order: what ``--resume`` runs."""
    state = run.read_state().get("stages", {})
    for i, name in enumerate(STAGE_NAMES):
        if state.get(name, {}).get("status") != Status.DONE:
            return list(STAGE_NAMES[i:])
    return []


def run_all(ctx: StageContext, names: Sequence[str] | None = None) -> Status:
    """Run ``names`` (default: every stage) in order, stopping at the first that does not finish.

    Returns:
        DONE, FAILED or INTERRUPTED for the run as a whole.
    """
    names = list(names) if names is not None else list(STAGE_NAMES)
    ctx.emit(RunStarted(run_dir=str(ctx.run.path), stages=tuple(names), pid=os.getpid()))
    status = Status.DONE
    for name in names:
        status = run_stage(ctx, name)
        if status != Status.DONE:
            break
    ctx.emit(RunFinished(status=status))
    return status
