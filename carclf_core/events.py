"""The event stream: frozen dataclasses every stage emits, and their JSON form.

Stages report only through events; a sink is any ``Callable[[Event], None]``. The JSON form is one
object a line with a ``kind`` key, so ``events.jsonl`` can be followed by the dashboard, replayed by
``--attach`` and read by any later analysis without importing the pipeline.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import time
import types
import typing
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
    spent_s: float = 0.0
    """Seconds earlier attempts of the stage ran, when this one continues them (a stopped train resumed)."""


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
    """`debug` (kept in the log, shown only among the dashboard's "all lines"), `info`, `warning` or `error`."""
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
class WorkersReport(Event):
    """The machines a multi-worker train stage runs on: once when they are all ready, then at each epoch end."""

    kind: ClassVar[str] = "workers"
    workers: tuple[str, ...]
    """``host:port`` of each machine, the chief first."""
    images_per_s: tuple[float | None, ...] = ()
    """Each machine's own training throughput in the epoch, in the order of ``workers``; empty before
    the first epoch ends."""
    epoch: int = 0
    """The 1-based epoch the throughputs are of; 0 before the first."""
    global_batch: int = 0
    """Images a step over all machines (``input.batch_size`` x machines)."""
    learning_rate: float | None = None
    """The learning rate used, scaled for the global batch by ``train.lr_scaling``."""


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
    """A confusion matrix, sent as its non-zero cells: a sample of 2,000 images over 3,000 classes is
    at most 2,000 cells, where the dense matrix was 9 million counts (an 18 MB line, over the event
    log's line limit, that the dashboard skipped)."""

    kind: ClassVar[str] = "confusion"
    epoch: int
    classes: tuple[str, ...]
    cells: tuple[tuple[int, int, int], ...] = ()
    """The non-zero counts as ``(true, predicted, count)``, indices into ``classes``; see :meth:`of`."""
    matrix: tuple[tuple[int, ...], ...] = ()
    """The dense form (rows true, columns predicted) of logs written before ``cells``: read, not written."""
    split: str = "val"
    sample: int = 0
    """Images the matrix was computed from."""
    duration_s: float = 0.0
    """Seconds spent predicting the sample and counting (the matrix's cost; 0 when not measured)."""

    @classmethod
    def of(cls, counts: Any, **fields: Any) -> ConfusionReady:
        """The event of a square count matrix (a numpy array or nested lists, rows true)."""
        import numpy as np

        counts = np.asarray(counts)
        true, predicted = np.nonzero(counts)
        cells = tuple(zip(true.tolist(), predicted.tolist(), counts[true, predicted].tolist(), strict=True))
        return cls(cells=cells, **fields)

    def counts(self) -> Any:
        """The dense matrix, a numpy int64 array with rows true (see :func:`dense_counts`)."""
        return dense_counts(self.nonzero(), len(self.classes))

    def nonzero(self) -> tuple[tuple[int, int, int], ...]:
        """The non-zero cells, from whichever form the event holds."""
        if self.cells or not self.matrix:
            return self.cells
        return tuple((i, j, count) for i, row in enumerate(self.matrix) for j, count in enumerate(row) if count)


def dense_counts(cells: Iterable[tuple[int, int, int]], n: int) -> Any:
    """An ``n`` x ``n`` numpy int64 matrix from ``(true, predicted, count)`` cells (numpy is loaded
    here, not with the events: the dashboard opens without it)."""
    import numpy as np

    dense = np.zeros((n, n), dtype=np.int64)
    table = np.asarray(list(cells), dtype=np.int64).reshape(-1, 3)
    np.add.at(dense, (table[:, 0], table[:, 1]), table[:, 2])
    return dense


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


# --- validation: an event line is input -----------------------------------------------------------
#
# ``events.jsonl`` is read by the dashboard while a runner (or anyone) writes it, so every line is
# untrusted: each field is checked against its dataclass annotation, numbers are finite and in sane
# ranges, text and collections are bounded, before an event reaches the reducer. A line that fails
# is skipped and reported with the field and the reason, never raised into the reader.

MAX_TEXT = 65_536
"""Most characters of a text field (a traceback may have :data:`MAX_TRACEBACK`)."""
MAX_TRACEBACK = 262_144
MAX_NAME = 200
"""Most characters of a stage, monitor, phase or split name."""
MAX_ITEMS = 100_000
"""Most elements of one list or mapping (a 300-class confusion matrix has 300 rows of 300)."""
MAX_DEPTH = 8
"""Deepest nesting of a free-form value (``info``, ``result``, ``changes``)."""
MAX_EPOCH = 10**6
MAX_COUNT = 10**15
"""Largest count (images, steps, pid); Python's unbounded ints would otherwise reach the display."""
MAX_MAGNITUDE = 1e15
"""Largest absolute value of a time, duration or probability-like float (see :data:`NONFINITE_OK`)."""
MAX_TIME = 1e11
"""Latest event time accepted (year 5138): seconds since the epoch."""

NONFINITE_OK = frozenset({"loss", "accuracy", "metrics", "learning_rate", "best", "images_per_s", "rate", "eta_s"})
"""Fields that may be NaN or infinite, and of any size: what a diverging training or a stalled
stage really measures, shown as such. Every other float must be finite and within :data:`MAX_MAGNITUDE`."""
_NAMES = frozenset({"stage", "monitor", "phase", "split", "source", "level", "status"})
_INT_RANGES = {"epoch": (0, MAX_EPOCH), "epochs": (0, MAX_EPOCH), "best_epoch": (0, MAX_EPOCH)}
_CHOICES: dict[tuple[str, str], frozenset[str]] = {
    ("log", "level"): frozenset({"debug", "info", "warning", "error"}),
    ("run_finished", "status"): frozenset({"done", "failed", "interrupted"}),
}


class InvalidEvent(ValueError):
    """A line that is JSON but not a valid event; the message names the kind, the field and the reason."""


class _WrongType(InvalidEvent):
    """A value of another type than the field's; ``expected`` words the type (``an integer``)."""

    def __init__(self, where: str, expected: str, value: Any):
        super().__init__(f"{where}: expected {expected}, got {_shown(value)}")
        self.expected = expected


def _shown(value: Any) -> str:
    """A short repr of a bad value for the reason (the reason itself is shown, so keep it small)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_json(value: Any, where: str, depth: int = 0) -> Any:
    """A free-form JSON value: bounded depth and size, finite or not (a metric may be NaN)."""
    if depth > MAX_DEPTH:
        raise InvalidEvent(f"{where}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise InvalidEvent(f"{where}: text longer than {MAX_TEXT:,} characters")
    elif isinstance(value, bool) or value is None:
        pass
    elif isinstance(value, int):
        if abs(value) > MAX_COUNT:
            raise InvalidEvent(f"{where}: integer out of range")
    elif isinstance(value, float):
        pass
    elif isinstance(value, (list, tuple)):
        if len(value) > MAX_ITEMS:
            raise InvalidEvent(f"{where}: more than {MAX_ITEMS:,} items")
        return [_check_json(item, where, depth + 1) for item in value]
    elif isinstance(value, dict):
        if len(value) > MAX_ITEMS:
            raise InvalidEvent(f"{where}: more than {MAX_ITEMS:,} items")
        for key in value:
            if not isinstance(key, str):
                raise InvalidEvent(f"{where}: key {_shown(key)} is not text")
        return {key: _check_json(item, where, depth + 1) for key, item in value.items()}
    else:
        raise InvalidEvent(f"{where}: {type(value).__name__} is not a JSON value")
    return value


Check = Callable[[Any, str], Any]


def _int_check(field: str) -> Check:
    low, high = _INT_RANGES.get(field, (0, MAX_COUNT))

    def check(value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _WrongType(where, "an integer", value)
        if not low <= value <= high:
            raise InvalidEvent(f"{where}: {_shown(value)} is out of range {low}..{high:,}")
        return value

    return check


def _float_check(field: str) -> Check:
    free = field in NONFINITE_OK
    high = MAX_TIME if field == "t" else MAX_MAGNITUDE

    def check(value: Any, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _WrongType(where, "a number", value)
        if isinstance(value, int) and abs(value) > MAX_COUNT:
            raise InvalidEvent(f"{where}: {_shown(value)} is out of range")
        number = float(value)
        if not free and not (math.isfinite(number) and abs(number) <= high):
            raise InvalidEvent(f"{where}: {_shown(value)} is not a finite number up to {high:g}")
        return number

    return check


def _str_check(field: str) -> Check:
    limit = MAX_TRACEBACK if field == "traceback" else (MAX_NAME if field in _NAMES else MAX_TEXT)

    def check(value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise _WrongType(where, "text", value)
        if len(value) > limit:
            raise InvalidEvent(f"{where}: text longer than {limit:,} characters")
        return value

    return check


def _sequence(value: Any, where: str) -> list[Any] | tuple[Any, ...]:
    if not isinstance(value, (list, tuple)):
        raise _WrongType(where, "a list", value)
    if len(value) > MAX_ITEMS:
        raise InvalidEvent(f"{where}: more than {MAX_ITEMS:,} items")
    return value


def _checker(hint: Any, field: str) -> Check:
    """A check for one annotated type; it returns the value as the dataclass stores it (lists as tuples)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is int:
        return _int_check(field)
    if hint is float:
        return _float_check(field)
    if hint is str:
        return _str_check(field)
    if hint is Any:
        return lambda value, where: _check_json(value, where)
    if origin in (types.UnionType, typing.Union):
        inner = [_checker(arg, field) for arg in args if arg is not type(None)]
        optional = type(None) in args

        def union(value: Any, where: str) -> Any:
            if value is None and optional:
                return None
            wrong: list[str] = []
            for check in inner:
                try:
                    return check(value, where)
                except _WrongType as exc:
                    wrong.append(exc.expected)
            raise _WrongType(where, " or ".join(wrong + (["null"] if optional else [])), value)

        return union
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        item = _checker(args[0], field)
        return lambda value, where: tuple(item(v, where) for v in _sequence(value, where))
    if origin is tuple:
        items = [_checker(arg, field) for arg in args]

        def fixed(value: Any, where: str) -> tuple[Any, ...]:
            value = _sequence(value, where)
            if len(value) != len(items):
                raise InvalidEvent(f"{where}: expected {len(items)} items, got {len(value)}")
            return tuple(check(v, where) for check, v in zip(items, value, strict=True))

        return fixed
    if origin is list:
        item = _checker(args[0], field)
        return lambda value, where: [item(v, where) for v in _sequence(value, where)]
    if origin is dict:
        value_check = _checker(args[1], field)

        def mapping(value: Any, where: str) -> dict[str, Any]:
            if not isinstance(value, dict):
                raise _WrongType(where, "an object", value)
            if len(value) > MAX_ITEMS:
                raise InvalidEvent(f"{where}: more than {MAX_ITEMS:,} items")
            out = {}
            for key, item in value.items():
                if not isinstance(key, str) or len(key) > MAX_NAME:
                    raise InvalidEvent(f"{where}: key {_shown(key)} is not a short text")
                out[key] = value_check(item, f"{where}.{key}" if len(where) < 100 else where)
            return out

        return mapping
    raise TypeError(f"no event check for the annotation {hint!r} of {field}")  # a new annotation: add it here


@dataclasses.dataclass(frozen=True)
class _Schema:
    """How to check one event kind: each field's check, and which fields must be present."""

    checks: dict[str, Check]
    required: frozenset[str]


_SCHEMAS: dict[type[Event], _Schema] = {}


def _schema(cls: type[Event]) -> _Schema:
    schema = _SCHEMAS.get(cls)
    if schema is None:
        hints = typing.get_type_hints(cls)
        fields = dataclasses.fields(cls)
        schema = _Schema(
            checks={f.name: _checker(hints[f.name], f.name) for f in fields},
            required=frozenset(
                f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            ),
        )
        _SCHEMAS[cls] = schema
    return schema


def _check_choices(kind: str, kwargs: dict[str, Any]) -> None:
    for (choice_kind, field), allowed in _CHOICES.items():
        if kind == choice_kind and field in kwargs and kwargs[field] not in allowed:
            raise InvalidEvent(f"{kind}.{field}: {_shown(kwargs[field])} is not one of {', '.join(sorted(allowed))}")


def _check_consistent(kind: str, kwargs: dict[str, Any]) -> None:
    """Rules between fields that the annotations cannot say."""
    if kind == "confusion":
        n = len(kwargs["classes"])
        matrix, cells = kwargs.get("matrix", ()), kwargs.get("cells", ())
        if matrix and (len(matrix) != n or any(len(row) != n for row in matrix)):
            raise InvalidEvent(f"confusion.matrix: not {n} x {n} for {n} classes")
        if matrix and cells:
            raise InvalidEvent("confusion: both matrix and cells (one form or the other)")
        if any(i >= n or j >= n for i, j, _ in cells):
            raise InvalidEvent(f"confusion.cells: a class index beyond the {n} classes")
    elif kind == "prefilter_histogram":
        edges, counts = kwargs["edges"], kwargs["counts"]
        if counts and len(edges) != len(counts) + 1:
            raise InvalidEvent(f"prefilter_histogram.edges: {len(edges)} edges for {len(counts)} bins")
        if any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
            raise InvalidEvent("prefilter_histogram.edges: not increasing")
    elif kind == "config_changed":
        for key, pair in kwargs["changes"].items():
            if len(pair) != 2:
                raise InvalidEvent(f"config_changed.changes.{key}: expected [old, new]")


def from_dict(data: Any) -> Event:
    """Rebuild an event from its JSON form, validated; unknown keys are ignored (newer writers).

    Raises:
        InvalidEvent: not an object, an unknown kind, a missing field, or a field of the wrong type,
            not finite where it must be, out of range or too large; the message says which and why.
    """
    if not isinstance(data, dict):
        raise InvalidEvent(f"expected a JSON object, got {type(data).__name__}")
    kind = data.get("kind")
    cls = _REGISTRY.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise InvalidEvent(f"unknown event kind {_shown(kind)}")
    schema = _schema(cls)
    missing = schema.required - data.keys()
    if missing:
        raise InvalidEvent(f"{kind}: missing {', '.join(sorted(missing))}")
    kwargs = {key: schema.checks[key](value, f"{kind}.{key}") for key, value in data.items() if key in schema.checks}
    _check_choices(cls.kind, kwargs)
    _check_consistent(cls.kind, kwargs)
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
