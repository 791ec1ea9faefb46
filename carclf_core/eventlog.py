"""The one reader and writer of a run's ``events.jsonl``: one JSON event a line, append-only.

The runner appends through :class:`JsonlSink` (buffered, flushed at stage and epoch ends and every
second); ``--attach``, the dashboard's follower and any later analysis read through
:func:`parse_lines` / :func:`read_events`, which tolerate malformed lines and a torn last line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Container
from pathlib import Path

from .events import Event, from_dict, to_json

# --- event log -----------------------------------------------------------------------------------

# Events after which the log is flushed to disk at once; others wait at most FLUSH_INTERVAL_S.
_FLUSH_NOW = {
    "run_started",
    "run_finished",
    "stage_started",
    "stage_finished",
    "stage_failed",
    "stage_interrupted",
    "epoch_ended",
    "patience",
    "confusion",
}
FLUSH_INTERVAL_S = 1.0


class JsonlSink:
    """Appends events to ``events.jsonl``; buffered, flushed at stage and epoch ends and every second."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.torn_line = _torn_tail(self.path)
        """1-based number of a last line left unfinished by a killed writer, else None."""
        self._handle = open(self.path, "a", encoding="utf-8")
        if self.torn_line is not None:
            # end the torn line, so the next event starts a line of its own and stays readable
            self._handle.write("\n")
        self._last_flush = time.monotonic()

    def __call__(self, event: Event) -> None:
        self._handle.write(to_json(event) + "\n")
        now = time.monotonic()
        if event.kind in _FLUSH_NOW or now - self._last_flush >= FLUSH_INTERVAL_S:
            self.flush()
            self._last_flush = now

    def flush(self) -> None:
        if not self._handle.closed:
            self._handle.flush()
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        if not self._handle.closed:
            self.flush()
            self._handle.close()


def _torn_tail(path: Path) -> int | None:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell() == 0:
                return None
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) == b"\n":
                return None
            handle.seek(0)
            return handle.read().count(b"\n") + 1
    except FileNotFoundError:
        return None


@dataclasses.dataclass(frozen=True)
class EventLog:
    """What :func:`read_events` found: the events and any lines it could not read."""

    events: list[Event]
    bad_lines: list[int]
    """1-based numbers of malformed lines (a torn last line after a kill is the usual one)."""
    offset: int
    """Byte offset after the last complete line, where a follower continues."""


SkipLine = Callable[[list[bytes]], Container[int]]
"""Given a chunk's raw lines, the 0-based indices not to parse (a follower's fast path)."""


def parse_lines(data: bytes, start_line: int = 1, skip: SkipLine | None = None) -> tuple[list[Event], list[int], int]:
    """Parse complete lines of an event log chunk; returns events, bad line numbers and bytes used.

    A trailing line without its newline is left unconsumed: it may still be being written. Lines
    whose index ``skip`` returns are passed over unparsed (a malformed one among them goes unreported).
    """
    events: list[Event] = []
    bad: list[int] = []
    end = data.rfind(b"\n") + 1
    lines = data[:end].split(b"\n")[:-1]
    skipped = skip(lines) if skip is not None else ()
    for index, raw in enumerate(lines):
        if index in skipped or not raw.strip():
            continue
        number = start_line + index
        try:
            events.append(from_dict(json.loads(raw)))
        except (ValueError, TypeError):
            bad.append(number)
    return events, bad, end


def read_events(path: Path) -> EventLog:
    """Read a whole event log, tolerating malformed lines and a torn last line."""
    data = Path(path).read_bytes()
    events, bad, end = parse_lines(data)
    if data[end:].strip():
        bad.append(data[:end].count(b"\n") + 1)
    return EventLog(events, bad, end)


class EventFollower:
    """Reads the complete lines appended to an event log since the last read."""

    def __init__(self, path: Path, skip: SkipLine | None = None):
        self.path = Path(path)
        self.skip = skip
        self.offset = 0
        self.next_line = 1

    def read_new(self) -> tuple[list[Event], list[int]]:
        """New events and the numbers of malformed lines since the last call.

        A line still being written (no newline yet) is left for the next call.
        """
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return [], []
        events, bad, used = parse_lines(data, self.next_line, self.skip)
        self.offset += used
        self.next_line += data.count(b"\n", 0, used)
        return events, bad
