"""The ordered stages as data, and the code that runs them: ``run_stage``, ``run_all``, ``pending_stages``.

Each stage is named by ``"module:function"`` and resolved with importlib only when it runs, so this
module is cheap to import: the dashboard reads the stage names from it without loading pandas, Keras
or TensorFlow. What each stage reads and makes (its lineage, from which a finished stage is known to
be fresh or stale) is declared beside the provenance code, :data:`carclf_core.provenance.LINEAGES`.
"""

from __future__ import annotations

import dataclasses
import errno
import importlib
import math
import os
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from .config import Config
from .errors import CarclfError
from .events import (
    RunFinished,
    RunStarted,
    StageFailed,
    StageFinished,
    StageInterrupted,
    StagesStale,
    StageStarted,
    StageUpdated,
)
from .events import StageStatus as Status
from .pipeline import StageCancelled, StageContext, StageResult
from .provenance import LINEAGES, provenance_fields, staleness
from .runs import PREVIOUS_DIR, REPLACING, RunDir


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    title: str
    target: str
    """``"module:function"`` of the stage function, imported when the stage runs."""
    set_aside: bool = True
    """Re-running the stage when it is done first moves its folder to ``previous/``, so it starts
    fresh and nothing is lost. The prefilter does not: its score chunks are keyed by the model that
    made them and are reused, and its decision files are rewritten atomically."""

    def resolve(self) -> Callable[[StageContext], StageResult]:
        module, _, function = self.target.partition(":")
        return getattr(importlib.import_module(module), function)


STAGES: tuple[Stage, ...] = (
    Stage("index", "Index images", "carclf_core.stages.index:run"),
    Stage("prefilter", "Prefilter non-car images", "carclf_core.stages.prefilter:run", set_aside=False),
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


def stale_stages(run: RunDir, config: Config) -> dict[str, str]:
    """Finished stages of ``run`` whose inputs changed since they were made -> why."""
    return staleness(run, config)


def run_stage(ctx: StageContext, name: str, owner: bool = True) -> Status:
    """Run one stage, recording its outcome and provenance in events and ``state.json``.

    A stage that is done already starts fresh: its earlier results are set aside under
    ``previous/`` first (see :attr:`Stage.set_aside`). Any other stage continues what it finished
    (chunks, epochs).

    Args:
        ctx: the stage context.
        name: the stage.
        owner: False for a helper of the runner that owns the run (a training worker on another
            machine): the outcome is only emitted (to the helper's own log); nothing is set aside and
            nothing goes to ``state.json``.

    Returns:
        DONE, FAILED or INTERRUPTED; RUNNING when this runner did its share of the stage (a shard)
        and others still work on theirs.
    """
    stage = STAGE_BY_NAME[name]
    ctx.stage = name
    state = ctx.run.update_stage_state if owner else (lambda stage, **fields: None)
    stages = ctx.run.read_state().get("stages", {}) if owner else {}
    before = stages.get(name, {})
    done_before = before.get("status") == Status.DONE
    if owner:
        # an upstream stage never run is left to the stage to find (it says what it misses)
        unfinished = [up for up in LINEAGES[name].upstream if stages.get(up, {}).get("status", "done") != Status.DONE]
        if unfinished:
            # before anything is set aside: a stage whose inputs are not whole must not move its results away
            up = unfinished[0]
            ctx.log(
                "error",
                f"{name} not started: it reads the results of {up}, which is {stages[up]['status']}; "
                f"carclf-tui --resume {ctx.run.path} runs what is left, in order",
            )
            return Status.FAILED
        if stage.set_aside:
            _start_fresh(ctx, name, before)
    # A stage that continues a stopped or failed attempt (epochs, chunks) reports its whole time:
    # what the attempts before it spent is kept in state.json as ``spent_s`` and carried on.
    spent = 0.0 if done_before else _seconds(before.get("spent_s"))
    started = time.monotonic()
    state(name, status=Status.RUNNING, started=time.time(), spent_s=spent)
    ctx.emit(StageStarted(stage=name, spent_s=spent))
    try:
        result = stage.resolve()(ctx)
    except (StageCancelled, KeyboardInterrupt) as exc:
        reason = str(exc) or ctx.cancel_reason
        ctx.emit(StageInterrupted(stage=name, reason=reason))
        spent += time.monotonic() - started
        state(name, status=Status.INTERRUPTED, finished=time.time(), summary=reason, spent_s=spent, duration_s=spent)
        return Status.INTERRUPTED
    except Exception as exc:  # a stage failure is reported, never re-raised into the runner
        message = failure_message(exc)
        # A CarclfError is a known failure whose message names the file or key and what to do: its
        # traceback is noise in the dashboard's detail panel. Anything else is a bug: keep the trace.
        trace = "" if isinstance(exc, CarclfError) else traceback.format_exc()
        ctx.emit(StageFailed(stage=name, error=message, traceback=trace))
        spent += time.monotonic() - started
        state(name, status=Status.FAILED, finished=time.time(), summary=message, spent_s=spent, duration_s=spent)
        return Status.FAILED
    if not result.complete:
        # state.json keeps "running": a runner that finished its share must not overwrite what the
        # one finishing the stage writes at the same time
        ctx.emit(StageUpdated(stage=name, summary=result.summary, result=result.data))
        return Status.RUNNING
    duration = spent + time.monotonic() - started
    ctx.emit(StageFinished(stage=name, duration_s=duration, summary=result.summary, result=result.data))
    # done and what it was made from in one write: never a done stage without its record
    made = (
        provenance_fields(ctx.run, name, ctx.config, result.summary, ctx.run.read_state().get("stages", {}))
        if owner
        else {}
    )
    state(
        name,
        drop=(REPLACING,),
        status=Status.DONE,
        finished=time.time(),
        duration_s=duration,
        summary=result.summary,
        result=result.data,
        **made,
    )
    return Status.DONE


def _start_fresh(ctx: StageContext, name: str, entry: dict) -> None:
    """Set a done stage's results aside under ``previous/`` so it starts fresh; or finish that for a
    stage whose re-run was cut short between its mark and the move.

    The mark comes first: ``state.json`` says the stage runs (not done) and where its results go,
    then the folder moves. Cut short between the two (a kill, a full disk), the run has a stage that
    is not done and still holds its old folder, which the next start moves as marked; never a stage
    that says done without its folder. The earlier results stay whole under ``previous/``.
    """
    run = ctx.run
    folder = run.path / name
    if entry.get("status") == Status.DONE:
        marked: dict = {"status": Status.RUNNING, "started": time.time()}
        target = run.previous_path(name) if folder.is_dir() and any(folder.iterdir()) else None
        if target is not None:
            marked[REPLACING] = os.path.relpath(target, run.path)
        run.replace_stage_state(name, marked)
    else:
        marked_target = entry.get(REPLACING)
        if not isinstance(marked_target, str):
            return
        parts = Path(marked_target).parts
        # state.json is a file from outside: only ever a name under previous/
        if len(parts) != 2 or parts[0] != PREVIOUS_DIR or parts[1] in ("..", "."):
            return
        target = run.path / marked_target
        if target.exists() or target.is_symlink():
            return
    if target is None:
        return
    kept = run.set_aside(name, target)
    if kept is not None:
        ctx.log("info", f"{name} was done: starting it fresh; its earlier results are kept in {kept}")


def _seconds(value: object) -> float:
    """A duration read back from ``state.json`` (anyone may have edited it): 0 unless a finite, non-negative number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return 0.0
    return float(value)


def pending_stages(run: RunDir, config: Config | None = None) -> list[str]:
    """What ``--resume`` brings up to date, in order: stages not done, and done stages gone stale.

    Stages after one of these are listed too: whether they still need running is known only once
    it has run (:func:`run_all` with ``skip_fresh`` passes over those that stayed fresh).
    """
    state = run.read_state().get("stages", {})
    stale = stale_stages(run, config or run.load_config())
    for i, name in enumerate(STAGE_NAMES):
        if state.get(name, {}).get("status") != Status.DONE or name in stale:
            return list(STAGE_NAMES[i:])
    return []


def run_all(ctx: StageContext, names: Sequence[str] | None = None, skip_fresh: bool = False) -> Status:
    """Run ``names`` (default: every stage) in order, stopping at the first that does not finish.

    Args:
        ctx: the stage context (config, run, sink, cancel flag).
        names: the stages to run; a done stage among them is run again from scratch.
        skip_fresh: pass over stages that are done and not stale when their turn comes (``--resume``
            bringing a run up to date re-runs only what its changed inputs reach).

    Returns:
        DONE, FAILED or INTERRUPTED for the run as a whole; RUNNING when this runner did its share
        of a stage that other runners finish (its run goes on there, so no RunFinished).
    """
    names = list(names) if names is not None else list(STAGE_NAMES)
    ctx.emit(RunStarted(run_dir=str(ctx.run.path), stages=tuple(names), pid=os.getpid()))
    stale = stale_stages(ctx.run, ctx.config)
    ctx.emit(StagesStale(stale=stale))
    status = Status.DONE
    for name in names:
        done = ctx.run.read_state().get("stages", {}).get(name, {}).get("status") == Status.DONE
        if skip_fresh and done and name not in stale:
            ctx.log("info", f"{name}: up to date, not run again")
            continue
        status = run_stage(ctx, name)
        if status != Status.DONE:
            break
        stale = stale_stages(ctx.run, ctx.config)
        ctx.emit(StagesStale(stale=stale))
    if status != Status.RUNNING:
        ctx.emit(RunFinished(status=status))
    return status
