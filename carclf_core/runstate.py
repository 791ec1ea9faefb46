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
import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from . import display
from . import events as ev

BATCH_POINTS = 256
"""Most batch points kept for the current epoch's curve; older points are thinned, not dropped."""
RATE_WINDOW_S = 10.0
"""Time constant of the smoothed training speed (seconds): intervals between batch events are weighted
by ``exp(-age / RATE_WINDOW_S)``, so the speed follows a change within a few tens of seconds."""
ACCURACY_KEYS = ("categorical_accuracy", "accuracy", "sparse_categorical_accuracy")
"""Keras names the accuracy after the metric object; the usual spellings, the first found wins."""
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
    waiting: str = ""
    """Why a running stage has no runner here and is not lost: a prefilter shard did its share and
    the other shards (other machines) finish the stage (``waiting for the other shards: 3 of 4
    chunks scored``); empty otherwise."""
    spent_s: float = 0.0
    """Seconds earlier attempts of the stage ran before this one continued them (a stopped train
    resumed); :attr:`duration_s` and :meth:`elapsed` count them in."""

    def elapsed(self, now: float) -> float | None:
        """Seconds the stage has run at wall-clock ``now``, earlier attempts included: its whole time
        while it runs, its duration once it ended; None when unknown."""
        if self.status == RUNNING and self.started is not None:
            return self.spent_s + max(0.0, now - self.started)
        return self.duration_s


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
    """As the newest batch event reported it: images since the epoch began over the time since (the
    first step, with its compilation, included)."""
    eta_s: float | None = None
    started_t: float | None = None
    """Wall-clock time the epoch began (its EpochStarted event)."""
    last_t: float | None = None
    """Wall-clock time of the newest batch event of the epoch."""
    first_of_fit: bool = True
    """The epoch is the first of a ``fit`` (the stage's first, or the first of a new phase): its first
    step includes building and compiling the training step."""
    images_per_step: float | None = None
    """Images a step, from the newest batch event (its images/s times the epoch's time so far, over steps)."""
    rate_steps: float = 0.0
    rate_seconds: float = 0.0
    """Exponentially weighted sums of steps and of seconds between batch events (never the first
    event of an epoch, which carries the first step and the pipeline's warm-up; never validation,
    which runs between the last batch event and the next epoch): their ratio is the smoothed speed."""

    @property
    def steps_per_s(self) -> float | None:
        """Training steps a second, smoothed over the last :data:`RATE_WINDOW_S` or so; None before two
        batch events of an epoch arrived in this run of the stage."""
        return self.rate_steps / self.rate_seconds if self.rate_seconds > 0 else None

    @property
    def smoothed_images_per_s(self) -> float | None:
        """:attr:`steps_per_s` in images a second (None when either part is unknown)."""
        rate = self.steps_per_s
        return rate * self.images_per_step if rate is not None and self.images_per_step else None

    def timed(self, t: float, step: int, images_per_s: float | None) -> None:
        """Fold the time of a batch event at ``step`` into the smoothed speed."""
        if self.last_t is not None and step > self.last_step and t > self.last_t:
            seconds = t - self.last_t
            decay = math.exp(-seconds / RATE_WINDOW_S)
            self.rate_steps = self.rate_steps * decay + (step - self.last_step)
            self.rate_seconds = self.rate_seconds * decay + seconds
        if images_per_s and self.started_t is not None and step > 0 and t > self.started_t:
            self.images_per_step = images_per_s * (t - self.started_t) / step
        self.last_t = t

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
class Workers:
    """The machines a training on several machines runs on, as the last WorkersReport said."""

    addresses: tuple[str, ...]
    """``host:port`` of each, the chief first."""
    images_per_s: tuple[float | None, ...]
    """Each one's own training throughput in :attr:`epoch`; empty before the first epoch ends."""
    epoch: int
    global_batch: int
    learning_rate: float | None


@dataclasses.dataclass
class Confusion:
    epoch: int
    classes: tuple[str, ...]
    cells: tuple[tuple[int, int, int], ...]
    """The non-zero counts as ``(true, predicted, count)``."""
    split: str
    sample: int

    def counts(self) -> Any:
        """The dense matrix as a numpy int64 array, rows true."""
        return ev.dense_counts(self.cells, len(self.classes))


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
    workers: Workers | None = None
    """The machines of a multi-worker training; None when it runs on one."""
    after_steps_s: float | None = None
    """Seconds the last finished epoch took after its last training step (validation, the epoch's
    callbacks), for the ETAs; None until an epoch with batch events ended."""
    earlier_rows: list[EpochRow] | None = None
    earlier_patience: Patience | None = None
    """A train stage that starts again shows nothing of the attempt before it until its first epoch
    says where it starts: a fresh run (epoch 1) drops these, a resumed one (epoch 4) keeps the rows
    and patience of the epochs before. None when no attempt is pending."""
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


STALLED_S = 10.0
"""Seconds without a batch event in the middle of an epoch before the progress says so."""


@dataclasses.dataclass(frozen=True)
class TrainingProgress:
    """Where a running train stage is, with its smoothed speed and ETAs (:func:`training_progress`)."""

    activity: str
    """``building the model``, ``compiling the first step``, ``starting epoch N``, ``training``,
    ``validating``, ``ending the epoch``, or ``no batch for ...`` when the batches stopped coming."""
    since: float | None
    """When the activity began (wall clock), for those worth timing; None for ``training``."""
    epoch: int
    epochs: int
    step: int
    steps: int | None
    fraction: float | None
    """Of the whole run's epochs, the running epoch's finished steps counted in."""
    images_per_s: float | None
    """Smoothed over the last batch events, first steps and validation left out."""
    epoch_eta_s: float | None
    run_eta_s: float | None
    """To the last planned epoch; None until a speed is known."""
    stop_eta_s: float | None
    """To the epoch early stopping would end on if the monitored value does not improve, when that
    comes before the last planned epoch."""


def training_progress(state: RunState, now: float) -> TrainingProgress | None:
    """The running train stage's progress at wall-clock ``now``; None when training is not running.

    ETAs come from the smoothed step rate (:attr:`BatchCurve.steps_per_s`) and the time the last epoch
    spent after its last step (:attr:`RunState.after_steps_s`: validation, checkpoints), so they move
    with every batch event and count down between them.
    """
    train = state.stages.get("train")
    if train is None or train.status != RUNNING:
        return None
    b = state.batch
    seen = b.started_t if b.started_t is not None else b.last_t
    # the curve belongs to this run of the stage (a resumed run replays an earlier attempt's first)
    current = b.epoch > 0 and seen is not None and not (train.started is not None and seen < train.started)
    finished = state.epoch_rows[-1].epoch if state.epoch_rows else 0
    ended = current and finished >= b.epoch
    running = current and not ended  # an epoch whose end was not reported yet
    steps = b.total_steps if current else None
    step = b.last_step if running else 0
    rate = b.steps_per_s if current else None
    train_end = None
    if running and rate and steps and b.last_t is not None:
        train_end = b.last_t + max(0, steps - step) / rate  # where the epoch's last step lands
    since: float | None = None
    if not current:
        activity, since = "building the model", train.started
    elif ended:
        activity = "ending the epoch"
    elif step == 0:
        activity = "compiling the first step" if b.first_of_fit else f"starting epoch {b.epoch}"
        since = b.started_t
    elif steps and (
        step >= steps or (rate and train_end is not None and now >= train_end and steps - step <= rate * 0.5 + 1)
    ):
        # batch events are throttled (a few a second): the last may come a few steps before the end
        activity, since = "validating", min(now, train_end) if train_end is not None else b.last_t
    elif b.last_t is not None and now - b.last_t > STALLED_S:
        activity, since = "no batch since", b.last_t
    else:
        activity = "training"
    epochs = state.epochs
    done = (b.epoch - 1 + min(step, steps) / steps) if running and steps else float(finished)
    fraction = min(1.0, max(0.0, done / epochs)) if epochs else None
    epoch_eta = run_eta = stop_eta = None
    if rate and steps:
        per_epoch = steps / rate + (state.after_steps_s or 0.0)
        left = 0.0
        if running:
            if train_end is not None:
                left = max(0.0, train_end + (state.after_steps_s or 0.0) - now)
            else:  # no batch of this epoch yet: a whole epoch, less what already went by
                left = max(0.0, per_epoch - (now - (b.started_t or now)))
            epoch_eta = left
        last = b.epoch if running else finished
        if epochs:
            run_eta = left + max(0, epochs - last) * per_epoch
        p = state.patience
        if p is not None and epochs and p.stop_after < epochs:
            stop_eta = left + max(0, p.stop_after - last) * per_epoch
    elif current and state.epoch_rows and state.epoch_rows[-1].eta_s is not None:
        run_eta = state.epoch_rows[-1].eta_s  # the trainer's own (whole epochs) until a speed is known
    return TrainingProgress(
        activity,
        since,
        b.epoch if current else finished,
        epochs,
        step,
        steps,
        fraction,
        b.smoothed_images_per_s if current else None,
        epoch_eta,
        run_eta,
        stop_eta,
    )


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
    if state.stages[name].waiting:
        # a shard that did its share exits 0 and leaves the stage running: the other shards, on other
        # machines, finish it, so no runner here is no failure
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
        b.timed(e.t, e.step, e.images_per_s)  # before add: it compares with the previous step
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


def _stage_started(s: RunState, e: ev.StageStarted) -> None:  # also ends a wait: a shard (re)started
    s.stage(e.stage)  # keeps its place in the order
    s.stages[e.stage] = StageState(e.stage, status=RUNNING, started=e.t, total=e.total, spent_s=max(0.0, e.spent_s))
    s.current_stage = e.stage
    s.run_status = RUNNING
    if e.stage == "prefilter":
        s.prefilter = PrefilterView()
        s.rev_prefilter += 1
    if e.stage == "train":
        _training_starts(s)
    s.rev_stages += 1
    again = f" (continuing; {e.spent_s:.0f} s spent before)" if e.spent_s > 0 else ""
    _append_log(s, LogEntry(e.t, "info", f"{e.stage} started{again}", stage=e.stage))


def _training_starts(s: RunState) -> None:
    # The panels show this attempt only: the epochs, curves, patience and matrix of the one before
    # are put aside until the first epoch says whether they still hold (see _resolve_earlier).
    if s.earlier_rows is None:  # a second start before any epoch keeps the first attempt's rows
        s.earlier_rows, s.earlier_patience = s.epoch_rows, s.patience
    s.epoch_rows = []
    s.epoch = 0
    s.batch = BatchCurve()
    s.patience = None
    s.confusion = None
    s.after_steps_s = None
    s.workers = None  # a new attempt says again what it runs on
    s.rev_training += 1


def _resolve_earlier(s: RunState, epoch: int) -> None:
    """The first epoch of a restarted train stage is ``epoch``: the earlier attempt's rows before it
    are the history this attempt continues; the rest are gone."""
    if s.earlier_rows is None:
        return
    s.epoch_rows = [r for r in s.earlier_rows if r.epoch < epoch]
    p = s.earlier_patience
    if p is not None:  # None: nothing put aside, or this attempt reported its own (kept)
        s.patience = p if p.epoch < epoch else None
    s.earlier_rows = s.earlier_patience = None


def _stage_end(s: RunState, e: ev.Event, status: str, summary: str) -> None:
    st = s.stage(e.stage)  # type: ignore[attr-defined]
    st.status = status
    st.finished = e.t
    st.summary = summary
    if st.started is not None:
        st.duration_s = st.spent_s + max(0.0, e.t - st.started)
    if s.current_stage == e.stage:  # type: ignore[attr-defined]
        s.current_stage = ""
    s.rev_stages += 1


def _stage_finished(s: RunState, e: ev.StageFinished) -> None:
    _stage_end(s, e, DONE, e.summary)
    s.stages[e.stage].duration_s = e.duration_s
    s.stages[e.stage].info.update(e.result)
    _append_log(s, LogEntry(e.t, "info", f"{e.stage} done: {e.summary}", stage=e.stage))


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
    if "shard" in e.result:  # a shard did its share and left: the stage waits for the others
        done, chunks = e.result.get("chunks_done"), e.result.get("chunks")
        scored = f": {done:,} of {chunks:,} chunks scored" if _counts(done, chunks) else ""
        st.waiting = f"waiting for the other shards{scored}"
        shard = e.result["shard"] if isinstance(e.result["shard"], str) else "?"  # any JSON may come
        st.summary = f"shard {shard} did its share; {st.waiting}"
        if s.current_stage == e.stage:
            s.current_stage = ""
    s.rev_stages += 1


def _counts(*values: Any) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 10**12 for v in values)


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
    old, train = s.batch, s.stages.get("train")
    # The speed carries over from the epoch before when the same fit goes on (its sums are decayed
    # by age as new intervals come); a new fit (the stage restarted, or warm-up turned fine-tuning)
    # compiles again and may run at another speed, so it starts afresh.
    same_fit = (
        old.started_t is not None
        and e.phase == s.phase
        and not (train is not None and train.started is not None and old.started_t < train.started)
    )
    _resolve_earlier(s, e.epoch)
    s.epoch, s.epochs, s.phase = e.epoch, e.epochs, e.phase
    s.batch = BatchCurve(epoch=e.epoch, total_steps=e.steps, started_t=e.t, first_of_fit=not same_fit)
    if same_fit:
        s.batch.rate_steps, s.batch.rate_seconds = old.rate_steps, old.rate_seconds
        s.batch.images_per_step = old.images_per_step
    s.rev_training += 1


def _epoch_ended(s: RunState, e: ev.EpochEnded) -> None:
    # A resumed or restarted training run re-reports epochs: the newest report of an epoch wins and
    # anything after it is from the abandoned attempt.
    _resolve_earlier(s, e.epoch)
    rows = s.epoch_rows
    if rows and rows[-1].epoch >= e.epoch:
        s.epoch_rows = rows = [r for r in rows if r.epoch < e.epoch]
    rows.append(EpochRow(e.epoch, e.epochs, dict(e.metrics), e.learning_rate, e.duration_s, e.images_per_s, e.eta_s))
    s.epoch, s.epochs = e.epoch, e.epochs
    b = s.batch
    rate = b.steps_per_s
    if b.epoch == e.epoch and b.last_t is not None and rate and b.total_steps:
        # the batch events are throttled: the last one may come a few steps before the epoch's end
        s.after_steps_s = max(0.0, e.t - b.last_t - max(0, b.total_steps - b.last_step) / rate)
    s.rev_training += 1
    _append_log(s, LogEntry(e.t, "info", epoch_line(e.epoch, e.epochs, e.metrics), stage="train"))


def metric(metrics: dict[str, float], names: Sequence[str], prefix: str = "") -> float | None:
    """The first of ``names`` (with ``prefix``, e.g. ``val_``) that ``metrics`` holds, as a float."""
    for name in names:
        value = metrics.get(prefix + name)
        if value is not None:
            return float(value)
    return None


def epoch_line(epoch: int, epochs: int, metrics: dict[str, float]) -> str:
    """``epoch 3/12  loss 0.4978  val_loss 0.7293  val_acc 0.7737``: what the log says of a finished epoch."""
    parts = [f"epoch {epoch}/{epochs}" if epochs else f"epoch {epoch}"]
    for label, names, prefix in (
        ("loss", ("loss",), ""),
        ("val_loss", ("loss",), "val_"),
        ("val_acc", ACCURACY_KEYS, "val_"),
    ):
        value = metric(metrics, names, prefix)
        if value is not None:
            parts.append(f"{label} {display.number(value)}")
    return "  ".join(parts)


def _patience(s: RunState, e: ev.PatienceChanged) -> None:
    s.earlier_patience = None  # this attempt said its own: the one put aside is not brought back
    s.patience = Patience(e.epoch, e.wait, e.patience, e.best, e.best_epoch, e.monitor)
    s.rev_training += 1


def _workers(s: RunState, e: ev.WorkersReport) -> None:
    s.workers = Workers(tuple(e.workers), tuple(e.images_per_s), e.epoch, e.global_batch, e.learning_rate)
    s.rev_training += 1


def _confusion(s: RunState, e: ev.ConfusionReady) -> None:
    s.confusion = Confusion(e.epoch, e.classes, e.nonzero(), e.split, e.sample)
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
    "workers": _workers,
    "prefilter_histogram": _prefilter_histogram,
    "prefilter_examples": _prefilter_examples,
}
