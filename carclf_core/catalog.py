"""Summaries of the runs in a folder, for choosing one: status, classes, accuracies, time spent, age.

A summary reads only the small files a run keeps anyway (``state.json``, ``split/classes.json``,
``train/summary.json``, ``evaluate/metrics.json``), each as a regular file of bounded size, never
waiting on a FIFO or reading a huge file. A run whose files cannot be read is summarised as
``damaged`` with the reason instead of raising, so one bad folder never hides the others.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import CarclfError, RunError
from .provenance import LINEAGES, staleness
from .runs import LOCK_FILE, RunDir, list_runs, unfinished_changes

MAX_JSON_BYTES = 1 << 20
"""Largest summary file read (1 MiB); the files summarised are a few kilobytes."""

RUNNING, DONE, STALE, FAILED, INTERRUPTED, PARTIAL, NEW, DAMAGED = (
    "running",
    "done",
    "stale",
    "failed",
    "interrupted",
    "partial",
    "new",
    "damaged",
)
"""A run's status as a whole (``partial``: some stages done, none failed or stopped)."""


class _Unreadable(Exception):
    """A run file exists but cannot be used; the message names it and says why."""


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """What a run picker shows of one run."""

    run: RunDir
    status: str
    """One of running, done, stale, failed, interrupted, partial, new, damaged."""
    detail: str = ""
    """The stage running, failed or stopped; ``3/5 done``; the stale stages; or what is damaged."""
    classes: int | None = None
    """Classes the split kept (``split/classes.json``)."""
    val_accuracy: float | None = None
    """Validation accuracy of the best epoch (``train/summary.json``)."""
    test_accuracy: float | None = None
    """Test accuracy (``evaluate/metrics.json``)."""
    duration_s: float | None = None
    """Seconds the finished stages took together."""
    created: float | None = None
    """When the run was made (seconds since the epoch)."""


def _read_json(path: Path) -> Any:
    """The JSON in ``path``; None when there is no such file.

    Raises:
        _Unreadable: not a regular file, larger than :data:`MAX_JSON_BYTES`, unreadable, or not JSON.
    """
    try:
        # O_NONBLOCK: opening a FIFO someone put in place of the file must not hang the reader.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _Unreadable(f"{path.name}: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _Unreadable(f"{path.name}: not a regular file")
        if info.st_size > MAX_JSON_BYTES:
            raise _Unreadable(f"{path.name}: {info.st_size:,} bytes, larger than a run keeps it")
        data = os.read(fd, MAX_JSON_BYTES + 1)
    except OSError as exc:
        raise _Unreadable(f"{path.name}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _Unreadable(f"{path.name}: not valid JSON") from exc


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or None (missing, text, a bool, NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _field(data: Any, key: str) -> Any:
    return data.get(key) if isinstance(data, dict) else None


def _is_locked(run: RunDir) -> bool:
    # A run no runner ever locked has no lock file: checking must not create one in every run listed.
    lock = Path(run.path) / LOCK_FILE
    return lock.is_file() and not lock.is_symlink() and run.is_locked()


def _status(run: RunDir, stages: dict[str, dict[str, Any]]) -> tuple[str, str]:
    names = list(LINEAGES)
    status = {name: stages.get(name, {}).get("status") for name in names}
    for word in ("failed", "interrupted", "running"):
        stage = next((name for name in names if status[name] == word), None)
        if stage is not None:
            # "running" without a runner holding the lock: the runner was killed mid-stage
            return (FAILED if word == "failed" else INTERRUPTED), stage
    done = sum(1 for name in names if status[name] == "done")
    if not done:
        return NEW, ""
    stale = staleness(run, run.load_config())
    if stale:
        return STALE, ", ".join(stale)
    return (DONE, "") if done == len(names) else (PARTIAL, f"{done}/{len(names)} done")


def summarize(run: RunDir) -> RunSummary:
    """The summary of one run; never raises for a damaged or vanished run (its status says so)."""
    created = None
    try:
        state = _read_json(run.state_path)
        stages = _field(state, "stages") if state is not None else {}
        if not isinstance(stages, dict) or not all(isinstance(v, dict) for v in stages.values()):
            raise _Unreadable("state.json: not a run state (no stages)")
        created = _number(_field(state, "created")) or Path(run.path).stat().st_mtime
        classes = _read_json(run.classes_json)
        summary = _read_json(run.train_summary)
        metrics = _read_json(run.evaluate_dir / "metrics.json")
        durations = [_number(entry.get("duration_s")) for entry in stages.values() if entry.get("status") == "done"]
        known = [d for d in durations if d is not None]
        if _is_locked(run):
            status = RUNNING
            detail = next((str(name) for name, entry in stages.items() if entry.get("status") == "running"), "")
        elif cut_short := unfinished_changes(run.path):
            # parts of two decisions until a runner finishes the change: never shown as done or stale
            status, detail = INTERRUPTED, f"{cut_short[0]}, cut short: --resume finishes it"
        else:
            try:
                status, detail = _status(run, stages)
            except (AttributeError, KeyError, TypeError, ValueError, OverflowError) as exc:
                # provenance records of the wrong shape (a hand-edited or foreign state.json)
                raise _Unreadable(f"state.json: stage records unreadable ({type(exc).__name__})") from exc
        return RunSummary(
            run,
            status,
            detail,
            classes=len(classes) if isinstance(classes, list) else None,
            val_accuracy=_number(_field(summary, "val_accuracy")),
            test_accuracy=_number(_field(metrics, "accuracy")),
            duration_s=sum(known) if known else None,
            created=created,
        )
    except _Unreadable as exc:
        return RunSummary(run, DAMAGED, str(exc), created=created or _modified(run))
    except RunError as exc:  # a damaged change journal: the error names it
        return RunSummary(run, DAMAGED, str(exc), created=created or _modified(run))
    except CarclfError as exc:  # its config.yaml no longer loads
        return RunSummary(run, DAMAGED, f"config.yaml: {exc}", created=created or _modified(run))
    except OSError as exc:  # the folder vanished or became unreadable while being read
        return RunSummary(run, DAMAGED, exc.strerror or str(exc), created=created or _modified(run))


def _modified(run: RunDir) -> float | None:
    """The run folder's modification time: the age of a run whose state cannot be read."""
    try:
        return Path(run.path).stat().st_mtime
    except OSError:
        return None


def summaries(root: Path | str) -> Iterator[RunSummary]:
    """The runs under ``root``, newest first, summarised one at a time (a caller can show each as it comes)."""
    for run in reversed(list_runs(root)):
        yield summarize(run)
