"""Run directories: create, reopen, lock, atomic writes, and the ``events.jsonl`` log.

A run directory is the single source of truth of a run: ``config.yaml`` (resolved), ``events.jsonl``
(append-only), ``state.json`` (small summary of stage statuses) and one sub-folder per stage. Every
file other than the event log is written to a temporary name and renamed, so a kill never leaves a
half-written file behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import config as config_mod
from .events import Event, from_dict, to_json

CONFIG_FILE = "config.yaml"
EVENTS_FILE = "events.jsonl"
STATE_FILE = "state.json"
LOCK_FILE = ".lock"


class RunError(RuntimeError):
    """A problem with a run directory (missing, locked, unreadable)."""


# --- atomic writes -------------------------------------------------------------------------------

TEMP_PREFIX = ".tmp-"


def _temp_beside(path: Path) -> tuple[int, str]:
    """A new temporary file in ``path``'s folder, named ``.tmp-XXXX-<name>``: it ends with the whole
    target name (Keras picks the format from endings such as ``.weights.h5``), and the prefix lets
    :func:`remove_stale_temp_files` find what a killed writer left behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=f"-{path.name}", dir=path.parent)


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Delete temporary files of interrupted atomic writes under ``folder``; returns what it removed.

    Only call this while holding the run's lock: a live writer's temporary file looks the same.
    """
    removed = []
    for tmp in Path(folder).rglob(f"{TEMP_PREFIX}*"):
        if tmp.is_file():
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a writer that wants a file name (pandas, Keras);
    rename it into place only when the block succeeds."""
    path = Path(path)
    fd, tmp = _temp_beside(path)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --- event log -----------------------------------------------------------------------------------

# Events after which the log is flushed to disk at once; others wait at most FLUSH_INTERVAL_S.
_FLUSH_NOW = {"run_started", "run_finished", "stage_started", "stage_finished", "stage_failed",
              "stage_interrupted", "epoch_ended", "patience", "confusion"}
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


def parse_lines(data: bytes, start_line: int = 1) -> tuple[list[Event], list[int], int]:
    """Parse complete lines of an event log chunk; returns events, bad line numbers and bytes used.

    A trailing line without its newline is left unconsumed: it may still be being written.
    """
    events: list[Event] = []
    bad: list[int] = []
    end = data.rfind(b"\n") + 1
    for number, raw in enumerate(data[:end].splitlines(), start=start_line):
        if not raw.strip():
            continue
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


# --- run directory -------------------------------------------------------------------------------

def _timestamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


@dataclasses.dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def events_path(self) -> Path:
        return self.path / EVENTS_FILE

    @property
    def state_path(self) -> Path:
        return self.path / STATE_FILE

    @property
    def name(self) -> str:
        return self.path.name

    def stage_dir(self, stage: str) -> Path:
        folder = self.path / stage
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def load_config(self) -> config_mod.Config:
        return config_mod.load(self.config_path)

    def read_state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {"stages": {}}

    def update_stage_state(self, stage: str, **fields: Any) -> None:
        state = self.read_state()
        state.setdefault("stages", {}).setdefault(stage, {}).update(fields)
        write_json_atomic(self.state_path, state)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run's lock for the block; a second runner on the same run fails with RunError."""
        handle = open(self.path / LOCK_FILE, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise RunError(f"{self.path}: another runner is working on this run") from exc
            raise
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            remove_stale_temp_files(self.path)
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()

    def is_locked(self) -> bool:
        """True while a runner holds the lock (the run is in progress)."""
        try:
            handle = open(self.path / LOCK_FILE, "a+")
        except OSError:
            return False
        with handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            return False


def create_run(config: config_mod.Config, root: Path | None = None) -> RunDir:
    """Make ``<root>/<timestamp>-<name>/`` (never reusing an existing folder) and store the config."""
    root = Path(root if root is not None else config.run.root)
    root.mkdir(parents=True, exist_ok=True)
    base = f"{_timestamp()}-{config.run.name}"
    for attempt in range(1000):
        path = root / (base if attempt == 0 else f"{base}-{attempt + 1}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        run = RunDir(path)
        write_text_atomic(run.config_path, config_mod.dump(config))
        write_json_atomic(run.state_path, {"stages": {}, "created": time.time()})
        return run
    raise RunError(f"{root}: could not find a free run folder name for {base}")


def open_run(path: Path | str, root: Path | str | None = None) -> RunDir:
    """Open an existing run by path, or by folder name under ``root``."""
    candidate = Path(path)
    if not candidate.is_dir() and root is not None:
        candidate = Path(root) / str(path)
    if not (candidate / CONFIG_FILE).is_file():
        raise RunError(f"{path}: not a run directory (no {CONFIG_FILE})")
    return RunDir(candidate)


def list_runs(root: Path | str) -> list[RunDir]:
    """Runs under ``root``, oldest first (folder names start with their timestamp)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return [RunDir(p) for p in sorted(root.iterdir()) if (p / CONFIG_FILE).is_file()]


def latest_run(root: Path | str) -> RunDir | None:
    runs = list_runs(root)
    return runs[-1] if runs else None
