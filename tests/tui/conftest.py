"""Fixtures for the dashboard tests: recorded runs, a fake runner, and a helper to wait on the app."""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.text import Text

from carclf_core import config as config_mod
from carclf_core.runs import RunDir
from carclf_tui.app import CarclfApp
from carclf_tui.sample_run import T0, make_run_dir, record_provenance, write_picture_run, write_sample_run
from carclf_tui.widgets.stages import StagesTable

FAKE_RUNNER = Path(__file__).with_name("fake_runner.py")
STAGES = ("index", "prefilter", "split", "train", "evaluate")


def pytest_collection_modifyitems(items) -> None:
    """Run this folder's ``async def`` tests with ``asyncio.run`` (no async plugin is required)."""
    for item in items:
        function = getattr(item, "obj", None)
        if inspect.iscoroutinefunction(function):
            item.obj = _sync(function)


def _sync(function):
    @functools.wraps(function)
    def run(*args, **kwargs):
        return asyncio.run(function(*args, **kwargs))

    return run


def fake_command(mode: str = "hang") -> Callable[[RunDir, list[str]], list[str]]:
    """A runner command that starts :mod:`fake_runner` instead of the real pipeline."""
    return lambda run, stages: [sys.executable, str(FAKE_RUNNER), "--mode", mode, str(run.path), *stages]


def make_app(run: RunDir, mode: str = "hang", **kwargs) -> CarclfApp:
    kwargs.setdefault("stage_order", STAGES)
    kwargs.setdefault("poll_interval", 0.05)
    return CarclfApp(run, config_mod.Config(), runner_command=fake_command(mode), **kwargs)


WAIT_S = 90.0
"""How long a test waits for the state it needs before it fails. Generous: a passing wait returns as
soon as the state is there, and on a busy machine (the suite beside another job, load 6 and more) a
replay or a tab switch that takes 0.2 s idle has taken over 10 s."""


async def wait_until(pilot, predicate: Callable[[], bool], timeout: float = WAIT_S, step: float = 0.05) -> None:
    """Let the app run until ``predicate()`` holds, looking every ``step`` seconds; fail the test after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")
        await pilot.pause(step)


async def wait_until_still(pilot, looks: int = 4, timeout: float = WAIT_S) -> None:
    """Let the app run until its screen stops changing: the same picture ``looks`` times in a row, a
    tenth of a second apart, with no message or animation pending; so that a snapshot or a check of
    the screen is never taken mid-draw, however slow the machine. Fails after ``timeout`` seconds."""
    app = pilot.app
    deadline = time.monotonic() + timeout
    last, same = None, 0
    while same < looks:
        if time.monotonic() > deadline:
            raise AssertionError(f"the screen was still changing after {timeout}s")
        await pilot.pause(0.1)
        await pilot.wait_for_scheduled_animations()
        picture = app.export_screenshot()
        same = same + 1 if picture == last else 0
        last = picture


def cell(table, row: str, column: str) -> str:
    """The plain text of a DataTable cell."""
    value = table.get_cell(row, column)
    return value.plain if isinstance(value, Text) else str(value)


def rendered(widget) -> str:
    """The text a Static-like widget shows now."""
    content = widget.render()
    return content.plain if hasattr(content, "plain") else str(content)


async def launch(pilot, reap: list, *keys: str):
    """Wait for the stages table, press ``keys`` (ending in a run key), and register the runner's pid
    for clean-up; returns the main screen."""
    screen = pilot.app.screen
    await wait_until(pilot, lambda: screen.query_one(StagesTable).row_count == 5)
    await pilot.press(*keys)
    reap.append(pilot.app.runner.process.pid)
    return screen


def frozen_clock() -> float:
    return T0 + 100.0


@pytest.fixture
def finished_run(tmp_path: Path) -> RunDir:
    """A recorded, finished run of all five stages (12 epochs of 40 batches) with stored prefilter scores."""
    return write_sample_run(tmp_path / "runs")


@pytest.fixture
def recorded_run(tmp_path: Path) -> RunDir:
    """:func:`finished_run` whose stages also recorded their provenance: saving a threshold stales
    the stages after the prefilter."""
    run = write_sample_run(tmp_path / "runs")
    record_provenance(run)
    return run


@pytest.fixture
def empty_run(tmp_path: Path) -> RunDir:
    """A new run with nothing done yet."""
    return make_run_dir(tmp_path / "runs", "20260101-130000-fresh")


@pytest.fixture
def reap():
    """Collects runner pids a test leaves behind and makes sure they are gone afterwards."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="session")
def picture_run(tmp_path_factory) -> RunDir:
    """A finished recorded run of 300 classes with real pictures (:func:`write_picture_run`): index
    labels, prefilter scores, a test confusion matrix with the evaluate stage's numbers and its
    predictions.csv. Shared by the tests that only read it."""
    return write_picture_run(tmp_path_factory.mktemp("pictures"))


def pictures_done(node) -> bool:
    """Every picture strip under ``node`` holds the cards its width has room for, each showing its
    picture or saying why it cannot."""
    from carclf_tui.widgets.pictures import PictureStrip

    strips = list(node.query(PictureStrip))
    return bool(strips) and any(strip.pictures for strip in strips) and all(strip.settled for strip in strips)
