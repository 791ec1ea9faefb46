"""Pilot tests: the real dashboard against recorded event logs and a fake runner process."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from textual.widgets import Tabs

from carclf_core import events as ev
from carclf_tui.panes import StagesPane
from carclf_tui.sample_run import write_events
from carclf_tui.screens.confirm import ConfirmScreen, RunNameScreen
from carclf_tui.screens.help import HelpScreen
from carclf_tui.screens.main import MainScreen
from carclf_tui.widgets.confusion import ConfusionView
from carclf_tui.widgets.logview import LogView
from carclf_tui.widgets.prefilter import PrefilterSummary
from carclf_tui.widgets.stages import StageDetail, StagesTable
from carclf_tui.widgets.training import EpochTable, TrainingStats

from .conftest import WAIT_S, cell, frozen_clock, launch, make_app, rendered, wait_until, wait_until_still


async def show_tab(pilot, key: str) -> None:
    """Press a tab's number key and wait until that tab is the active one.

    First wait until the main screen is up: a key pressed while the first frame is still being built
    (seconds on a busy machine) is lost, as it would be for a user, who presses again; so does this,
    should the tab not switch within a while.
    """
    name = ("stages", "training", "confusion", "prefilter", "log", "config")[int(key) - 1]
    app = pilot.app
    await wait_until(pilot, lambda: isinstance(app.screen, MainScreen) and app.screen.is_mounted
                     and bool(app.screen.query("#tabs")))
    deadline = time.monotonic() + WAIT_S
    while True:
        await pilot.press(key)
        try:
            await wait_until(pilot, lambda: app.screen.query_one("#tabs").active == name,
                             timeout=min(15.0, max(deadline - time.monotonic(), 0.1)))
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
    await pilot.pause()


def log_text(app) -> str:
    return "\n".join(strip.text for strip in app.screen.query_one(LogView).lines)


async def test_attach_replays_a_finished_run(finished_run) -> None:
    app = make_app(finished_run, clock=frozen_clock)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = app.screen
        assert isinstance(screen, MainScreen)
        await wait_until(pilot, lambda: screen.state.run_status == "done")
        await pilot.pause()
        table = screen.query_one(StagesTable)
        assert [cell(table, n, "status") for n in ("index", "prefilter", "train")] == ["✓ done"] * 3
        assert cell(table, "index", "result") == "592 images in 8 classes, 4 rejected"
        assert cell(table, "prefilter", "result") == f"{screen.state.prefilter.kept:,} / 400 kept"
        await show_tab(pilot, "2")
        assert screen.query_one(EpochTable).row_count == 12
        stats = rendered(screen.query_one(TrainingStats))
        assert "patience" in stats and "best val_loss" in stats and "at epoch 9" in stats
        assert "640 img/s" in stats and "run ETA finished" in stats
        await show_tab(pilot, "5")
        log = log_text(app)
        assert "rejected: truncated image" in log and "Audi_A4_t00.jpg" in log


async def test_run_key_launches_the_selected_stage_and_stop_interrupts_it(empty_run, reap) -> None:
    app = make_app(empty_run, mode="hang")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await launch(pilot, reap, "down", "r")  # the second stage: prefilter
        await wait_until(pilot, lambda: screen.state.stages["prefilter"].status == "running")
        assert (Path(empty_run.path) / "fake_argv.txt").read_text() == "prefilter"
        assert screen.busy and screen.query_one(StagesPane).check_action("run_stage", ()) is None
        assert not screen.active_bindings["r"].enabled  # shown, greyed out while running
        await wait_until(pilot, lambda: screen.state.stages["prefilter"].done > 0)
        await pilot.press("s")
        await wait_until(pilot, lambda: screen.state.stages["prefilter"].status == "interrupted")
        await wait_until(pilot, lambda: app.runner.poll() is not None)
        assert app.runner.poll() == 130
        await wait_until(pilot, lambda: "runner exited with code 130" in log_text(app) or
                         any("code 130" in e.message for e in screen.state.log))
        assert "interrupted" in cell(screen.query_one(StagesTable), "prefilter", "status")


async def test_run_all_from_the_selected_stage(empty_run, reap) -> None:
    app = make_app(empty_run, mode="finish")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await launch(pilot, reap, "down", "down", "down", "a")  # train, then evaluate
        await wait_until(pilot, lambda: screen.state.run_status == "done")
        assert (Path(empty_run.path) / "fake_argv.txt").read_text() == "train evaluate"
        assert [screen.state.stages[n].status for n in ("index", "train", "evaluate")] == \
            ["pending", "done", "done"]
        assert cell(screen.query_one(StagesTable), "evaluate", "result") == "fake evaluate done"


async def test_a_crashed_runner_shows_the_stage_failed_with_its_last_lines(empty_run, reap) -> None:
    app = make_app(empty_run, mode="crash")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await launch(pilot, reap, "r")
        await wait_until(pilot, lambda: screen.state.stages["index"].status == "failed")
        stage = screen.state.stages["index"]
        assert "code 3" in stage.error
        assert "simulated crash in index" in stage.traceback
        await pilot.pause()
        assert "simulated crash in index" in rendered(screen.query_one(StageDetail))


async def test_reattach_shows_the_history_of_a_run_left_running(empty_run, reap) -> None:
    first = make_app(empty_run, mode="hang")
    async with first.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: first.screen.query_one(StagesTable).row_count == 5)
        await pilot.press("r")
        reap.append(first.runner.process.pid)
        await wait_until(pilot, lambda: first.screen.state.stages["index"].done >= 5)
    # A second dashboard (after an SSH drop, say) sees the running stage and can stop it through the lock.
    second = make_app(empty_run, mode="hang")
    async with second.run_test(size=(100, 30)) as pilot:
        screen = second.screen
        await wait_until(pilot, lambda: screen.state.stages["index"].status == "running")
        assert screen.state.stages["index"].done >= 5
        await wait_until(pilot, lambda: screen.busy)
        await pilot.press("s")
        await wait_until(pilot, lambda: screen.state.stages["index"].status == "interrupted")
    assert first.runner.process.wait(timeout=WAIT_S) == 130


async def test_the_stages_table_widens_to_a_new_result(empty_run) -> None:
    """A result longer than its column shows whole once measured, even where the table drew the row
    in between (Textual's DataTable kept such rows at their old widths, textual#3533)."""
    from carclf_core import runstate as rs

    summary = "592 images in 8 classes, 4 rejected"
    app = make_app(empty_run)
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.screen.query_one(StagesTable)
        await wait_until(pilot, lambda: table.row_count == 5 and table.has_focus)
        await pilot.pause()
        state = app.screen.state.copy()
        state.stages["index"] = rs.StageState("index", status=rs.DONE, duration_s=1.0, summary=summary)
        table.show(state, 0.0)
        table.render_line(1)  # drawn before the table measured the new cell
        await pilot.pause()
        assert any(summary in table.render_line(y).text for y in range(table.size.height))


async def test_malformed_event_lines_are_skipped_and_reported(empty_run) -> None:
    write_events(empty_run, [ev.StageStarted(stage="index", t=1.0)])
    with open(empty_run.events_path, "a") as handle:
        handle.write("{this is not json\n")
    write_events(empty_run, [ev.StageFinished(stage="index", duration_s=1.0, summary="ok", t=2.0)])
    app = make_app(empty_run)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.state.stages["index"].status == "done")
        assert screen.state.bad_lines == 1
        await show_tab(pilot, "5")
        assert "events.jsonl line 2: malformed, skipped" in log_text(app)


async def test_threshold_keys_reapply_to_the_stored_scores(finished_run) -> None:
    pytest.importorskip("carclf_core.prefilter")
    scores = [float(line.split(",")[3]) for line in
              (Path(finished_run.path) / "prefilter" / "scores.csv").read_text().splitlines()[1:]]
    app = make_app(finished_run)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        pane = screen.panes["prefilter"]  # mounted when its tab first shows
        await wait_until(pilot, lambda: screen.state.run_status == "done")
        await show_tab(pilot, "4")
        assert screen.active_bindings["plus"].enabled
        await pilot.press("plus", "plus")
        await wait_until(pilot, lambda: pane.trial is not None and not pane.trial_pending)
        assert pane.threshold == pytest.approx(0.2)
        expected = sum(p > 0.2 for p in scores)
        assert pane.trial["kept"] == expected and expected != screen.state.prefilter.kept
        assert f"kept {expected:,} / 400" in rendered(screen.query_one(PrefilterSummary))
        assert not (Path(finished_run.path) / "prefilter" / "rule.json").exists()
        await pilot.press("w")  # asks first (test_leaving.py checks the question); y saves
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_until(pilot, lambda: "saved" in pane.notice)
        rule = json.loads((Path(finished_run.path) / "prefilter" / "rule.json").read_text())
        assert rule["threshold"] == pytest.approx(0.2) and rule["kept"] == expected


async def test_a_tab_opened_as_focus_settles_stays_open(finished_run) -> None:
    """The first frame focuses the stages table; on a busy machine the news of that focus reached the
    tabs after a tab key had opened another tab, and switched back to the stages (a snapshot of the
    training tab showed the stages, one run in three beside a CPU-heavy job). Here the two come in
    that order on purpose: the focus given and, before its news is handled, the training tab opened."""
    app = make_app(finished_run)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: isinstance(screen, MainScreen) and screen.state.run_status == "done")
        await screen.action_tab("training")  # mounted now: opening it again is done at once
        await screen.action_tab("stages")
        await wait_until_still(pilot)
        app.set_focus(screen.query_one(Tabs))
        await wait_until_still(pilot)
        app.set_focus(screen.query_one(StagesTable))  # as the first frame does: its news now queued
        await screen.action_tab("training")
        await wait_until_still(pilot)
        assert screen.query_one("#tabs").active == "training"
        assert screen.query_one(EpochTable).has_focus


async def test_a_tabs_keys_do_nothing_on_other_tabs(finished_run) -> None:
    """The prefilter pane's keys act on the prefilter tab only, the confusion pane's on its own tab
    only; neither shows in the footer elsewhere."""
    app = make_app(finished_run)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.state.run_status == "done")
        for tab in "12356":
            await show_tab(pilot, tab)
            await pilot.press("plus", "minus", "right_square_bracket", "w", *(["v"] if tab != "3" else []))
            await pilot.pause()
            assert not {"plus", "minus", "w"} & set(screen.active_bindings)
            assert ("v" in screen.active_bindings) == (tab == "3")
        pane = screen.panes["prefilter"]  # never shown: not even mounted
        assert pane.threshold is None and pane.trial is None and not pane.trial_pending and not pane.is_mounted
        assert not (Path(finished_run.path) / "prefilter" / "rule.json").exists()
        assert screen.query_one(ConfusionView).mode == "heatmap"


async def test_confusion_view_cycles(finished_run) -> None:
    pytest.importorskip("carclf_core.heatmap")
    app = make_app(finished_run)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.state.confusion is not None and screen.state.run_status == "done")
        await show_tab(pilot, "3")
        view = screen.query_one(ConfusionView)
        assert "heatmap  of the val sample · 8 classes" in rendered(view.query_one("#confusion-header"))
        await pilot.press("v")
        await pilot.pause()
        pairs = view.query_one("#confusion-pairs")
        assert view.mode == "most confused" and pairs.display and pairs.row_count > 0
        await pilot.press("v")
        await pilot.pause()
        classes = view.query_one("#confusion-classes")
        assert view.mode == "per class" and "recall" in [str(c.label) for c in classes.columns.values()]
        assert any("Volvo V90" in str(classes.get_row_at(i)[0]) for i in range(classes.row_count))


async def test_help_screen_lists_every_key(finished_run) -> None:
    app = make_app(finished_run)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        keys = dict(app.screen.bindings)
        for key in ("r", "a", "s", "n", "v", "+/-", "-", "w", "?", "q", "1"):
            assert key in keys, key
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))


async def test_80x24_renders_every_tab_and_resizes_live(finished_run) -> None:
    app = make_app(finished_run)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.state.run_status == "done")
        assert screen.has_class("-narrow")
        for tab in "123456":
            await show_tab(pilot, tab)
        await show_tab(pilot, "2")
        table = screen.query_one(EpochTable)
        assert table.size.height >= 5 and "val_acc" in [c.key for c in table.columns_shown]
        assert "top5" not in [c.key for c in table.columns_shown]  # dropped for want of room
        await pilot.resize_terminal(160, 48)
        await pilot.pause()
        assert screen.has_class("-wide") and table.size.height >= 14
        assert [c.key for c in table.columns_shown][:4] == ["epoch", "loss", "acc", "top5"]  # room for all


async def test_new_run_key_opens_a_fresh_run(finished_run, monkeypatch, tmp_path) -> None:
    from carclf_core import config as config_mod

    app = make_app(finished_run)
    app.config = config_mod.from_dict({"run": {"root": str(tmp_path / "fresh"), "name": "again"}})
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.screen.state.run_status == "done")
        await pilot.press("n")  # asks the name, offering the shown run's run.name
        await wait_until(pilot, lambda: isinstance(app.screen, RunNameScreen))
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.run_dir.name.endswith("-carclf") and isinstance(app.screen, MainScreen))
        await pilot.pause(0.3)
        assert app.screen.state.run_status == "pending"
        assert all(s.status == "pending" for s in app.screen.state.stages.values())


async def test_fast_event_stream_is_coalesced(empty_run) -> None:
    """Thousands of batch events arriving at once end in a handful of redraws, not thousands."""
    from carclf_tui.sample_run import _Clock, training_events

    app = make_app(empty_run)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        updates = []
        original = screen.show
        screen.show = lambda state: (updates.append(1), original(state))
        write_events(empty_run, training_events(_Clock(), epochs=5, steps=1000))
        await wait_until(pilot, lambda: len(screen.state.epoch_rows) == 5)
        assert screen.state.batch.epoch == 5 and screen.state.batch.last_step == 1000
        assert len(updates) < 20


async def test_no_color_still_says_everything_in_words(finished_run, monkeypatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(finished_run)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.state.run_status == "done")
        await pilot.pause()
        assert app.no_color
        assert cell(screen.query_one(StagesTable), "train", "status") == "✓ done"
        await show_tab(pilot, "2")
        assert "patience ███░ 3/4" in rendered(screen.query_one(TrainingStats))


async def test_a_symlinked_runner_log_is_refused_and_its_target_untouched(empty_run, tmp_path) -> None:
    """The dashboard appended the runner's output through a symlinked RUN/runner.log: it refuses to
    start the runner, says why, and writes nothing through the link."""
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    (empty_run.path / "runner.log").symlink_to(target)
    app = make_app(empty_run)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.query_one(StagesTable).row_count == 5)
        await pilot.press("r")
        await wait_until(pilot, lambda: any("runner.log: is a symbolic link" in str(note.message)
                                            for note in app._notifications))
        assert app.runner.process is None and not screen.busy
    assert target.read_text() == "keep me\n"
