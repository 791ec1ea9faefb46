"""The one reader and writer of a run's ``events.jsonl``: one JSON event a line, append-only.

The runner appends through :class:`JsonlSink` (buffered, flushed at stage and epoch ends and every
second); ``--attach``, the dashboard's follower and any later analysis read through
:func:`parse_lines` / :func:`read_events` / :class:`EventFollower`, which treat every line as untrusted
input: a malformed or invalid line, or one longer than :data:`MAX_LINE_BYTES`, is skipped and reported
(:class:`BadLine` says which and why), a torn last line is left for later. The log is opened as a
regular file only and never through a symbolic link, for writing and for reading.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from collections.abc import Callable, Container
from pathlib import Path

from .errors import RunError
from .events import Event, from_dict, to_json
from .files import open_regular

MAX_LINE_BYTES = 1 << 20
"""Longest event line read (1 MiB); a longer one is skipped and reported, never held in memory whole."""
MAX_READ_BYTES = 64 << 20
"""Most bytes a follower reads at one call (a long log is replayed over a few calls)."""

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
        """Open (or create) the log for appending.

        Raises:
            RunError: ``path`` is a symbolic link, a folder or another non-file, or cannot be opened.
        """
        self.path = Path(path)
        try:
            fd = open_regular(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
        except OSError as exc:
            raise RunError(f"{self.path}: cannot open the event log ({exc.strerror})") from exc
        self._handle = os.fdopen(fd, "a+", encoding="utf-8")
        self.torn_line = _torn_tail(self._handle.buffer)
        """1-based number of a last line left unfinished by a killed writer, else None."""
        self._handle.seek(0, os.SEEK_END)
        if self.torn_line is not None:
            # end the torn line, so the next event starts a line of its own and stays readable
            self._handle.write("\n")
        self._last_flush = time.monotonic()
        # one writer at a time: the runner's second-signal path writes its last events from another thread
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._handle.write(to_json(event) + "\n")
            now = time.monotonic()
            if event.kind in _FLUSH_NOW or now - self._last_flush >= FLUSH_INTERVAL_S:
                self.flush()
                self._last_flush = now

    def append_last(self, events: list[Event], timeout: float = 2.0) -> bool:
        """Append and flush ``events`` from another thread just before the process ends (``os._exit``).

        Waits at most ``timeout`` seconds for a write in progress in the main thread (which may be
        stuck); returns False, writing nothing, when it did not get its turn.
        """
        if not self._lock.acquire(timeout=timeout):
            return False
        try:
            for event in events:
                self._handle.write(to_json(event) + "\n")
            self.flush()
            return True
        finally:
            self._lock.release()

    def flush(self) -> None:
        if not self._handle.closed:
            self._handle.flush()
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        if not self._handle.closed:
            self.flush()
            self._handle.close()


def _torn_tail(handle) -> int | None:
    """The 1-based number of an unfinished last line of the open log, else None."""
    handle.seek(0, os.SEEK_END)
    if handle.tell() == 0:
        return None
    handle.seek(-1, os.SEEK_END)
    if handle.read(1) == b"\n":
        return None
    handle.seek(0)
    lines = 0
    while block := handle.read(1 << 20):  # counted a block at a time: the log may be large
        lines += block.count(b"\n")
    return lines + 1


class BadLine(int):
    """The 1-based number of a line that was skipped, with :attr:`reason` saying why.

    An ``int``, so readers that count or print line numbers need not know about reasons.
    """

    reason: str

    def __new__(cls, number: int, reason: str = "malformed") -> BadLine:
        line = super().__new__(cls, number)
        line.reason = reason
        return line


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


def _too_long(limit: int) -> str:
    return f"longer than {limit >> 20} MiB" if limit >= 1 << 20 else f"longer than {limit:,} bytes"


def _parse_line(raw: bytes, max_line: int) -> Event:
    if len(raw) > max_line:
        raise ValueError(_too_long(max_line))
    try:
        value = json.loads(raw)
    except RecursionError as exc:
        raise ValueError("nested too deeply") from exc
    except ValueError as exc:  # not JSON, or not UTF-8
        raise ValueError("malformed") from exc
    return from_dict(value)


def parse_lines(
    data: bytes, start_line: int = 1, skip: SkipLine | None = None, max_line: int = MAX_LINE_BYTES
) -> tuple[list[Event], list[int], int]:
    """Parse complete lines of an event log chunk; returns events, bad lines and bytes used.

    A trailing line without its newline is left unconsumed: it may still be being written. Lines
    whose index ``skip`` returns are passed over unparsed (a malformed one among them goes unreported).
    Every other line that is not JSON, not a valid event (:func:`carclf_core.events.from_dict`), or
    longer than ``max_line`` bytes is a :class:`BadLine` with its reason; nothing is raised.
    """
    events: list[Event] = []
    bad: list[int] = []
    end = data.rfind(b"\n") + 1
    lines = data[:end].split(b"\n")[:-1]
    skipped = skip(lines) if skip is not None else ()
    for index, raw in enumerate(lines):
        if index in skipped or not raw.strip():
            continue
        try:
            events.append(_parse_line(raw, max_line))
        except Exception as exc:  # whatever a line holds, the reader goes on: it is reported instead
            reason = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
            bad.append(BadLine(start_line + index, reason))
    return events, bad, end


def read_events(path: Path) -> EventLog:
    """Read a whole event log, tolerating malformed lines and a torn last line.

    Raises:
        RunError: ``path`` is a symbolic link, a folder or another non-file.
        FileNotFoundError: there is no log.
    """
    with os.fdopen(open_regular(path), "rb") as handle:
        data = handle.read()
    events, bad, end = parse_lines(data)
    if data[end:].strip():
        bad.append(BadLine(data[:end].count(b"\n") + 1, "cut short (no newline at the end)"))
    return EventLog(events, bad, end)


class EventFollower:
    """Reads the complete lines appended to an event log since the last read.

    The log is read from where the last call stopped, at most :data:`MAX_READ_BYTES` a call. A last
    line without its newline is kept (up to :data:`MAX_LINE_BYTES`) and only what is appended after it
    is read next time, so a writer that never ends its line costs nothing while idle; a line that
    grows past the limit is reported once and skipped up to its newline. While the file cannot be
    followed (a symbolic link, a folder, a FIFO, unreadable) :attr:`problem` says why.
    """

    def __init__(
        self, path: Path, skip: SkipLine | None = None, max_line: int = MAX_LINE_BYTES, max_read: int = MAX_READ_BYTES
    ):
        self.path = Path(path)
        self.skip = skip
        self.max_line = max_line
        self.max_read = max_read
        self.offset = 0
        """Bytes consumed: parsed, or skipped as part of an over-long line (an unfinished line waits)."""
        self.next_line = 1
        self.problem: str | None = None
        """Why the log cannot be read now (None while it can)."""
        self.behind = False
        """The last call stopped at :attr:`max_read`: more is there to read at once."""
        self.bytes_read = 0
        """Bytes read from the file so far (each byte once, however long a line stays unfinished)."""
        self._tail = b""  # bytes after ``offset`` already read: the start of an unfinished line
        self._long_line = False  # the line at ``offset`` is over ``max_line``: skip to its newline
        self._read_to = 0  # file position read up to
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file being followed

    def _read(self) -> bytes | None:
        try:
            fd = open_regular(self.path)
        except FileNotFoundError:
            self.problem = None  # not written yet
            return None
        except (RunError, OSError) as exc:
            self.problem = str(exc) if isinstance(exc, RunError) else f"{self.path}: cannot read ({exc.strerror})"
            return None
        with os.fdopen(fd, "rb") as handle:
            stat = os.fstat(handle.fileno())
            size, identity = stat.st_size, (stat.st_dev, stat.st_ino)
            changed = self._identity is not None and identity != self._identity
            self._identity = identity
            if size < self._read_to or changed:
                # not the log that was being read: what was folded stays, the rest of this one is new
                what = "was replaced by another file" if changed else f"shrank from {self._read_to:,} to {size:,} bytes"
                self.problem = f"{self.path}: {what}; following its end"
                self.offset = self._read_to = size
                self._tail, self._long_line = b"", False
                return None
            self.problem = None
            if size == self._read_to:
                return b""  # the idle case: one fstat, nothing read
            handle.seek(self._read_to)
            data = handle.read(self.max_read)
        self._read_to += len(data)
        self.bytes_read += len(data)
        self.behind = self._read_to < size
        return data

    def read_new(self) -> tuple[list[Event], list[int]]:
        """New events and the bad lines (:class:`BadLine`) since the last call.

        A line still being written (no newline yet) is left for the next call.
        """
        data = self._read()
        if not data:
            return [], []
        bad: list[int] = []
        if self._long_line:
            end = data.find(b"\n")
            if end < 0:
                self.offset += len(data)
                return [], []
            self.offset += end + 1
            self.next_line += 1
            self._long_line = False
            data = data[end + 1 :]
        data = self._tail + data
        events, parsed_bad, used = parse_lines(data, self.next_line, self.skip, self.max_line)
        bad.extend(parsed_bad)
        self.offset += used
        self.next_line += data.count(b"\n", 0, used)
        self._tail = data[used:]
        if len(self._tail) > self.max_line:
            bad.append(BadLine(self.next_line, _too_long(self.max_line)))
            self.offset += len(self._tail)
            self._tail = b""
            self._long_line = True
        return events, bad
