"""The event stream: frozen dataclasses every stage emits, and their JSON form.

Stages report only through events; a sink is any ``Callable[[Event], None]``. The JSON form is one
object a line with a ``kind`` key, so ``events.jsonl`` can be followed by the dashboard, replayed by
``--attach`` and read by any later analysis without importing the pipeline.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar


class StageStatus(enum.StrEnum):
    """What a stage (or a run as a whole) is doing or ended as; the words ``state.json`` stores."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    STALE = "stale"
    """Done, but made from inputs that changed since (shown, never stored in ``state.json``)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Event:
    kind: ClassVar[str] = "event"
    t: float = dataclasses.field(default_factory=time.time)
    """Wall-clock time the event was made, seconds since the epoch."""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **dataclasses.asdict(self)}


_REGISTRY: dict[str, type[Event]] = {}


def _register(cls: type[Event]) -> type[Event]:
    _REGISTRY[cls.kind] = cls
    return cls


@_register
@dataclasses.dataclass(frozen=True, kw_only=True)
class RunStarted(Event):
    kind: ClassVar[str] = "run_started"
    run_dir: str
    stages: tuple[str, ...]
    pid: int = 0


@_register
@dataclasses.dataclass(frozen=True, kw_only=True)
class RunFinished(Event):
    kind: ClassVar[str] = "run_finished"
    status: str
    """`done`, `failed` or `interrupted`."""


@_register
@dataclasses.dataclass(frozen=True, kw_only=True)
class StageStarted(Event):
    kind: ClassVar[str] = "stage_started"
    stage: str
    total: int | None = None
    """Units of work (images, epochs) the stage expects, when known."""


@_register
@dataclasses.dataclass(frozen=True, kw_only=True)
class StageProgress(Event):
    kind: ClassVar[str] = "stage_progress"
    stage: str
    done: int
    total: int | None = None
    rate: float | None = None
    """Units a second (images/s while indexing or prefiltering)."""
    eta_s: float | None = None
    info: dict[str, Any] = dataclasses.field(default_factory=dict)


@_register
@dataclasses.dataclass(frozen=True, kw_only=True)
class StageFinished(Event):
    kind: ClassVar[str] = "stage_finished"
    stage: str
    duration_s: float
    summary: str
    """One line for the stages panel, e.g. "53,738 / 64,467 kept"."""
    result: dict[str, Any] = dataclasses.field(default_factory=dict)


@_register
@dataclasses.dataclass(frozen=True, kw_only=True)
class StageFailed(Event):
    kind: ClassVar[str] = "stage_failed"
    stage: str
    error: str
    traceback: str = ""


@_register
@dataclasses.dataclass(frozen=True, kw_only=True)
class StageInterrupted(Event):
    kind: ClassVar[str] = "stage_interrupted"
    stage: str
    reason: str
    """What stopped it, e.g. "SIGINT"; what it finished is kept."""


@_register
@dataclasses.dataclass(frozen=True, kw_only=True)
class StageUpdated(Event):
    kind: ClassVar[str] = "stage_updated"
    stage: str
    summary: str
    """A finished stage's results changed in place (a new prefilter threshold saved): its new line."""
    result: dict[str, Any] = dataclasses.field(default_factory=dict)


@_register
@dataclasses.dataclass(frozen=True, kw_only=True)
class StagesStale(Event):
    kind: ClassVar[str] = "stages_stale"
    stale: dict[str, str]
    """Finished stages whose inputs changed since they were made -> why (all of them, each time)."""


@_register
@dataclasses.dataclass(frozen=True, kw_only=True)
class ConfigChanged(Event):
    kind: ClassVar[str] = "config_changed"
    changes: dict[str, list[Any]]
    """``section.key`` -> ``[old, new]``."""
    source: str = ""
    """What changed it: ``--set`` on resume, a threshold saved in the dashboard, ..."""


@_register
@dataclasses.dataclass(frozen=True, kw_only=True)
class LogLine(Event):
    kind: ClassVar[str] = "log"
    level: str
    """`info`, `warning` or `error`."""
    message: str
    stage: str = ""
    file: str = ""
    """The file the message is about, relative to the data folder, when there is one."""


@_register
@dataclasses.dataclass(frozen=True, kw_only=True)
class EpochStarted(Event):
    kind: ClassVar[str] = "epoch_started"
    epoch: int
    """1-based epoch number."""
    epochs: int
    steps: int | None = None
    phase: str = "finetune"
    """`warmup` (base frozen) or `finetune`."""


@_register
@dataclasses.dataclass(frozen=True, kw_only=True)
class BatchEnded(Event):
    kind: ClassVar[str] = "batch_ended"
    epoch: int
    step: int
    """1-based step within the epoch."""
    steps: int | None
    loss: float
    accuracy: float | None = None
    images_per_s: float | None = None
    eta_s: float | None = None
    """Seconds left in this epoch."""


@_register
@dataclasses.dataclass(frozen=True, kw_only=True)
class EpochEnded(Event):
    kind: ClassVar[str] = "epoch_ended"
    epoch: int
    epochs: int
    metrics: dict[str, float]
    """Keras logs: loss, categorical_accuracy, top5, val_loss, val_categorical_accuracy, ..."""
    learning_rate: float | None = None
    duration_s: float = 0.0
    images_per_s: float | None = None
    eta_s: float | None = None
    """Seconds left for the whole run if it ran all epochs."""


@_register
@dataclasses.dataclass(frozen=True, kw_only=True)
class PatienceChanged(Event):
    kind: ClassVar[str] = "patience"
    epoch: int
    wait: int
    """Epochs since the best epoch (Keras EarlyStopping's own counter)."""
    patience: int
    best: float | None
    best_epoch: int | None
    """1-based epoch with the best monitored value."""
    monitor: str = "val_loss"


@_register
@dataclasses.dataclass(frozen=True, kw_only=True)
class ConfusionReady(Event):
    kind: ClassVar[str] = "confusion"
    epoch: int
    classes: tuple[str, ...]
    matrix: tuple[tuple[int, ...], ...]
    """Rows: true class, columns: predicted class, in ``classes`` order."""
    split: str = "val"
    sample: int = 0
    """Images the matrix was computed from."""
    duration_s: float = 0.0
    """Seconds spent predicting the sample and counting (the matrix's cost; 0 when not measured)."""


@_register
@dataclasses.dataclass(frozen=True, kw_only=True)
class PrefilterHistogram(Event):
    kind: ClassVar[str] = "prefilter_histogram"
    edges: tuple[float, ...]
    """Bin edges of the summed car probability, 0..1 (len(counts) + 1 values)."""
    counts: tuple[int, ...]
    threshold: float
    kept: int
    scored: int


@_register
@dataclasses.dataclass(frozen=True, kw_only=True)
class PrefilterExamples(Event):
    kind: ClassVar[str] = "prefilter_examples"
    kept: tuple[tuple[str, float], ...]
    """(file, car probability) pairs just above the threshold."""
    rejected: tuple[tuple[str, float], ...]
    """(file, car probability) pairs just below the threshold."""


def from_dict(data: dict[str, Any]) -> Event:
    """Rebuild an event from its JSON form; unknown keys are ignored (newer writers)."""
    kind = data.get("kind")
    cls = _REGISTRY.get(kind)  # type: ignore[arg-type]
    if cls is None:
        raise ValueError(f"unknown event kind {kind!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in data.items() if k in names}
    for key in ("stages", "classes", "edges", "counts"):
        if key in kwargs and isinstance(kwargs[key], list):
            kwargs[key] = tuple(kwargs[key])
    for key in ("kept", "rejected"):
        if isinstance(kwargs.get(key), list):
            kwargs[key] = tuple(tuple(pair) for pair in kwargs[key])
    if "matrix" in kwargs:
        kwargs["matrix"] = tuple(tuple(row) for row in kwargs["matrix"])
    return cls(**kwargs)


def to_json(event: Event) -> str:
    return json.dumps(event.to_dict(), separators=(",", ":"), default=_json_default)


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays reach events from metrics; keep them plain
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


Sink = Callable[[Event], None]


def fanout(sinks: Iterable[Sink]) -> Sink:
    """One sink that forwards each event to all ``sinks`` in order."""
    sinks = tuple(sinks)

    def emit(event: Event) -> None:
        for sink in sinks:
            sink(event)

    return emit
