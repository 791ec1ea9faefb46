"""Pilot tests of the panes: each tab's pane owns its keys, and they work exactly where they did."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Tabs

from carclf_tui.panes import PANES, ConfigPane, ConfusionPane, LogPane, PrefilterPane, StagesPane, TrainingPane
from carclf_tui.screens.help import HelpScreen, describe
from carclf_tui.screens.main import MainScreen
from carclf_tui.widgets.config_view import ConfigView
from carclf_tui.widgets.confusion import ConfusionHeatmap, ConfusionView
from carclf_tui.widgets.logview import LogView
from carclf_tui.widgets.stages import StagesTable
from carclf_tui.widgets.training import EpochTable

from .conftest import make_app, wait_until
from .test_app import launch, show_tab

FOOTER_KEYS = ["r", "a", "n", "question_mark", "q"]  # a finished run: no u (nothing to resume), no s


def footer(screen) -> list[str]:
    """The keys the footer shows, in its order (one a binding, as the footer groups them)."""
    keys: dict[str, str] = {}
    for key, active in screen.active_bindings.items():
        if active.binding.show:
            keys.setdefault(active.binding.action, key)
    return list(keys.values())


async def test_each_tab_holds_one_pane_and_focuses_its_main_widget(finished_run) -> None:
    app = make_app(finished_run)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.state.run_status == "done")
        expected = {"1": (StagesPane, StagesTable), "2": (TrainingPane, EpochTable),
                    "3": (ConfusionPane, ConfusionHeatmap),
                    "4": (PrefilterPane, Tabs), "5": (LogPane, LogView), "6": (ConfigPane, ConfigView)}
        for key, (pane, focused) in expected.items():
            await show_tab(pilot, key)
            assert screen.active_pane is screen.query_one(pane)
            assert isinstance(app.focused, focused), (key, app.focused)
        assert "threshold" in str(screen.query_one(ConfigView).query_one("#config-text").render())
        # On tabs whose focus stays on the tab bar, left/right still switch tabs.
        await show_tab(pilot, "4")
        await pilot.press("left")
        await wait_until(pilot, lambda: screen.active_tab == "confusion")


async def test_footer_keys_per_tab(finished_run) -> None:
    """The run keys first, then stop (while a stage runs) and new run, then the tab's own keys, then help and quit."""
    app = make_app(finished_run)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.state.run_status == "done")
        for key in "12":
            await show_tab(pilot, key)
            assert footer(screen) == FOOTER_KEYS
        await show_tab(pilot, "5")  # focus is in the log: its filter key comes first
        assert footer(screen) == ["f", *FOOTER_KEYS]
        await show_tab(pilot, "3")  # focus is in the heatmap: the tab's own keys come first
        assert footer(screen) == ["v", "r", "a", "n", "question_mark", "q"]  # c: named by the legend
        await show_tab(pilot, "4")  # + and - share one entry ("+/-"), so ? and q fit at 80 columns
        assert footer(screen) == ["r", "a", "n", "plus", "w", "question_mark", "q"]


async def test_plus_on_the_prefilter_tab_moves_the_panes_trial_threshold(finished_run) -> None:
    app = make_app(finished_run)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        pane = screen.panes["prefilter"]  # mounted when its tab first shows
        await wait_until(pilot, lambda: screen.state.run_status == "done")
        await show_tab(pilot, "4")
        assert pane.threshold == pytest.approx(0.1)  # the run's own, picked up when the tab opened
        await pilot.press("plus")
        await wait_until(pilot, lambda: pane.threshold == pytest.approx(0.15))
        await pilot.press("left_square_bracket", "left_square_bracket", "minus")
        await wait_until(pilot, lambda: pane.threshold == pytest.approx(0.08))
        await wait_until(pilot, lambda: not pane.trial_pending)
        assert pane.trial is not None or pane.notice  # re-applied, or said why not


async def test_save_is_refused_while_a_stage_runs(finished_run) -> None:
    app = make_app(finished_run)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        pane = screen.panes["prefilter"]  # mounted when its tab first shows
        await wait_until(pilot, lambda: screen.state.run_status == "done")
        await show_tab(pilot, "4")
        said: list[str] = []
        pane.notify = lambda message, **kwargs: said.append(message)
        app.runner.is_busy = lambda: True  # as while a runner holds the run's lock
        await wait_until(pilot, lambda: screen.busy and pane.busy)  # the pane's is bound to the screen's
        await pilot.press("w")
        await pilot.pause()
        assert not pane.trial_pending and not (Path(finished_run.path) / "prefilter" / "rule.json").exists()
        assert said == ["a stage is running: stop it before saving the prefilter decision"]


async def test_v_on_the_confusion_tab_cycles_the_panes_view(finished_run) -> None:
    app = make_app(finished_run)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.state.run_status == "done")
        await show_tab(pilot, "3")
        view = screen.query_one(ConfusionPane).query_one(ConfusionView)  # mounted when its tab first showed
        await pilot.press("v")
        await wait_until(pilot, lambda: view.mode == "most confused")
        await pilot.press("v", "v")
        await wait_until(pilot, lambda: view.mode == "heatmap")


async def test_r_on_the_stages_tab_starts_the_selected_stage(empty_run, reap) -> None:
    app = make_app(empty_run, mode="finish")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await launch(pilot, reap, "down", "down", "r")
        await wait_until(pilot, lambda: screen.state.stages["split"].status == "done")
        assert (Path(empty_run.path) / "fake_argv.txt").read_text() == "split"


async def test_run_keys_work_from_every_tab_on_the_stage_selected_in_the_stages_pane(empty_run, reap) -> None:
    """As before the panes: r and a act on the selected stage whichever tab is shown."""
    app = make_app(empty_run, mode="finish")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.query_one(StagesTable).row_count == 5)
        await pilot.press("down", "down", "down")  # train
        await show_tab(pilot, "5")
        assert footer(screen) == ["f", "r", "a", "u", "n", "question_mark", "q"]  # u: stages still to run; s: none running
        screen = await launch(pilot, reap, "a")
        await wait_until(pilot, lambda: screen.state.run_status == "done")
        assert (Path(empty_run.path) / "fake_argv.txt").read_text() == "train evaluate"
        assert screen.active_tab == "log"


async def test_help_lists_every_panes_keys(finished_run) -> None:
    app = make_app(finished_run)
    async with app.run_test(size=(100, 50)) as pilot:
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        listed = app.screen.bindings
        sections = dict(app.screen.sections)
        for pane in PANES:
            for binding in pane.key_bindings():
                assert describe(binding) in listed, binding
                assert any(describe(binding) in keys and pane.TAB.title() in title for title, keys in sections.items())
        for binding in (*MainScreen.key_sections([])[0][1], *app.BINDINGS):
            assert describe(binding) in sections["Every tab"], binding
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))
