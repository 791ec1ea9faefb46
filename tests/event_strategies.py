"""Hypothesis strategies for hostile event logs: every event kind, every field either of its annotated
type (with hostile text, NaN, infinities, huge and negative numbers) or any JSON value at all, plus
lines that are not events. Shared by tests/test_events.py (the pure reader, reducer and renderers)
and tests/faults/test_hostile.py (the same through the real dashboard)."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any

from hypothesis import strategies as st

from carclf_core import events as ev

HOSTILE_TEXT = (
    "\x1b]0;pwned title\x07",
    "\x1b]52;c;SGVsbG8gY2xpcGJvYXJk\x07",
    "\x1b[2J\x1b[H",
    "car\n[index] done in 0.1s: 12 images, all good",
    "[/old]",
    "[bold red]not markup[/]",
    ":smile: [link=file:///etc/passwd]x[/link]",
    "\u202egpj.exe",
    "zero\u200bwidth\ufeff",
    "\x9b31mC1 CSI",
    "\r\x08\x7f",
    "\ud800 lone surrogate",
    "Škoda Octavia 北京",
)
EVENT_CLASSES = tuple(ev._REGISTRY.values())

hostile_text = st.one_of(
    st.sampled_from(HOSTILE_TEXT),
    st.text(max_size=30),
    st.text(st.characters(categories=("Cc", "Cf", "Zl", "Zp", "Lo", "So")), max_size=12),
)
odd_numbers = st.sampled_from([float("nan"), float("inf"), float("-inf"), 10**400, -1, 2**63, 1e308, -0.0, 1e-320])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | odd_numbers | hostile_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(hostile_text, children, max_size=4),
    max_leaves=12,
)


def typed(hint: Any, field: str, odd: bool) -> st.SearchStrategy:
    """Values of an annotated type. Plain ones are valid (hostile text, and NaN or infinities where a
    field may hold them), so they reach the reducer and the display; ``odd`` ones are also out of
    range, NaN, infinite or huge anywhere, which the validator refuses where it must."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is int:
        return st.integers(-5, 10**7) | odd_numbers if odd else st.integers(0, 10**6)
    if hint is float:
        if odd:
            return st.floats(allow_nan=True, allow_infinity=True) | odd_numbers
        return st.floats(allow_nan=True, allow_infinity=True) if field in ev.NONFINITE_OK else st.floats(0, 1e6)
    if hint is str:
        return hostile_text
    if hint is Any:
        return json_values
    if origin in (types.UnionType, typing.Union):
        return st.one_of(*(st.none() if arg is type(None) else typed(arg, field, odd) for arg in args))
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return st.lists(typed(args[0], field, odd), max_size=6)
    if origin is tuple:
        return st.tuples(*(typed(arg, field, odd) for arg in args)).map(list)
    if origin is list:
        return st.lists(typed(args[0], field, odd), max_size=4)
    if origin is dict:
        return st.dictionaries(hostile_text, typed(args[1], field, odd), max_size=4)
    raise TypeError(hint)


_WORDS = {"level": ("info", "warning", "error"), "status": ("done", "failed", "interrupted")}


@st.composite
def event_dicts(draw, cls: type[ev.Event] | None = None) -> dict[str, Any]:
    """An event's JSON object: each field of its type or, in a wild event, sometimes anything at all;
    now and then a field left out."""
    cls = cls or draw(st.sampled_from(EVENT_CLASSES))
    hints = typing.get_type_hints(cls)
    data: dict[str, Any] = {"kind": cls.kind}
    mode = draw(st.sampled_from(["plain", "plain", "odd", "wild"]))
    missing = draw(st.sampled_from([f.name for f in dataclasses.fields(cls)])) if draw(st.integers(0, 4)) == 0 else ""
    for field in dataclasses.fields(cls):
        if field.name == missing:
            continue
        if mode == "wild" and draw(st.integers(0, 3)) == 0:
            data[field.name] = draw(json_values)
        elif field.name in _WORDS and mode == "plain":
            data[field.name] = draw(st.sampled_from(_WORDS[field.name]))
        else:
            data[field.name] = draw(typed(hints[field.name], field.name, odd=mode == "odd"))
    return data


@st.composite
def consistent_events(draw) -> dict[str, Any]:
    """Valid events whose shape rules hold (square matrices, ordered edges) with hostile names, so
    hostile text reaches the heatmap, the tables and the examples lists."""
    n = draw(st.integers(1, 6))
    classes = draw(st.lists(hostile_text, min_size=n, max_size=n))
    matrix = draw(st.lists(st.lists(st.integers(0, 10**6), min_size=n, max_size=n), min_size=n, max_size=n))
    # the sparse form carclf writes, or the dense one of older logs
    cells = [[i, j, count] for i, row in enumerate(matrix) for j, count in enumerate(row) if count]
    form = draw(st.sampled_from([{"cells": cells}, {"matrix": matrix}]))
    bins = draw(st.integers(1, 8))
    counts = draw(st.lists(st.integers(0, 10**6), min_size=bins, max_size=bins))
    pairs = st.lists(st.tuples(hostile_text, st.floats(0, 1)).map(list), max_size=4)
    return draw(st.sampled_from([
        {"kind": "confusion", "epoch": draw(st.integers(0, 10**6)), "classes": classes, **form,
         "split": draw(hostile_text), "sample": draw(st.integers(0, 10**9))},
        {"kind": "prefilter_histogram", "edges": [i / bins for i in range(bins + 1)], "counts": counts,
         "threshold": draw(st.floats(0, 1)), "kept": draw(st.integers(0, 10**6)),
         "scored": draw(st.integers(0, 10**6))},
        {"kind": "prefilter_examples", "kept": draw(pairs), "rejected": draw(pairs)},
        {"kind": "stage_started", "stage": draw(st.sampled_from(["index", "prefilter", "train"]) | hostile_text)},
    ]))


def line_of(value: Any) -> bytes:
    return json.dumps(value).encode()


raw_lines = st.one_of(
    event_dicts().map(line_of),
    consistent_events().map(line_of),
    json_values.map(line_of),
    st.binary(max_size=40).filter(lambda b: b"\n" not in b),
    st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 3000).map(lambda n: b'{"kind":"log","level":"info","message":"x","file":' + b"[" * n + b"]" * n
                             + b"}"),
)
"""One line of an event log, without its newline: an event (valid or not), other JSON, bytes, deep nesting."""
