"""Event lines are input: validation, the reader's limits, the reducer's safety net, the display.

Property tests feed arbitrary JSON in every field of every event kind through ``eventlog.parse_lines``
and ``EventFollower``, ``runstate.fold`` and the dashboard's and console's text renderers (the same
through the real dashboard is in tests/faults/test_hostile.py)."""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carclf_core import events as ev
from carclf_core import runstate as rs
from carclf_core.display import printable
from carclf_core.errors import RunError
from carclf_core.eventlog import MAX_LINE_BYTES, EventFollower, JsonlSink, parse_lines, read_events
from carclf_tui.console import ConsoleRenderer
from carclf_tui.sample_run import run_events
from carclf_tui.widgets import logview, prefilter, stages, training

from .event_strategies import HOSTILE_TEXT, raw_lines

# --- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("line", "reason"), [
    ({"kind": "stage_started", "stage": "index", "total": "many"},
     "stage_started.total: expected an integer or null, got 'many'"),
    ({"kind": "log", "level": "info", "message": 123}, "log.message: expected text, got 123"),
    ({"kind": "stage_finished", "stage": "index", "duration_s": float("nan"), "summary": ""},
     "stage_finished.duration_s: nan is not a finite number"),
    ({"kind": "stage_finished", "stage": "index", "duration_s": float("inf"), "summary": ""},
     "stage_finished.duration_s: inf is not a finite number"),
    ({"kind": "epoch_started", "epoch": 10**400, "epochs": 3}, "epoch_started.epoch: "),
    ({"kind": "stage_progress", "stage": "x", "done": 1, "info": {"a": [[[[[[[[[[1]]]]]]]]]]}},
     "nested deeper than 8 levels"),
    ({"kind": "confusion", "epoch": 1, "classes": ["a", "b"], "matrix": [[1, 2]]}, "not 2 x 2 for 2 classes"),
    ({"kind": "config_changed", "changes": {"train.patience": [1]}}, "expected [old, new]"),
    ({"kind": "log", "level": "shout", "message": "x"}, "log.level: 'shout' is not one of"),
    ({"kind": "stage_started"}, "stage_started: missing stage"),
    ({"kind": ["stage_started"]}, "unknown event kind"),
    ([1, 2], "expected a JSON object, got list"),
])
def test_invalid_events_are_refused_with_the_field_and_the_reason(line, reason) -> None:
    events, bad, _ = parse_lines(json.dumps(line).encode() + b"\n", start_line=7)
    assert events == [] and bad == [7]
    assert reason in bad[0].reason


def test_what_the_stages_write_is_valid_nan_losses_included() -> None:
    """The validator accepts every event a real run writes (the recorded run is built as the stages
    build theirs), and NaN or infinite losses and metrics, which a diverging training really reports."""
    written = [*run_events(epochs=3, steps=4),
               ev.BatchEnded(epoch=2, step=14, steps=20, loss=float("nan"), accuracy=float("inf")),
               ev.EpochEnded(epoch=2, epochs=3, metrics={"loss": float("nan"), "val_loss": float("-inf")},
                             learning_rate=float("nan"), images_per_s=float("inf"), eta_s=float("nan")),
               ev.PatienceChanged(epoch=2, wait=1, patience=3, best=None, best_epoch=None)]
    data = b"".join(ev.to_json(e).encode() + b"\n" for e in written)
    events, bad, _ = parse_lines(data)
    assert bad == [] and len(events) == len(written)
    assert math.isnan(events[-3].loss) and events[-2].metrics["val_loss"] == float("-inf")


def test_a_deeply_nested_line_is_reported_not_raised() -> None:
    events, bad, _ = parse_lines(b"[" * 100_000 + b"]" * 100_000 + b"\n")
    assert events == [] and bad == [1] and bad[0].reason == "nested too deeply"


# --- the reader's limits ---------------------------------------------------------------------------


def _append(path: Path, data: bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(data)


def test_an_unfinished_last_line_is_never_read_twice(tmp_path) -> None:
    """The writer has not ended its line: each poll reads only what was appended since (the issue
    measured 27 % of a core re-reading a 50 MB tail every 0.1 s)."""
    path = tmp_path / "events.jsonl"
    line = ev.to_json(ev.LogLine(level="info", message="x" * 1000)).encode()
    _append(path, line[:600])
    follower = EventFollower(path)
    assert follower.read_new() == ([], [])
    for _ in range(20):
        assert follower.read_new() == ([], [])
    assert follower.bytes_read == 600
    _append(path, line[600:] + b"\n")
    events, bad = follower.read_new()
    assert [e.message for e in events] == ["x" * 1000] and bad == []
    assert follower.bytes_read == len(line) + 1


def test_a_line_over_the_limit_is_reported_once_skipped_and_reading_goes_on(tmp_path) -> None:
    path = tmp_path / "events.jsonl"
    good = ev.to_json(ev.LogLine(level="info", message="after")).encode() + b"\n"
    _append(path, good)
    _append(path, b'{"kind":"log","message":"' + b"y" * (MAX_LINE_BYTES + 10))  # a writer gone wild, no newline
    follower = EventFollower(path)
    events, bad = follower.read_new()
    assert [e.message for e in events] == ["after"]
    assert bad == [2] and bad[0].reason == "longer than 1 MiB"
    read = follower.bytes_read
    for _ in range(5):  # idle: nothing new is read, nothing reported again
        assert follower.read_new() == ([], [])
    assert follower.bytes_read == read
    _append(path, b"y" * 1000 + b'"}\n' + good)
    events, bad = follower.read_new()
    assert [e.message for e in events] == ["after"] and bad == []
    assert follower.next_line == 4


@pytest.mark.parametrize("kind", ["symlink", "folder", "fifo"])
def test_an_event_log_that_is_not_a_plain_file_is_refused(tmp_path, kind) -> None:
    path = tmp_path / "events.jsonl"
    target = tmp_path / "elsewhere.txt"
    target.write_text(ev.to_json(ev.LogLine(level="info", message="through the link")) + "\n")
    if kind == "symlink":
        path.symlink_to(target)
    elif kind == "folder":
        path.mkdir()
    else:
        os.mkfifo(path)
    follower = EventFollower(path)
    assert follower.read_new() == ([], [])  # a FIFO must not block the reader either
    assert follower.problem and str(path) in follower.problem
    with pytest.raises(RunError, match="events.jsonl: is a"):
        JsonlSink(path)
    with pytest.raises(RunError):
        read_events(path)
    assert target.read_text().count("\n") == 1  # nothing was written through the link


def test_a_log_replaced_or_cut_while_followed_is_followed_from_its_end(tmp_path) -> None:
    path = tmp_path / "events.jsonl"
    line = ev.to_json(ev.LogLine(level="info", message="one")).encode() + b"\n"
    _append(path, line * 3)
    follower = EventFollower(path)
    assert len(follower.read_new()[0]) == 3
    replacement = tmp_path / "other.jsonl"
    replacement.write_bytes(line * 5)
    os.replace(replacement, path)  # another file under the name: its old lines are not events of this run
    assert follower.read_new() == ([], []) and "was replaced by another file" in follower.problem
    _append(path, line)
    assert len(follower.read_new()[0]) == 1 and follower.problem is None
    path.write_bytes(b"")
    assert follower.read_new() == ([], []) and "shrank from" in follower.problem


def test_the_reducer_survives_an_event_that_raises() -> None:
    """Validation keeps such events out of the log; one made in-process bypasses it, and the reducer's
    safety net still costs only that event."""
    bad = ev.ConfigChanged(changes={"train.patience": [1]})  # not [old, new]: unpacking it raises
    state = rs.fold(rs.new_state(["index"]), [bad, ev.StageStarted(stage="index")])
    assert state.fold_errors == 1 and state.stages["index"].status == "running"
    assert "a config_changed event could not be folded (ValueError" in state.log[0].message


# --- properties ------------------------------------------------------------------------------------

_HIDDEN = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def assert_displayable(text: str) -> None:
    """Nothing a terminal would act on or hide: no control, format, separator or surrogate character."""
    bad = [c for c in text if c != "\n" and unicodedata.category(c) in _HIDDEN]
    assert not bad, f"raw {bad[:3]!r} in {text[:200]!r}"


def test_printable_escapes_what_the_issue_measured() -> None:
    for text in HOSTILE_TEXT:
        assert_displayable(printable(text))
    assert printable("\x1b]0;t\x07") == "\\x1b]0;t\\x07"
    assert printable("a\nb") == "a⏎b" and printable("\u202e") == "\\u202e" and printable("\x9b") == "\\x9b"
    assert printable("Škoda 北京 [/old]") == "Škoda 北京 [/old]"  # letters and brackets are kept


def _rendered(state: rs.RunState) -> list[str]:
    """Every text the dashboard's pure renderers make of ``state``."""
    out = [logview.entry_text(entry).plain for entry in state.log]
    for stage in state.stages.values():
        out += [stages.status_text(stage).plain, stages.progress_line(stage)]
        out += [cell.plain if hasattr(cell, "plain") else str(cell) for cell in stages.StagesTable._cells(stage, 0.0)]
    items = [*training.patience_items(state), training.learning_rate_item(state),
             *training.progress_items(state, rs.training_progress(state, 0.0), 0.0)]
    for item in items:
        out += [text.plain for text in (item if isinstance(item, tuple) else (item,)) if text is not None]
    out.append(prefilter.progress_text(state).plain)
    best = state.patience.best_epoch if state.patience else None
    out += [column.value(row, best).plain for row in state.epoch_rows for column in training.COLUMNS]
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(raw_lines, max_size=25), st.integers(0, 20))
def test_any_log_is_read_folded_and_drawn_without_raising(lines, cut) -> None:
    data = b"\n".join(lines) + b"\n"
    events, bad, used = parse_lines(data)
    assert used == len(data)
    assert len(events) + len(bad) == sum(1 for line in lines if line.strip())
    # the same bytes through the follower, written in two parts
    follower_path = Path(tempfile.gettempdir()) / f"carclf-prop-{os.getpid()}.jsonl"
    try:
        follower_path.write_bytes(data[:cut])
        follower = EventFollower(follower_path)
        first, first_bad = follower.read_new()
        _append(follower_path, data[cut:])
        second, second_bad = follower.read_new()
        assert len(first) + len(second) == len(events) and len(first_bad) + len(second_bad) == len(bad)
    finally:
        follower_path.unlink(missing_ok=True)
    state = rs.fold(rs.new_state(["index", "prefilter", "split", "train", "evaluate"]), events, bad)
    assert state.fold_errors == 0  # validation let nothing through that the reducer cannot fold
    assert state.bad_lines == len(bad)
    for text in _rendered(state):
        assert_displayable(text)
    out = io.StringIO()
    console = ConsoleRenderer(out, interactive=False)
    for event in events:
        console(event)
    console.close()
    assert "console: cannot show" not in out.getvalue()
    assert_displayable(out.getvalue())


def test_a_confusion_matrix_of_3000_classes_travels_as_its_cells_within_a_line():
    """A validation sample of 2,000 images over 3,000 classes: at most 2,000 non-zero cells, so the
    event is a few hundred KB where the dense matrix was 18 MB (and skipped, over the line limit)."""
    import numpy as np

    rng = np.random.default_rng(0)
    n, sample = 3000, 2000
    true = rng.integers(0, n, sample)
    predicted = np.where(rng.random(sample) < 0.6, true, rng.integers(0, n, sample))
    counts = np.zeros((n, n), dtype=np.int64)
    np.add.at(counts, (true, predicted), 1)
    classes = tuple(f"Make{i}_Model {i}" for i in range(n))
    event = ev.ConfusionReady.of(counts, epoch=4, classes=classes, sample=sample)
    line = ev.to_json(event)
    assert len(line.encode()) < MAX_LINE_BYTES // 2 and len(event.cells) == np.count_nonzero(counts)
    back = ev.from_dict(json.loads(line))
    assert back == event and np.array_equal(back.counts(), counts)


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"cells": [[0, 2, 1]]}, "beyond the 2 classes"),
        ({"cells": [[0, 1, -1]]}, "out of range"),
        ({"cells": [[0, 1]]}, "expected 3 items"),
        ({"cells": [[0, 1, 1]], "matrix": [[0, 1], [0, 0]]}, "one form or the other"),
        ({"matrix": [[0, 1]]}, "not 2 x 2"),
    ],
)
def test_a_confusion_event_that_does_not_fit_its_classes_is_refused(fields, words):
    with pytest.raises(ev.InvalidEvent, match=words):
        ev.from_dict({"kind": "confusion", "epoch": 1, "classes": ["a", "b"], **fields})
