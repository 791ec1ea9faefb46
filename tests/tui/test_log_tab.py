"""The log tab: what a new run says, lines wrapped to the width (never cut), one line per finished epoch,
the level filter (f), and lines that arrive while the tab is hidden."""

from __future__ import annotations

import pytest

from carclf_core import events as ev
from carclf_core import runstate as rs
from carclf_tui.sample_run import write_events
from carclf_tui.widgets.logview import LogView

from .conftest import make_app, wait_until
from .test_app import show_tab

LONG_NAME = "Volkswagen_Golf_2019_27_17_170_20_4_70_58_166_28_FWD_5_4_4dr_" + "k" * 60 + ".jpg"


def shown(app) -> list[str]:
    return [strip.text.rstrip() for strip in app.screen.query_one(LogView).lines]


def head(app) -> str:
    return str(app.screen.query_one("#log-head").render())


async def test_a_new_run_says_there_is_nothing_yet(empty_run) -> None:
    app = make_app(empty_run)
    async with app.run_test(size=(80, 24)) as pilot:
        await show_tab(pilot, "5")
        await wait_until(pilot, lambda: any("no log lines yet" in line for line in shown(app)))


async def test_long_lines_wrap_and_keep_the_reason_and_the_file(empty_run) -> None:
    write_events(empty_run, [ev.LogLine(level="warning", stage="index", file=LONG_NAME,
                                        message="rejected: file name: expected 17 fields, found 21")])
    app = make_app(empty_run)
    async with app.run_test(size=(80, 24)) as pilot:
        await show_tab(pilot, "5")
        view = app.screen.query_one(LogView)
        await wait_until(pilot, lambda: any("WARNING" in line for line in shown(app)))
        lines = shown(app)
        assert len(lines) >= 2 and all(len(line) <= view.scrollable_content_region.width for line in lines)
        assert LONG_NAME in "".join(lines)  # the whole name, over the lines it wraps to
        assert "found 21" in lines[0] and view.virtual_size.width <= view.size.width  # nothing to the right
        await pilot.resize_terminal(240, 30)
        await wait_until(pilot, lambda: len(shown(app)) == 1)  # wrapped again for the new width
        assert LONG_NAME in shown(app)[0]


async def test_each_finished_epoch_has_a_line(finished_run) -> None:
    app = make_app(finished_run)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.screen.state.run_status == "done")
        await show_tab(pilot, "5")
        lines = shown(app)
        epochs = [line for line in lines if "[train] epoch " in line]
        assert len(epochs) == 12
        assert epochs[8].endswith("[train] epoch 9/12  loss 0.2196  val_loss 0.4529  val_acc 0.7942")


async def test_f_steps_through_the_levels(finished_run) -> None:
    write_events(finished_run, [ev.LogLine(level="error", stage="evaluate", message="disk full writing metrics")])
    app = make_app(finished_run)
    async with app.run_test(size=(120, 30)) as pilot:  # wide enough for one line a log line
        await wait_until(pilot, lambda: app.screen.state.errors == 1)
        await show_tab(pilot, "5")
        kept = len(app.screen.state.log)
        assert head(app).startswith(f"all lines: {kept} of {kept}")
        await pilot.press("f")
        await wait_until(pilot, lambda: head(app).startswith("warnings and errors: 4 of"))
        assert len(shown(app)) == 4 and all("WARNING" in line or "ERROR" in line for line in shown(app))
        await pilot.press("f")
        await wait_until(pilot, lambda: head(app).startswith("errors only: 1 of"))
        assert [line.split(" ", 1)[1] for line in shown(app)] == ["ERROR [evaluate] disk full writing metrics"]
        write_events(finished_run, [ev.LogLine(level="warning", message="a warning while errors show")])
        await wait_until(pilot, lambda: app.screen.state.warnings == 4)
        assert len(shown(app)) == 1  # filtered out as it arrives
        await pilot.press("f")
        await wait_until(pilot, lambda: head(app).startswith(f"all lines: {kept + 1} of {kept + 1}"))
        assert shown(app)[-1].endswith("WARNING a warning while errors show")


async def test_an_empty_level_says_so(finished_run) -> None:
    app = make_app(finished_run)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.screen.state.run_status == "done")
        await show_tab(pilot, "5")
        await pilot.press("f", "f")
        await wait_until(pilot, lambda: head(app).startswith("errors only: 0 of"))
        assert shown(app) == [f"no errors among the {len(app.screen.state.log)} lines kept (f again shows more)"]


async def test_lines_that_came_while_hidden_are_all_there_once(finished_run) -> None:
    app = make_app(finished_run)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.screen.state.run_status == "done")
        await show_tab(pilot, "5")
        before, total = shown(app), app.screen.state.log_total
        await show_tab(pilot, "2")
        write_events(finished_run, [ev.LogLine(level="info", message=f"later {i}") for i in range(3)])
        await wait_until(pilot, lambda: app.screen.state.log_total == total + 3)
        await show_tab(pilot, "5")
        after = shown(app)
        assert after[:len(before)] == before and [line.split(" ", 1)[1] for line in after[len(before):]] == [
            "later 0", "later 1", "later 2"]


@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
async def test_the_counter_agrees_with_what_the_tab_holds_and_stages_say_when_they_start_and_end(
        finished_run, size) -> None:
    app = make_app(finished_run)
    async with app.run_test(size=size) as pilot:
        await wait_until(pilot, lambda: app.screen.state.run_status == "done")
        await show_tab(pilot, "5")
        lines = shown(app)
        assert any(line.endswith("[train] train started") for line in lines)
        assert any("[train] train done: " in line for line in lines)
        assert not any("(the last of" in line for line in [head(app)])
        more = rs.LOG_LINES + 150
        write_events(finished_run, [ev.LogLine(level="info", message=f"line {n}") for n in range(more)])
        total = app.screen.state.log_total
        await wait_until(pilot, lambda: app.screen.state.log_total >= total and shown(app)[-1].endswith(
            f"line {more - 1}"))
        total = app.screen.state.log_total
        assert head(app).startswith(f"all lines: {rs.LOG_LINES:,} of {rs.LOG_LINES:,} (the last of {total:,})")
        assert len(head(app)) <= size[0]
        await pilot.press("f")
        await wait_until(pilot, lambda: head(app).startswith("warnings and errors: "))
        matching = sum(1 for e in app.screen.state.log if e.level in ("warning", "error"))
        assert head(app).startswith(f"warnings and errors: {matching} of {rs.LOG_LINES:,}")
