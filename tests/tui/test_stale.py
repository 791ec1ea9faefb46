"""Stale stages in the dashboard, and the questions asked before a key changes a run: ``w`` (save a
threshold), ``r`` and ``a`` on done stages, ``n`` (a new run's name); ``u`` resumes without asking."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from carclf_core.events import StagesStale
from carclf_core.provenance import staleness
from carclf_tui.sample_run import write_events
from carclf_tui.screens.confirm import ConfirmScreen, RunNameScreen
from carclf_tui.screens.main import MainScreen
from carclf_tui.widgets.stages import StageDetail, StagesTable
from carclf_tui.widgets.status import StatusLine

from .conftest import WAIT_S, cell, make_app, rendered, wait_until


def question(app) -> str:
    return rendered(app.screen.query_one("#question"))


async def replayed(pilot) -> MainScreen:
    screen = pilot.app.screen
    await wait_until(pilot, lambda: screen.state.run_status == "done")
    await wait_until(pilot, lambda: screen.query_one(StagesTable).row_count == 5)
    await pilot.pause()
    return screen


async def select(pilot, screen: MainScreen, stage: str) -> None:
    table = screen.query_one(StagesTable)
    table.move_cursor(row=table.stages.index(stage))
    await pilot.pause()


async def test_a_saved_threshold_turns_the_later_stages_stale_at_once(recorded_run) -> None:
    pytest.importorskip("carclf_core.prefilter.scores")
    app = make_app(recorded_run)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await replayed(pilot)
        table = screen.query_one(StagesTable)
        assert [cell(table, n, "status") for n in ("split", "train", "evaluate")] == ["✓ done"] * 3
        assert "u" not in screen.active_bindings  # nothing to resume: u is hidden
        await pilot.press("4", "plus")  # trial threshold 0.15
        pane = screen.panes["prefilter"]
        await wait_until(pilot, lambda: pane.trial is not None and not pane.trial_pending)
        kept = pane.trial["kept"]
        # w asks first, naming the threshold, what it keeps and what turns stale; n leaves all as it was
        await pilot.press("w")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        asked = question(app)
        assert "save threshold 0.15 as the run's? split, train, evaluate become stale" in asked
        assert f"It keeps {kept:,} of 400 scored images" in asked
        await pilot.press("n")
        await wait_until(pilot, lambda: app.screen is screen)
        assert not (Path(recorded_run.path) / "prefilter" / "rule.json").exists()
        assert recorded_run.load_config().prefilter.threshold == pytest.approx(0.1)
        # y saves: the same dashboard shows the new count and the stale stages as soon as the events do
        await pilot.press("w")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_until(pilot, lambda: screen.state.stages["evaluate"].status == "stale")
        await pilot.press("1")
        await pilot.pause()
        assert recorded_run.load_config().prefilter.threshold == pytest.approx(0.15)
        assert cell(table, "prefilter", "result").startswith(f"{kept:,} / 400 kept")
        assert [cell(table, n, "status") for n in ("index", "prefilter")] == ["✓ done"] * 2
        assert [cell(table, n, "status") for n in ("split", "train", "evaluate")] == ["↻ stale"] * 3
        assert "↻ 3 stale: u resumes" in rendered(screen.query_one(StatusLine))
        await select(pilot, screen, "split")
        detail = rendered(screen.query_one(StageDetail))
        assert "↻ stale: prefilter changed" in detail and f"-> {kept:,} / 400 kept" in detail
        assert "u (resume) brings it up to date" in detail
        await select(pilot, screen, "train")
        assert "↻ stale: split is stale" in rendered(screen.query_one(StageDetail))
        assert screen.active_bindings["u"].enabled


async def test_r_on_a_done_stage_asks_before_running_it_again(finished_run, reap) -> None:
    app = make_app(finished_run, mode="finish")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await replayed(pilot)
        await select(pilot, screen, "train")
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert question(app).startswith("train is done: run it again from scratch?\n\nIts results are kept in "
                                        "previous/.")
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is screen)
        await pilot.pause(0.2)
        assert app.runner.process is None, "no runner without a yes"
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_until(pilot, lambda: app.runner.process is not None)
        reap.append(app.runner.process.pid)
        assert app.runner.process.wait(timeout=WAIT_S) == 0
        assert (Path(finished_run.path) / "fake_argv.txt").read_text() == "train"


async def test_a_from_a_done_stage_asks_and_from_a_pending_one_does_not(finished_run, empty_run) -> None:
    app = make_app(finished_run)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await replayed(pilot)
        await select(pilot, screen, "train")
        await pilot.press("a")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        asked = question(app)
        assert asked.startswith("train is done: run it and every later stage (evaluate)?")
        assert "train, evaluate start again from scratch; their results are kept in previous/" in asked
        await pilot.press("n")
        await wait_until(pilot, lambda: app.screen is screen)
        assert app.runner.process is None


async def test_r_on_a_stale_stage_asks_and_u_resumes_without_asking(recorded_run, reap) -> None:
    # The split seed changes after split ran (as --set on resume does): split is stale, and so what
    # was made from it; the runner says so in the event log.
    config = recorded_run.load_config()
    changed = dataclasses.replace(config, split=dataclasses.replace(config.split, seed=7))
    recorded_run.update_config(changed, source="test")
    write_events(recorded_run, [StagesStale(stale=staleness(recorded_run, changed), t=2e9)])
    app = make_app(recorded_run, mode="finish")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.state.stages["split"].status == "stale")
        await select(pilot, screen, "split")
        assert f"↻ stale: split.seed {config.split.seed} -> 7" in rendered(screen.query_one(StageDetail))
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert question(app).startswith("split is stale: run it again from scratch?")
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is screen)
        await pilot.press("u")  # resume: the runner decides what is unfinished or stale, as --resume does
        await wait_until(pilot, lambda: app.runner.process is not None)
        reap.append(app.runner.process.pid)
        assert app.runner.process.wait(timeout=WAIT_S) == 0
        assert (Path(recorded_run.path) / "fake_argv.txt").read_text() == ""
        assert app.runner.log_path.read_text().startswith("--- carclf-tui runner: resume")


async def test_n_asks_the_new_runs_name_and_checks_it(finished_run, tmp_path) -> None:
    from carclf_core import config as config_mod

    app = make_app(finished_run)
    app.config = config_mod.from_dict({"run": {"root": str(tmp_path / "fresh"), "name": "again"}})
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await replayed(pilot)
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, RunNameScreen))
        await pilot.press("escape")  # no new run
        await wait_until(pilot, lambda: app.screen is screen)
        assert app.run_dir == finished_run and not (tmp_path / "fresh").exists()
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, RunNameScreen))
        name_input = app.screen.query_one("#run-name")
        assert name_input.value == "carclf"  # the shown run's run.name is offered
        await pilot.press(*["backspace"] * 6, "b", "a", "d", "space", "n", "a", "m", "e", "enter")
        await pilot.pause()
        assert isinstance(app.screen, RunNameScreen), "a bad name keeps the dialog open"
        assert rendered(app.screen.query_one("#name-error")).startswith("run.name: expected 1..64 characters")
        await pilot.press(*["backspace"] * 8, *"trial-2", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen) and app.screen is not screen)
        assert app.run_dir.name.endswith("-trial-2") and Path(app.run_dir.path).parent == Path(finished_run.path).parent
        assert app.run_dir.load_config().run.name == "trial-2"
