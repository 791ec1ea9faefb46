"""Fault injection against the real CLI: runner subprocesses signalled at chosen moments."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from carclf_core.eventlog import read_events


_LIVE: list[Runner] = []


@pytest.fixture(autouse=True)
def _kill_leftover_runners():
    """A failed test must not leave a runner working in the background."""
    yield
    while _LIVE:
        runner = _LIVE.pop()
        if runner.proc.poll() is None:
            runner.proc.kill()
            runner.proc.wait()


class Runner:
    """A ``carclf-tui`` headless runner in its own process (as the dashboard starts it)."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None,
                 max_file_bytes: int | None = None):
        """Start the runner; ``max_file_bytes`` caps the size of any file it writes (RLIMIT_FSIZE),
        which is how these tests fill the disk without a filesystem of their own."""
        _LIVE.append(self)
        self.log_path = cwd / f"runner-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "carclf_tui.cli", "--plain", *args], cwd=cwd,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})}, start_new_session=True,
                                     preexec_fn=_file_size_limit(max_file_bytes) if max_file_bytes else None)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 300) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._log.close()

    @property
    def output(self) -> str:
        return self.log_path.read_text()


def _file_size_limit(limit: int):
    def apply() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def wait_for(predicate: Callable[[], bool], runner: Runner, timeout: float = 240, what: str = "") -> None:
    """Poll ``predicate`` until it holds; fail early if the runner exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if runner.proc.poll() is not None:
            pytest.fail(f"runner exited ({runner.proc.returncode}) before {what}:\n{runner.output[-3000:]}")
        time.sleep(0.05)
    runner.signal(signal.SIGKILL)
    pytest.fail(f"timed out waiting for {what}:\n{runner.output[-3000:]}")


def only_run(root: Path) -> Path:
    runs = sorted((root / "runs").iterdir()) if (root / "runs").is_dir() else []
    return runs[-1] if runs else root / "runs" / "none-yet"


def event_kinds(run: Path) -> list[str]:
    path = run / "events.jsonl"
    return [e.kind for e in read_events(path).events] if path.is_file() else []


def stage_status(run: Path, stage: str) -> str | None:
    try:
        return json.loads((run / "state.json").read_text())["stages"].get(stage, {}).get("status")
    except (OSError, ValueError):
        return None


def temp_files(run: Path) -> list[Path]:
    return [p for p in run.rglob(".tmp-*")]


@pytest.fixture(scope="session")
def demo_env(tmp_path_factory) -> dict[str, str]:
    """Environment whose demo cache is generated once for the whole fault suite."""
    from carclf_core import demo

    cache = tmp_path_factory.mktemp("carclf-cache")
    env = {"CARCLF_CACHE": str(cache)}
    old = os.environ.get("CARCLF_CACHE")
    os.environ["CARCLF_CACHE"] = str(cache)
    try:
        demo.ensure_demo_data()
    finally:
        if old is None:
            os.environ.pop("CARCLF_CACHE")
        else:
            os.environ["CARCLF_CACHE"] = old
    return env
