"""Run directories: create, reopen, lock, atomic writes; :class:`RunDir` knows the run's files.

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
from .errors import RunError

CONFIG_FILE = "config.yaml"
TYPED_CONFIG_FILE = "config.typed.yaml"
"""The config as the user typed it (paths unresolved), written once beside ``config.yaml``."""
EVENTS_FILE = "events.jsonl"
STATE_FILE = "state.json"
LOCK_FILE = ".lock"


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


# --- run directory -------------------------------------------------------------------------------


def _timestamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def _resolved_note(changed: dict[str, tuple[str, str]]) -> str:
    """YAML comment lines naming each path made absolute (JSON-quoted: a name cannot end the comment)."""
    if not changed:
        return ""
    lines = [
        f"# {key}: typed {json.dumps(typed)}, resolved to {json.dumps(resolved)}"
        for key, (typed, resolved) in changed.items()
    ]
    return "\n".join(["# paths resolved when the run was created:", *lines, ""])


@dataclasses.dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def typed_config_path(self) -> Path:
        return self.path / TYPED_CONFIG_FILE

    @property
    def events_path(self) -> Path:
        return self.path / EVENTS_FILE

    @property
    def state_path(self) -> Path:
        return self.path / STATE_FILE

    @property
    def name(self) -> str:
        return self.path.name

    # Each stage's folder and the files other stages read from it; the stage module that writes a
    # file owns its reader, these only name the places.
    @property
    def index_dir(self) -> Path:
        return self.path / "index"

    @property
    def index_csv(self) -> Path:
        return self.index_dir / "index.csv"

    @property
    def prefilter_dir(self) -> Path:
        return self.path / "prefilter"

    @property
    def kept_csv(self) -> Path:
        return self.prefilter_dir / "kept.csv"

    @property
    def split_dir(self) -> Path:
        return self.path / "split"

    @property
    def splits_csv(self) -> Path:
        return self.split_dir / "splits.csv"

    @property
    def classes_json(self) -> Path:
        return self.split_dir / "classes.json"

    @property
    def train_dir(self) -> Path:
        return self.path / "train"

    @property
    def best_model(self) -> Path:
        return self.train_dir / "best.keras"

    @property
    def train_summary(self) -> Path:
        return self.train_dir / "summary.json"

    @property
    def evaluate_dir(self) -> Path:
        return self.path / "evaluate"

    def stage_dir(self, stage: str) -> Path:
        """The stage's folder, created on first use."""
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
    """Make ``<root>/<timestamp>-<name>/`` (never reusing an existing folder) and store the config.

    Every path in the config (``config_mod.PATH_KEYS``) is resolved against the working directory
    now, so a resume or the dashboard started from another folder reads the same data. The run's
    ``config.yaml`` holds the resolved config (a header comment names what changed) and
    ``config.typed.yaml`` the config as it was typed.
    """
    typed = config
    config, changed = config_mod.resolve_paths(config)
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
        write_text_atomic(run.config_path, _resolved_note(changed) + config_mod.dump(config))
        write_text_atomic(
            run.typed_config_path,
            "# the configuration as typed; config.yaml is what the run uses\n" + config_mod.dump(typed),
        )
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
