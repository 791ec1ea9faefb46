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
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import config as config_mod
from .errors import RunError
from .files import follow_umask, nonregular_reason, open_regular

CONFIG_FILE = "config.yaml"
TYPED_CONFIG_FILE = "config.typed.yaml"
"""The config as the user typed it (paths unresolved), written once beside ``config.yaml``."""
EVENTS_FILE = "events.jsonl"
STATE_FILE = "state.json"
LOCK_FILE = ".lock"
MARKER_FILE = ".carclf-run"
"""Marks a folder as a carclf run (a small versioned JSON file written at creation)."""
RUN_FORMAT = 1
CONFIG_HISTORY_FILE = "config_history.jsonl"
PREVIOUS_DIR = "previous"
"""Where a re-run stage's earlier results are kept (``previous/<stage>-<timestamp>/``)."""
REPLACING = "replacing"
"""``state.json``'s key, in the entry of a done stage being run again from scratch, naming where its
earlier results go (``previous/<stage>-<timestamp>``) until the stage is done again."""
STAGE_FOLDERS = ("index", "prefilter", "split", "train", "evaluate")
"""The folders stages write into; the only places the temporary-file sweep looks."""


# --- atomic writes -------------------------------------------------------------------------------

TEMP_PREFIX = ".tmp-"


def _temp_beside(path: Path) -> tuple[int, str]:
    """A new temporary file in ``path``'s folder, named ``.tmp-XXXX-<name>``: it ends with the whole
    target name (Keras picks the format from endings such as ``.weights.h5``), and the prefix lets
    :func:`remove_stale_temp_files` find what a killed writer left behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=f"-{path.name}", dir=path.parent)
    # renamed into place, it is a result teammates may read: not mkstemp's 0600. A file system that
    # refuses chmod (some network mounts) keeps the file private rather than failing the write.
    with contextlib.suppress(OSError):
        follow_umask(fd)
    return fd, name


# What mkstemp/mkdtemp make in _temp_beside and the SavedModel export: the prefix, 8 random
# characters, a dash; nothing a user names by hand looks like this by accident. Also a Change's staged
# files whose change was never committed (the sweep runs after complete_changes has used the others).
_TEMP_NAME = re.compile(
    re.escape(TEMP_PREFIX) + r"(savedmodel-)?[a-z0-9_]{8}(-.+)?|" + re.escape(".pending-") + r"[0-9a-f]{8}-.+"
)


def remove_stale_temp_files(run_path: Path) -> list[Path]:
    """Delete what interrupted atomic writes left in a run; returns what it removed.

    Only the run's own folder and its stage folders are looked at (never a folder a symlink points
    to), and only names this module's writers make. Only call this while holding the run's lock: a
    live writer's temporary file looks the same.
    """
    removed = []
    root = Path(run_path)
    folders = [root] + [root / name for name in STAGE_FOLDERS if not (root / name).is_symlink()]
    while folders:
        folder = folders.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.is_symlink():
                continue
            if _TEMP_NAME.fullmatch(entry.name):
                with contextlib.suppress(OSError):
                    if entry.is_dir():
                        shutil.rmtree(entry.path)
                    else:
                        os.unlink(entry.path)
                    removed.append(Path(entry.path))
            elif entry.is_dir() and folder != root:
                folders.append(Path(entry.path))  # chunks/, export/ inside a stage folder
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


# --- changes of several files at once -----------------------------------------------------------

CHANGE_PREFIX = ".change-"
"""A committed :class:`Change`'s journal in the run folder: ``.change-<id>.json``."""
PENDING_PREFIX = ".pending-"
"""A :class:`Change`'s staged file, beside the file it replaces: ``.pending-<id>-<name>``."""
_CHANGE_NAME = re.compile(re.escape(CHANGE_PREFIX) + r"([0-9a-f]{8})\.json")


class Change:
    """Files that together make one decision (a prefilter decision: ``kept.csv``, ``rejected.csv``,
    ``rule.json``, and the ``config.yaml``, ``state.json`` and log lines that record it), changed all
    at once or not at all.

    Each new file is written aside first (``.pending-<id>-<name>`` beside its target, itself written
    atomically); :meth:`commit` then writes a journal naming every rename and append (the one atomic
    step that decides), does them, and removes the journal. A process killed before the journal
    leaves only staged files (swept at the next lock: the run keeps the old decision whole); one
    killed after it leaves a journal, and the next runner to take the run's lock finishes the change
    from it (:func:`complete_changes`, called by :meth:`RunDir.lock`) with renames and appends only:
    nothing is recomputed, every step can be repeated. Until then the journal names the run as
    cut short (:func:`unfinished_changes`), for readers that take no lock.

    Why not a manifest checked on open, or a folder swapped in: a decision spans three places (the
    stage folder, ``config.yaml``, ``state.json``); a folder swap covers only one of them, and a
    manifest makes every reader check it and leaves a half-written decision to be recomputed. Here
    readers keep reading plain files at their usual paths.

    Used as a context manager (``with Change(...) as change:``), a block that raises before the
    commit removes what it staged. Only use one while holding the run's lock.
    """

    def __init__(self, root: Path, what: str):
        """Args:
        root: the run folder; every file of the change lies inside it.
        what: the change in a few words, for the message of a runner that finishes it.
        """
        self.root = Path(root)
        self.what = what
        self.id = secrets.token_hex(4)
        self._renames: dict[str, str] = {}  # target -> staged, relative to root
        self._appends: list[tuple[str, str]] = []
        self._committed = False

    def _relative(self, path: Path) -> str:
        relative = os.path.relpath(Path(path), self.root)
        if relative.startswith(".."):
            raise ValueError(f"{path}: outside the run folder {self.root}")
        return relative

    def staged(self, target: Path) -> Path:
        """Where ``target``'s new content is written until the commit (write it atomically)."""
        target = Path(target)
        staged = target.parent / f"{PENDING_PREFIX}{self.id}-{target.name}"
        self._renames[self._relative(target)] = self._relative(staged)
        return staged

    def current(self, path: Path) -> Path:
        """The file that holds ``path``'s content as the change makes it (staged, or the file itself)."""
        staged = self._renames.get(self._relative(path))
        return self.root / staged if staged else Path(path)

    @contextlib.contextmanager
    def path(self, target: Path) -> Iterator[Path]:
        """A temporary path for a writer that wants a file name; its file becomes ``target``'s new
        content (see :func:`atomic_path`)."""
        with atomic_path(self.staged(target)) as tmp:
            yield tmp

    def write_text(self, target: Path, text: str) -> None:
        write_text_atomic(self.staged(target), text)

    def write_json(self, target: Path, data: Any) -> None:
        write_json_atomic(self.staged(target), data)

    def append(self, target: Path, text: str) -> None:
        """Append ``text`` (whole lines) to ``target`` (the event log, the config history) on commit."""
        self._appends.append((self._relative(target), text))

    def __enter__(self) -> Change:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        """A block that raised before :meth:`commit` wrote the journal leaves nothing behind."""
        if kind is not None and not self._committed:
            self.discard()

    def discard(self) -> None:
        """Remove the staged files of a change that will not be committed."""
        for staged in self._renames.values():
            with contextlib.suppress(OSError):
                os.unlink(self.root / staged)
        self._renames.clear()
        self._appends.clear()

    def commit(self) -> None:
        """Make every staged file and append take effect (see the class's description)."""
        appends = []
        for target, text in self._appends:
            size, last = _size_and_last_byte(self.root / target)  # refuses a link or a FIFO before the journal
            if size and last != b"\n":
                text = "\n" + text  # end a line torn by a killed writer first, as the event log's sink does
            appends.append([target, size, text])
        journal = self.root / f"{CHANGE_PREFIX}{self.id}.json"
        renames = [[staged, target] for target, staged in self._renames.items()]
        write_json_atomic(journal, {"what": self.what, "t": time.time(), "renames": renames, "appends": appends})
        self._committed = True  # from here the journal decides: a failure is finished by the next lock
        _fsync_folder(self.root)  # the journal outlives a power cut before any rename is made
        _apply_change(self.root, renames, appends)
        os.unlink(journal)


def _fsync_folder(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _size_and_last_byte(path: Path) -> tuple[int, bytes]:
    """A file's size and last byte (0 and nothing when it does not exist yet); never through a link."""
    try:
        fd = open_regular(path)
    except FileNotFoundError:
        return 0, b""
    try:
        size = os.fstat(fd).st_size
        return size, os.pread(fd, 1, size - 1) if size else b""
    finally:
        os.close(fd)


def _apply_change(root: Path, renames: list[list[str]], appends: list[list[Any]]) -> None:
    """Do a journal's renames and appends; any of them done already is not done again. The renames'
    folders are made durable before the journal can go."""
    for staged, target in renames:
        if (root / staged).is_file() and not (root / staged).is_symlink():
            os.replace(root / staged, root / target)
    for folder in sorted({(root / target).parent for _, target in renames}):
        _fsync_folder(folder)
    for target, offset, text in appends:
        data = text.encode("utf-8")
        fd = open_regular(root / target, os.O_RDWR | os.O_APPEND | os.O_CREAT)
        try:
            if os.pread(fd, len(data), offset) != data:
                os.write(fd, data)
                os.fsync(fd)
        finally:
            os.close(fd)


def _journals(root: Path) -> list[Path]:
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return []
    return [root / name for name in names if _CHANGE_NAME.fullmatch(name) and not (root / name).is_symlink()]


def _read_journal(path: Path) -> dict[str, Any]:
    """A journal's content, checked: every path inside the run, every staged file a Change's name.

    Raises:
        RunError: not a journal this module wrote (it is written atomically, so never torn).
    """
    problem = "not a change journal"
    try:
        with os.fdopen(open_regular(path), "rb") as handle:
            data = json.loads(handle.read(MAX_STATE_BYTES))
        renames, appends = data["renames"], data["appends"]
        for staged, _ in renames:
            if not Path(staged).name.startswith(PENDING_PREFIX):
                raise ValueError(staged)
        paths = [p for pair in renames for p in pair] + [a[0] for a in appends]
        if any(os.path.isabs(p) or ".." in Path(p).parts for p in paths):
            raise ValueError(paths)
        if not all(isinstance(a[1], int) and isinstance(a[2], str) for a in appends):
            raise ValueError(appends)
        return data
    except (OSError, ValueError, TypeError, KeyError, IndexError, RecursionError) as exc:
        problem += f" ({type(exc).__name__})"
    raise RunError(f"{path}: {problem}", "move it out of the run folder, then check the run's files by hand")


def _describe_change(data: dict[str, Any]) -> str:
    when = data.get("t")
    at = time.strftime(" at %H:%M:%S", time.localtime(when)) if isinstance(when, (int, float)) else ""
    return f"{data.get('what') or 'a change'}{at}"


def unfinished_changes(run_path: Path) -> list[str]:
    """Changes cut short in this run (a journal is still there), described; empty when none.

    Such a run holds parts of two decisions until a runner takes its lock (``--resume``).

    Raises:
        RunError: a damaged journal.
    """
    return [_describe_change(_read_journal(path)) for path in _journals(Path(run_path))]


def complete_changes(run_path: Path) -> list[str]:
    """Finish every change cut short in the run (see :class:`Change`); returns what was finished.

    Only call this while holding the run's lock, alone (not a shard's shared lock).

    Raises:
        RunError: a damaged journal.
    """
    done = []
    for path in _journals(Path(run_path)):
        data = _read_journal(path)
        _apply_change(Path(run_path), data["renames"], data["appends"])
        os.unlink(path)
        done.append(_describe_change(data))
    return done


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
        """``state.json``: ``{"stages": {name: {"status": ..., ...}}, ...}`` (no file yet: no stages).

        Raises:
            RunError: the file is damaged (not JSON, or not of that shape), or is a folder, a FIFO or
                a symbolic link, or cannot be read: the run cannot be used until it is fixed.
        """
        try:
            with os.fdopen(open_regular(self.state_path), "rb") as handle:
                data = handle.read(MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            return {"stages": {}}
        except OSError as exc:
            raise RunError(f"{self.state_path}: cannot read the run's state ({exc.strerror})") from exc
        hint = f"move it aside: the run's stages then count as not run (their files in {self.path} stay)"
        if len(data) > MAX_STATE_BYTES:
            raise RunError(f"{self.state_path}: damaged (larger than {MAX_STATE_BYTES >> 20} MiB)", hint)
        try:
            state = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise RunError(f"{self.state_path}: damaged (not JSON)", hint) from exc
        problem = _state_shape_problem(state)
        if problem:
            raise RunError(f"{self.state_path}: damaged ({problem})", hint)
        state.setdefault("stages", {})
        return state

    def update_stage_state(self, stage: str, drop: tuple[str, ...] = (), **fields: Any) -> None:
        """Set ``fields`` of the stage's entry in ``state.json`` (and remove the keys ``drop``)."""
        state = self.read_state()
        entry = state.setdefault("stages", {}).setdefault(stage, {})
        entry.update(fields)
        for key in drop:
            entry.pop(key, None)
        write_json_atomic(self.state_path, state)

    def replace_stage_state(self, stage: str, entry: dict[str, Any]) -> None:
        """Make ``entry`` the stage's whole entry in ``state.json`` (what it said before is gone)."""
        state = self.read_state()
        state.setdefault("stages", {})[stage] = entry
        write_json_atomic(self.state_path, state)

    def _open_lock(self) -> int:
        """The lock file's descriptor; a symlink in its place is refused, never followed (a link
        would let the runner truncate whatever file it points to)."""
        try:
            return os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise RunError(
                    f"{self.path / LOCK_FILE}: is a symbolic link; refusing to use it as the run's lock",
                    "remove it; a carclf runner creates a plain file",
                ) from exc
            raise RunError(f"{self.path / LOCK_FILE}: cannot open the run's lock ({exc.strerror})") from exc

    @contextlib.contextmanager
    def lock(self, shared: bool = False) -> Iterator[list[str]]:
        """Hold the run's lock for the block; a second runner on the same run fails with RunError.

        Taken alone (not ``shared``), it first finishes the changes an earlier process was killed in
        the middle of (:func:`complete_changes`) and sweeps what interrupted writes left.

        Args:
            shared: for the runners of a stage shared between machines (``--shard I/N``): any number
                of them hold the lock together, each writing only its own files and files every one
                would write alike; a runner of the whole run is refused while they do, and they while
                it does. (A training worker on another machine takes no lock: the chief holds it.)

        Yields:
            What was finished, one description a change (empty for a shared lock, and mostly).
        """
        fd = self._open_lock()
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise RunError(
                    f"{self.path}: another runner is working on this run"
                    + (" (not one of a --shard I/N set)" if shared else "")
                ) from exc
            raise
        try:
            os.ftruncate(fd, 0)
            if not shared:  # one pid: the runner; shards are several (and their temporaries live)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            self._check_writable()
            completed = []
            if not shared:
                completed = complete_changes(self.path)
                remove_stale_temp_files(self.path)
            yield completed
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _check_writable(self) -> None:
        """Refuse, before any stage starts, a run folder the runner could not write its results into."""
        try:
            fd, tmp = _temp_beside(self.state_path)
        except OSError as exc:
            raise RunError(
                f"{self.path}: the run folder is not writable ({exc.strerror})",
                "a runner writes every result there: fix its permissions, or only watch it with --attach",
            ) from exc
        os.close(fd)
        os.unlink(tmp)

    def is_locked(self) -> bool:
        """True while a runner holds the lock (the run is in progress)."""
        try:
            fd = self._open_lock()
        except RunError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)

    def runner_pid(self) -> int | None:
        """The pid of the runner holding the lock now, or None when no runner holds it.

        The pid is read only while the lock is proven held, so a stale ``.lock`` naming some other
        process is never taken for this run's runner.
        """
        if not self.is_locked():
            return None
        try:
            fd = self._open_lock()
        except RunError:
            return None
        try:
            text = os.pread(fd, 32, 0).decode("ascii", "replace").split()
            return int(text[0]) if text and text[0].isdigit() else None
        finally:
            os.close(fd)

    def update_config(self, config: config_mod.Config, source: str) -> dict[str, list[Any]]:
        """Make ``config`` the run's configuration from now on; record what changed and why.

        Returns:
            ``{"section.key": [old, new]}`` for every key whose value changed (empty: nothing written).
        """
        changes = self.config_changes(config)
        if changes:
            with Change(self.path, f"config changed ({source})") as change:  # the config and its history line
                change.write_text(self.config_path, config_mod.dump(config))
                change.append(self.path / CONFIG_HISTORY_FILE, config_history_line(changes, source))
                change.commit()
        return changes

    def config_changes(self, config: config_mod.Config) -> dict[str, list[Any]]:
        """``{"section.key": [old, new]}`` for every key ``config`` sets otherwise than the run's config."""
        old = flat_config(self.load_config().to_dict())
        new = flat_config(config.to_dict())
        return {key: [old.get(key), value] for key, value in new.items() if old.get(key) != value}

    def set_aside(self, stage: str, target: Path | None = None) -> Path | None:
        """Move a stage's folder to ``target`` (default: :meth:`previous_path`) so the stage can start
        fresh; nothing is deleted. Returns where it went, or None when there was nothing to move."""
        folder = self.path / stage
        if not folder.is_dir() or not any(folder.iterdir()):
            return None
        target = target or self.previous_path(stage)
        target.parent.mkdir(exist_ok=True)
        os.replace(folder, target)
        return target

    def previous_path(self, stage: str) -> Path:
        """A free name for a stage's earlier results: ``previous/<stage>-<timestamp>[-N]/``."""
        target_root = self.path / PREVIOUS_DIR
        base = f"{stage}-{_timestamp()}"
        for attempt in range(1000):
            target = target_root / (base if attempt == 0 else f"{base}-{attempt + 1}")
            if not target.exists():
                return target
        raise RunError(f"{target_root}: no free folder name for {base}")


MAX_STATE_BYTES = 16 << 20
"""Largest ``state.json`` read (it holds a line and a few figures a stage)."""


def _state_shape_problem(state: Any) -> str:
    """What is wrong with the shape of a parsed ``state.json``; empty when nothing is."""
    if not isinstance(state, dict):
        return f"a JSON {type(state).__name__}, not an object"
    stages = state.get("stages", {})
    if not isinstance(stages, dict):
        return '"stages" is not an object'
    for name, entry in stages.items():
        if not isinstance(entry, dict):
            return f'stage "{name}" is not an object'
        if not isinstance(entry.get("status", ""), str):
            return f'stage "{name}" has a status that is not text'
    return ""


def config_history_line(changes: dict[str, list[Any]], source: str) -> str:
    """The line :data:`CONFIG_HISTORY_FILE` records a config change with (ends with a newline)."""
    return json.dumps({"t": time.time(), "source": source, "changes": changes}, default=str) + "\n"


def flat_config(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"split": {"seed": 1}}`` -> ``{"split.seed": 1}``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


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
        mark_as_run(path)
        write_text_atomic(run.config_path, _resolved_note(changed) + config_mod.dump(config))
        write_text_atomic(
            run.typed_config_path,
            "# the configuration as typed; config.yaml is what the run uses\n" + config_mod.dump(typed),
        )
        write_json_atomic(run.state_path, {"stages": {}, "created": time.time()})
        return run
    raise RunError(f"{root}: could not find a free run folder name for {base}")


def mark_as_run(path: Path) -> None:
    """Write the run marker into a new run folder (see :data:`MARKER_FILE`)."""
    write_json_atomic(Path(path) / MARKER_FILE, {"carclf_run": RUN_FORMAT, "created": time.time()})


def is_run(path: Path) -> bool:
    """True for a folder carclf made as a run: it holds the run marker and a config."""
    marker = Path(path) / MARKER_FILE
    return marker.is_file() and not marker.is_symlink() and (Path(path) / CONFIG_FILE).is_file()


def open_run(path: Path | str, root: Path | str | None = None) -> RunDir:
    """Open an existing run by path, or by folder name under ``root``.

    Raises:
        RunError: no such folder, or a folder carclf did not make as a run (no run marker): carclf
            never writes into, or sweeps, a folder that is not its own.
    """
    candidate = Path(path)
    if not candidate.is_dir() and root is not None:
        candidate = Path(root) / str(path)
    if not candidate.is_dir():
        raise RunError(f"{path}: no such run folder")
    marker, config = candidate / MARKER_FILE, candidate / CONFIG_FILE
    if marker.is_file() and not marker.is_symlink() and nonregular_reason(config) is not None:
        raise RunError(
            f"{config}: the run's configuration is {nonregular_reason(config)}",
            "put the run's config.yaml back (config.typed.yaml holds it as typed)",
        )
    if not is_run(candidate):
        raise RunError(
            f"{candidate}: not a carclf run: no run marker ({MARKER_FILE})",
            f"a run made by an older carclf can be adopted with: touch {candidate / MARKER_FILE}",
        )
    return RunDir(candidate)


def list_runs(root: Path | str) -> list[RunDir]:
    """Runs under ``root``, oldest first (folder names start with their timestamp)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return [RunDir(p) for p in sorted(root.iterdir()) if p.is_dir() and is_run(p)]


def latest_run(root: Path | str, name: str | None = None) -> RunDir | None:
    """The newest run under ``root``; with ``name``, the newest whose config has that ``run.name``."""
    for run in reversed(list_runs(root)):
        if name is None:
            return run
        try:
            if run.load_config().run.name == name:
                return run
        except (config_mod.ConfigError, OSError):
            continue  # a damaged run is not the one asked for
    return None
