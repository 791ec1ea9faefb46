"""The run state: what the event stream says about a run, folded by a pure reducer.

``apply(state, event) -> state`` returns a new state and never changes its argument, so a reader can
keep the state it was handed while a follower folds newer events. Folding a whole log one ``apply`` at
a time would copy the state once per event; :func:`fold` copies it once per chunk instead, which is what
makes replaying 100 epochs x 1,000 batch events take a fraction of a second.

Every history here is bounded: all epoch rows (one per epoch), the current epoch's batch curve
(decimated to at most :data:`BATCH_POINTS` points, so the whole epoch stays visible), the last
:data:`LOG_LINES` log lines. Memory does not grow with the number of batch events.

The dashboard, the tests and any later analysis use this module; it imports no UI.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from . import events as ev

BATCH_POINTS = 256
"""Most batch points kept for the current epoch's curve; older points are thinned, not dropped."""
LOG_LINES = 2000
"""Most log lines kept (the full log stays in ``events.jsonl``)."""

STALE = ev.StageStatus.STALE
PENDING, RUNNING, DONE, FAILED, INTERRUPTED = (
    ev.StageStatus.PENDING,
    ev.StageStatus.RUNNING,
    ev.StageStatus.DONE,
    ev.StageStatus.FAILED,
    ev.StageStatus.INTERRUPTED,
)


@dataclasses.dataclass
class StageState:
    """One stage as the events describe it."""

    name: str
    status: str = PENDING
    started: float | None = None
    """Wall-clock start (event time), seconds since the epoch."""
    finished: float | None = None
    duration_s: float | None = None
    summary: str = ""
    """The one-line result, or the error or the reason it stopped."""
    done: int = 0
    total: int | None = None
    rate: float | None = None
    eta_s: float | None = None
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    error: str = ""
    traceback: str = ""
    stale_reason: str = ""
    """Why a done stage is stale (its inputs changed since it was made); empty when it is not."""


@dataclasses.dataclass
class EpochRow:
    """One finished epoch."""

    epoch: int
    epochs: int
    metrics: dict[str, float]
    learning_rate: float | None
    duration_s: float
    images_per_s: float | None
    eta_s: float | None


@dataclasses.dataclass
class BatchCurve:
    """The current epoch's batch curve, thinned to at most :data:`BATCH_POINTS` points.

    Points are kept every ``stride`` steps; when the list fills up every other point is dropped and
    the stride doubles, so the curve always spans the whole epoch at a bounded resolution.
    """

    epoch: int = 0
    steps: list[int] = dataclasses.field(default_factory=list)
    loss: list[float] = dataclasses.field(default_factory=list)
    accuracy: list[float | None] = dataclasses.field(default_factory=list)
    stride: int = 1
    last_step: int = 0
    total_steps: int | None = None
    images_per_s: float | None = None
    eta_s: float | None = None

    def add(self, step: int, loss: float, accuracy: float | None) -> None:
        self.last_step = step
        if self.steps and step - self.steps[-1] < self.stride:
            return
        self.steps.append(step)
        self.loss.append(loss)
        self.accuracy.append(accuracy)
        if len(self.steps) >= BATCH_POINTS:
            self.steps, self.loss, self.accuracy = self.steps[::2], self.loss[::2], self.accuracy[::2]
            self.stride *= 2


@dataclasses.dataclass
class Patience:
    """Keras EarlyStopping's own counters, as the last PatienceChanged event reported them."""

    epoch: int
    wait: int
    patience: int
    best: float | None
    best_epoch: int | None
    monitor: str

    @property
    def stop_after(self) -> int:
        """The epoch after which training stops if the monitored value does not improve."""
        return self.epoch + self.patience - self.wait


@dataclasses.dataclass
class Confusion:
    epoch: int
    classes: tuple[str, ...]
    matrix: tuple[tuple[int, ...], ...]
    split: str
    sample: int


@dataclasses.dataclass
class PrefilterView:
    """What the prefilter stage reported: histogram, examples, kept counts."""

    edges: tuple[float, ...] = ()
    counts: tuple[int, ...] = ()
    threshold: float | None = None
    kept: int | None = None
    scored: int | None = None
    kept_examples: tuple[tuple[str, float], ...] = ()
    rejected_examples: tuple[tuple[str, float], ...] = ()


@dataclasses.dataclass
class LogEntry:
    t: float
    level: str
    message: str
    stage: str = ""
    file: str = ""


@dataclasses.dataclass
class RunState:
    """Everything the dashboard shows about one run.

    ``revision`` counts applied events, and each section has its own counter so a view redraws only
    what changed (``rev_stages``, ``rev_training``, ``rev_prefilter``, ``rev_log``).
    """

    stage_order: list[str] = dataclasses.field(default_factory=list)
    stages: dict[str, StageState] = dataclasses.field(default_factory=dict)
    run_status: str = PENDING
    """`pending` (nothing ran yet), `running`, `done`, `failed` or `interrupted`."""
    run_dir: str = ""
    runner_pid: int = 0
    current_stage: str = ""
    # training
    epoch: int = 0
    epochs: int = 0
    phase: str = ""
    epoch_rows: list[EpochRow] = dataclasses.field(default_factory=list)
    batch: BatchCurve = dataclasses.field(default_factory=BatchCurve)
    patience: Patience | None = None
    confusion: Confusion | None = None
    # prefilter
    prefilter: PrefilterView = dataclasses.field(default_factory=PrefilterView)
    # log
    log: deque[LogEntry] = dataclasses.field(default_factory=lambda: deque(maxlen=LOG_LINES))
    log_total: int = 0
    """Log lines ever appended (the deque keeps the last :data:`LOG_LINES`); views use it to append only new ones."""
    warnings: int = 0
    errors: int = 0
    bad_lines: int = 0
    """Lines the reader skipped in ``events.jsonl``: not JSON, not a valid event, or too long."""
    fold_errors: int = 0
    """Events that raised while being folded (a reducer bug met by odd data); each skipped and logged."""
    reader_problem: str = ""
    """Why the event log cannot be followed right now (a symbolic link, a folder, a reader failure);
    empty while it is followed."""
    # change counters
    revision: int = 0
    rev_stages: int = 0
    rev_training: int = 0
    rev_prefilter: int = 0
    rev_log: int = 0

    def copy(self) -> RunState:
        """A copy sharing nothing mutable with this state (event payloads are frozen and shared)."""
        new = copy.copy(self)
        new.stage_order = list(self.stage_order)
        new.stages = {k: dataclasses.replace(v, info=dict(v.info)) for k, v in self.stages.items()}
        new.epoch_rows = list(self.epoch_rows)  # rows are never mutated once appended
        new.batch = dataclasses.replace(
            self.batch, steps=list(self.batch.steps), loss=list(self.batch.loss), accuracy=list(self.batch.accuracy)
        )
        new.prefilter = dataclasses.replace(self.prefilter)
        new.log = deque(self.log, maxlen=LOG_LINES)
        return new

    def stage(self, name: str) -> StageState:
        """The state of stage ``name`` (added at the end of the order if the events name a new one)."""
        if name not in self.stages:
            self.stages[name] = StageState(name)
            if name not in self.stage_order:
                self.stage_order.append(name)
        return self.stages[name]

    def running_stage(self) -> str | None:
        """The stage the events say is running, if any."""
        for name in self.stage_order:
            if self.stages.get(name) and self.stages[name].status == RUNNING:
                return name
        return None

    @property
    def best_epoch_row(self) -> EpochRow | None:
        if self.patience and self.patience.best_epoch:
            for row in self.epoch_rows:
                if row.epoch == self.patience.best_epoch:
                    return row
        return None


def new_state(stage_order: Sequence[str] = ()) -> RunState:
    """An empty state listing ``stage_order`` as pending stages."""
    state = RunState()
    for name in stage_order:
        state.stage(name)
    return state


def apply(state: RunState, event: ev.Event) -> RunState:
    """Fold one event into a copy of ``state``; ``state`` itself is left as it was."""
    new = state.copy()
    _reduce_safely(new, event)
    return new


def _reduce_safely(s: RunState, event: ev.Event) -> None:
    # Events are validated before they get here, but a reducer bug met by odd data must cost one
    # event, not the monitor: the event is skipped, counted and logged, and folding goes on.
    try:
        _reduce(s, event)
    except Exception as exc:
        s.fold_errors += 1
        s.revision += 1
        _append_log(
            s,
            LogEntry(
                0.0,
                "error",
                f"events.jsonl: a {event.kind} event could not be folded ({type(exc).__name__}: {exc}); skipped",
            ),
        )


def fold(state: RunState, events: Iterable[ev.Event], bad_lines: Sequence[int] = ()) -> RunState:
    """Fold many events into one copy of ``state`` (one copy for the whole chunk).

    Args:
        state: the state so far; not changed.
        events: events in log order.
        bad_lines: 1-based numbers of lines the reader skipped in this chunk (``eventlog.BadLine``,
            which carries the reason); each is counted and reported in the log.
    """
    new = state.copy()
    for event in events:
        _reduce_safely(new, event)
    for number in bad_lines:
        new.bad_lines += 1
        reason = getattr(number, "reason", "malformed")
        _append_log(new, LogEntry(0.0, "warning", f"events.jsonl line {int(number)}: {reason}, skipped"))
        new.revision += 1
    return new


def reader_problem(state: RunState, problem: str, t: float = 0.0) -> RunState:
    """``state`` with the reader's current problem set (logged as an error when it changes).

    Args:
        state: the state so far; not changed.
        problem: why the event log cannot be followed (empty: it can be again).
        t: wall-clock time of the discovery.
    """
    if problem == state.reader_problem:
        return state
    new = state.copy()
    new.reader_problem = problem
    if problem:
        _append_log(new, LogEntry(t, "error", problem))
    new.rev_stages += 1
    new.revision += 1
    return new


def note(state: RunState, level: str, message: str, t: float = 0.0) -> RunState:
    """A copy of ``state`` with one log line added by the reader (not the runner), e.g. a runner exit."""
    new = state.copy()
    _append_log(new, LogEntry(t, level, message))
    new.revision += 1
    return new


def runner_lost(state: RunState, reason: str, tail: Sequence[str] = (), t: float = 0.0) -> RunState:
    """Mark the running stage failed because its runner went away without saying so (a crash, a kill).

    Args:
        state: the state so far; not changed.
        reason: what happened, e.g. "runner exited with code -9".
        tail: the last lines of the runner's log, shown in the log panel and the stage's traceback.
        t: wall-clock time of the discovery.
    """
    name = state.running_stage()
    if name is None:
        return state
    new = state.copy()
    stage = new.stages[name]
    stage.status = FAILED
    stage.error = reason
    stage.summary = reason
    stage.traceback = "\n".join(tail)
    stage.finished = t or None
    new.run_status = FAILED
    new.current_stage = ""
    _append_log(new, LogEntry(t, "error", f"{name}: {reason}", stage=name))
    for line in tail:
        _append_log(new, LogEntry(t, "info", f"  | {line}", stage=name))
    new.rev_stages += 1
    new.revision += 1
    return new


# --- the reducer proper (mutates the copy it is given) ----------------------------------------------


def _append_log(s: RunState, entry: LogEntry) -> None:
    s.log.append(entry)
    s.log_total += 1
    s.rev_log += 1
    if entry.level == "warning":
        s.warnings += 1
    elif entry.level == "error":
        s.errors += 1


def _reduce(s: RunState, e: ev.Event) -> None:
    s.revision += 1
    # The batch event is by far the most frequent: handle it first and cheaply.
    if isinstance(e, ev.BatchEnded):
        b = s.batch
        if b.epoch != e.epoch:
            s.batch = b = BatchCurve(epoch=e.epoch)
        b.add(e.step, e.loss, e.accuracy)
        b.total_steps = e.steps
        b.images_per_s = e.images_per_s
        b.eta_s = e.eta_s
        s.rev_training += 1
        return
    if isinstance(e, ev.StageProgress):
        st = s.stage(e.stage)
        st.done, st.total, st.rate, st.eta_s = e.done, e.total, e.rate, e.eta_s
        if e.info:
            st.info.update(e.info)
        s.rev_stages += 1
        if e.stage == "prefilter":
            s.rev_prefilter += 1
        return
    handler = _HANDLERS.get(e.kind)
    if handler is not None:
        handler(s, e)


def _run_started(s: RunState, e: ev.RunStarted) -> None:
    s.run_status = RUNNING
    s.run_dir = e.run_dir
    s.runner_pid = e.pid
    for name in e.stages:
        s.stage(name)
    s.rev_stages += 1


def _run_finished(s: RunState, e: ev.RunFinished) -> None:
    s.run_status = e.status
    s.current_stage = ""
    s.rev_stages += 1


def _stage_started(s: RunState, e: ev.StageStarted) -> None:
    s.stage(e.stage)  # keeps its place in the order
    s.stages[e.stage] = StageState(e.stage, status=RUNNING, started=e.t, total=e.total)
    s.current_stage = e.stage
    s.run_status = RUNNING
    if e.stage == "prefilter":
        s.prefilter = PrefilterView()
        s.rev_prefilter += 1
    s.rev_stages += 1


def _stage_end(s: RunState, e: ev.Event, status: str, summary: str) -> None:
    st = s.stage(e.stage)  # type: ignore[attr-defined]
    st.status = status
    st.finished = e.t
    st.summary = summary
    if st.started is not None:
        st.duration_s = e.t - st.started
    if s.current_stage == e.stage:  # type: ignore[attr-defined]
        s.current_stage = ""
    s.rev_stages += 1


def _stage_finished(s: RunState, e: ev.StageFinished) -> None:
    _stage_end(s, e, DONE, e.summary)
    s.stages[e.stage].duration_s = e.duration_s
    s.stages[e.stage].info.update(e.result)


def _stage_failed(s: RunState, e: ev.StageFailed) -> None:
    _stage_end(s, e, FAILED, e.error)
    st = s.stages[e.stage]
    st.error, st.traceback = e.error, e.traceback
    _append_log(s, LogEntry(e.t, "error", f"{e.stage} failed: {e.error}", stage=e.stage))


def _stage_interrupted(s: RunState, e: ev.StageInterrupted) -> None:
    _stage_end(s, e, INTERRUPTED, f"stopped ({e.reason}); finished work kept")
    _append_log(s, LogEntry(e.t, "warning", f"{e.stage} interrupted: {e.reason}", stage=e.stage))


def _stage_updated(s: RunState, e: ev.StageUpdated) -> None:
    st = s.stage(e.stage)
    st.summary = e.summary
    st.info.update(e.result)
    s.rev_stages += 1


def _stages_stale(s: RunState, e: ev.StagesStale) -> None:
    for name, st in s.stages.items():
        if st.status in (DONE, STALE):
            st.status = STALE if name in e.stale else DONE
            st.stale_reason = str(e.stale.get(name, ""))
    s.rev_stages += 1


def _config_changed(s: RunState, e: ev.ConfigChanged) -> None:
    changed = ", ".join(f"{key} {old} -> {new}" for key, (old, new) in e.changes.items())
    _append_log(s, LogEntry(e.t, "info", f"config changed ({e.source}): {changed}"))


def _log(s: RunState, e: ev.LogLine) -> None:
    _append_log(s, LogEntry(e.t, e.level, e.message, e.stage, e.file))


def _epoch_started(s: RunState, e: ev.EpochStarted) -> None:
    s.epoch, s.epochs, s.phase = e.epoch, e.epochs, e.phase
    s.batch = BatchCurve(epoch=e.epoch, total_steps=e.steps)
    s.rev_training += 1


def _epoch_ended(s: RunState, e: ev.EpochEnded) -> None:
    # A resumed or restarted training run re-reports epochs: the newest report of an epoch wins and
    # anything after it is from the abandoned attempt.
    rows = s.epoch_rows
    if rows and rows[-1].epoch >= e.epoch:
        s.epoch_rows = rows = [r for r in rows if r.epoch < e.epoch]
    rows.append(EpochRow(e.epoch, e.epochs, dict(e.metrics), e.learning_rate, e.duration_s, e.images_per_s, e.eta_s))
    s.epoch, s.epochs = e.epoch, e.epochs
    s.rev_training += 1


def _patience(s: RunState, e: ev.PatienceChanged) -> None:
    s.patience = Patience(e.epoch, e.wait, e.patience, e.best, e.best_epoch, e.monitor)
    s.rev_training += 1


def _confusion(s: RunState, e: ev.ConfusionReady) -> None:
    s.confusion = Confusion(e.epoch, e.classes, e.matrix, e.split, e.sample)
    s.rev_training += 1


def _prefilter_histogram(s: RunState, e: ev.PrefilterHistogram) -> None:
    s.prefilter.edges, s.prefilter.counts = e.edges, e.counts
    s.prefilter.threshold, s.prefilter.kept, s.prefilter.scored = e.threshold, e.kept, e.scored
    s.rev_prefilter += 1


def _prefilter_examples(s: RunState, e: ev.PrefilterExamples) -> None:
    s.prefilter.kept_examples, s.prefilter.rejected_examples = e.kept, e.rejected
    s.rev_prefilter += 1


_HANDLERS: dict[str, Callable[[RunState, Any], None]] = {
    "run_started": _run_started,
    "run_finished": _run_finished,
    "stage_started": _stage_started,
    "stage_finished": _stage_finished,
    "stage_failed": _stage_failed,
    "stage_interrupted": _stage_interrupted,
    "log": _log,
    "stages_stale": _stages_stale,
    "stage_updated": _stage_updated,
    "config_changed": _config_changed,
    "epoch_started": _epoch_started,
    "epoch_ended": _epoch_ended,
    "patience": _patience,
    "confusion": _confusion,
    "prefilter_histogram": _prefilter_histogram,
    "prefilter_examples": _prefilter_examples,
}
