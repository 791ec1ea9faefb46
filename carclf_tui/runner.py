"""Starting, watching and stopping the headless runner that does a run's work for the dashboard.

The dashboard never runs a stage itself (that would pull TensorFlow into the UI process): it starts
``carclf-tui --resume RUN --stage NAME ... --plain`` as a child in its own session, so the child
survives the dashboard quitting or an SSH connection dropping, and sends its output to
``runner.log`` in the run directory. A stop is SIGINT: the runner stops at the next batch and keeps
what it finished. A runner started by an earlier dashboard is found through the run's lock file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from carclf_core.errors import CarclfError
from carclf_core.files import open_regular
from carclf_core.runs import RunDir

LOG_FILE = "runner.log"

RunnerCommand = Callable[[RunDir, Sequence[str]], list[str]]
"""Builds the child's command line from the run and the stage names (injectable for tests)."""


def default_command(run: RunDir, stages: Sequence[str]) -> list[str]:
    """The headless runner on ``run`` for ``stages``, with the same Python as the dashboard.

    ``-P`` keeps the working directory off the import path: a ``yaml.py`` lying where the dashboard
    was started must not run inside the runner (the project itself is installed, so it imports).
    """
    command = [sys.executable, "-P", "-m", "carclf_tui.cli", "--resume", str(Path(run.path).resolve()), "--plain"]
    for name in stages:
        command += ["--stage", name]
    return command


class RunnerBusy(RuntimeError):
    """A runner is already working on this run."""


class Runner:
    """The child process doing a run's stages, or the one an earlier dashboard left running."""

    def __init__(self, run: RunDir, command: RunnerCommand = default_command):
        self.run = run
        self.command = command
        self.process: subprocess.Popen | None = None
        self.stages: tuple[str, ...] = ()

    @property
    def log_path(self) -> Path:
        return Path(self.run.path) / LOG_FILE

    def start(self, stages: Sequence[str]) -> int:
        """Start the runner on ``stages`` (none: ``--resume`` alone, the unfinished and stale stages);
        returns its pid.

        Raises:
            RunnerBusy: our child is still running, or another process holds the run's lock.
            RunError: ``runner.log`` is a symbolic link (the output would be appended to whatever it
                names), a FIFO or a folder: refused as ``events.jsonl`` and ``.lock`` are.
        """
        if self.own_child_alive() or self.run.is_locked():
            raise RunnerBusy(f"{self.run.name}: a runner is already working on this run")
        with os.fdopen(open_regular(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "ab") as log:
            log.write(f"--- carclf-tui runner: {' '.join(stages) or 'resume'}\n".encode())
            log.flush()
            # Its own session: a Ctrl-C or hang-up in the dashboard's terminal does not reach it.
            self.process = subprocess.Popen(self.command(self.run, list(stages)), stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.stages = tuple(stages)
        return self.process.pid

    def own_child_alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def poll(self) -> int | None:
        """Our child's exit code once it has exited (and reaps it); None while it runs or if none."""
        return None if self.process is None else self.process.poll()

    def is_busy(self) -> bool:
        """True while our child runs or any process holds the run's lock."""
        return self.own_child_alive() or self.run.is_locked()

    def lock_holder(self) -> int | None:
        """The pid of the runner working on this run: the lock is held, the pid in it is alive, and
        its command line names this run, so a stale or forged ``.lock`` never gets a signal sent."""
        pid = self.run.runner_pid()
        if pid is None:
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        names = {os.fsencode(self.run.name), os.fsencode(str(self.run.path))}
        return pid if any(arg in names or arg.endswith(b"/" + os.fsencode(self.run.name)) for arg in cmdline) else None

    def stop(self) -> bool:
        """Ask the runner to stop (SIGINT); returns False when there is nothing to stop."""
        pid = self.process.pid if self.own_child_alive() else self.lock_holder()
        if pid is None:
            return False
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            return False
        return True

    def log_tail(self, lines: int = 15) -> list[str]:
        """The last ``lines`` lines of ``runner.log`` (what a crashed runner said last)."""
        try:
            with os.fdopen(open_regular(self.log_path), "rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - 16384))
                data = handle.read()
        except (OSError, CarclfError):  # missing, or not a plain file: nothing of it is shown
            return []
        text = data.decode("utf-8", "replace").splitlines()
        return [line for line in text if line.strip()][-lines:]
