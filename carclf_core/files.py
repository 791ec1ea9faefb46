"""Opening files that came from outside the program: regular files only, never through a symlink.

A name in the data folder or a run folder can be replaced at any time by something that is not a
file: a named pipe (FIFO), whose ``open`` and ``read`` block until some writer appears (a runner
stuck there ignores a stop), a device, a folder, or a symbolic link pointing anywhere (a runner
appending through it would write into whatever file it names). :func:`nonregular_reason` says, without
blocking, whether a path is a regular file; :func:`open_regular` opens one without following a final
symlink and without blocking on a FIFO, and refuses anything else with a :class:`RunError` naming it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import RunError

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISLNK, "a symbolic link"),
)


def kind_of(mode: int) -> str:
    """What a ``st_mode`` describes, in words (``a regular file``, ``a named pipe (FIFO)``, ...)."""
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((name for test, name in _KINDS if test(mode)), "not a file")


def nonregular_reason(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be read as a regular file, or None when it can.

    ``stat`` follows a symlink (as reading the file would) and never blocks, even on a FIFO.

    Returns:
        None for a regular file; else ``missing``, ``cannot stat (...)`` or ``not a regular file (a
        named pipe (FIFO))`` and the like.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"cannot stat ({exc.strerror})"
    if stat.S_ISREG(mode):
        return None
    return f"not a regular file ({kind_of(mode)})"


def open_regular(
    path: str | os.PathLike[str], flags: int = os.O_RDONLY, mode: int = 0o666, follow_symlinks: bool = False
) -> int:
    """Open ``path`` as a regular file and return its descriptor (close it, or wrap it with ``os.fdopen``).

    The last component is never followed if it is a symbolic link (``O_NOFOLLOW``), and a FIFO does not
    block the open (``O_NONBLOCK``, cleared again once the file is known to be regular).

    Args:
        path: the file.
        flags: ``os.open`` flags (``O_RDONLY``, or ``O_WRONLY | O_APPEND | O_CREAT``...).
        mode: permissions of a file ``O_CREAT`` makes, less the umask (so a shared run's files are
            as readable as the user's umask says).
        follow_symlinks: open what a final symbolic link points to (for files the user names, such
            as ``--config``; never for files a runner writes).

    Raises:
        RunError: ``path`` is a symbolic link, a folder, a FIFO or another non-file, naming it.
        FileNotFoundError: it does not exist (and ``O_CREAT`` was not given).
        OSError: any other refusal (permissions), unchanged.
    """
    path = Path(path)
    try:
        nofollow = 0 if follow_symlinks else os.O_NOFOLLOW
        fd = os.open(path, flags | nofollow | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RunError(
                f"{path}: is a symbolic link; refusing to follow it", "replace it with a plain file"
            ) from exc
        if exc.errno == errno.EISDIR:
            raise RunError(f"{path}: is a folder where a file belongs", "move it out of the way") from exc
        if exc.errno == errno.ENXIO:  # a FIFO opened for writing with no reader
            raise RunError(f"{path}: is a named pipe (FIFO) where a file belongs", "move it out of the way") from exc
        raise
    try:
        file_mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(file_mode):
            raise RunError(f"{path}: is {kind_of(file_mode)} where a file belongs", "move it out of the way")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def current_umask() -> int:
    """The process's umask, read without changing it (``os.umask`` can only set it, and setting it
    to read it races with every other thread creating files)."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc (not Linux): the racy way, restored at once
    os.umask(mask)
    return mask


def follow_umask(fd: int) -> None:
    """Give a file made by ``tempfile.mkstemp`` (always 0600, to keep it private while it is written)
    the permissions any other new file would get: ``0666`` less the umask. Else every atomically
    written result of a run is readable by its owner alone, and a teammate's ``predict`` or
    ``--attach`` on a shared run fails."""
    os.fchmod(fd, 0o666 & ~current_umask())


COMPLETE_MARKER = ".complete"
"""The file :func:`build_once` writes into a folder it finished."""


def build_once(target: Path, fill: Callable[[Path], object], marker: str) -> Path:
    """Make the folder ``target`` once, atomically, and return it.

    ``fill(path)`` creates the folder ``path`` and writes into it; ``path`` is a temporary name beside
    ``target``, renamed to ``target`` once ``fill`` returns and a :data:`COMPLETE_MARKER` file holding
    ``marker`` is in it. So ``target`` either does not exist or is whole: a generation killed halfway
    leaves a hidden temporary folder, never a half-filled ``target`` that a later call would trust.
    When another process finishes first, its folder is kept and this one's removed.
    """
    target = Path(target)
    if (target / COMPLETE_MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        shutil.rmtree(staging)
        fill(staging)
        (staging / COMPLETE_MARKER).write_text(marker)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / COMPLETE_MARKER).is_file():  # someone else finished first: fine
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
