"""80x24 everywhere: the run picker, the stages table, the per-class view and the help lay themselves out
by width (as the training tab does): at 80 columns nothing is cut mid-word or off the edge, and at 200
columns everything shows whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from carclf_core import events as ev
from carclf_tui.sample_run import make_run_dir, write_events, write_sample_run
from carclf_tui.screens.help import HelpScreen
from carclf_tui.screens.picker import RunPicker, fitting_columns
from carclf_tui.widgets.confusion import ConfusionView
from carclf_tui.widgets.stages import StagesTable

from .conftest import STAGES, cell, frozen_clock, make_app, rendered, wait_until
from .test_confusion_tab import open_confusion
from .test_picker import open_picker

SIZES = [(80, 24), (200, 60)]
LONG = ("test accuracy 0.871 (chance 0.125, majority 0.140), top-5 0.990 (chance 0.625), balanced 0.862 on "
        "88 images; none with a copy in train")


def lines_of(widget) -> list[str]:
    return [widget.render_line(y).text for y in range(widget.size.height)]


@pytest.mark.parametrize("size", SIZES)
async def test_the_picker_keeps_status_and_time_whole(tmp_path, size) -> None:
    root = tmp_path / "runs"
    shown = write_sample_run(root, "20260101-100000-done")
    partial = make_run_dir(root, "20260101-110000-a-partial-run-with-a-long-name")
    for name in STAGES[:2]:
        partial.update_stage_state(name, status="done", duration_s=3723.0)
    stopped = make_run_dir(root, "20260101-120000-stopped")
    for name in STAGES[:4]:
        stopped.update_stage_state(name, status="done", duration_s=60.0)
    stopped.update_stage_state("evaluate", status="interrupted", duration_s=5.0)
    app = make_app(shown, clock=frozen_clock)
    async with app.run_test(size=size) as pilot:
        picker = await open_picker(pilot)
        table = picker.query_one("#runs")
        keys = {Path(k).name: k for k in picker.runs}
        columns = [c.key.value for c in table.ordered_columns]
        assert {"run", "status", "time"} <= set(columns)
        if size[0] >= 200:
            assert columns == ["run", "status", "classes", "val acc", "test acc", "time", "age"]
        assert cell(table, keys[partial.name], "status") == "◐ partial 2/5 done"
        assert cell(table, keys[stopped.name], "status") == "■ interrupted evaluate"
        assert cell(table, keys[partial.name], "time") == "2:04:06"
        assert all(len(line.rstrip()) <= table.size.width for line in lines_of(table))
        run_cell = cell(table, keys[partial.name], "run")
        assert run_cell.startswith("  20260101-") and run_cell.endswith("long-name")  # cut in the middle
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, RunPicker))


def test_the_picker_leaves_columns_out_in_order_and_keeps_the_run_readable() -> None:
    assert fitting_columns(200)[0] == ("run", "status", "classes", "val acc", "test acc", "time", "age")
    columns, run_width = fitting_columns(76)  # the picker's table at 80 columns
    assert columns == ("run", "status", "test acc", "time", "age") and run_width >= 22
    assert fitting_columns(60)[0] == ("run", "status", "time")


@pytest.mark.parametrize("size", SIZES)
async def test_the_stages_table_cuts_a_result_at_a_word_and_the_detail_says_it_whole(finished_run, size) -> None:
    write_events(finished_run, [ev.StageUpdated(stage="evaluate", summary=LONG)])
    app = make_app(finished_run, clock=frozen_clock)
    async with app.run_test(size=size) as pilot:
        table = app.screen.query_one(StagesTable)
        await wait_until(pilot, lambda: app.screen.state.stages["evaluate"].summary == LONG)
        await wait_until(pilot, lambda: cell(table, "evaluate", "result") != "")
        await pilot.pause()
        shown = cell(table, "evaluate", "result")
        if size[0] >= 200:
            assert shown == LONG
        else:
            assert shown.endswith("…") and LONG.startswith(shown[:-1]) and LONG[len(shown) - 1] == " "
        line = next(line for line in lines_of(table) if line.lstrip().startswith("evaluate"))
        assert shown in line and len(line.rstrip()) <= size[0]  # drawn whole: not cut again by the table
        table.move_cursor(row=STAGES.index("evaluate"))  # the detail of the selected stage says it all
        detail = app.screen.query_one("#stage-detail")
        await wait_until(pilot, lambda: LONG in rendered(detail).replace("\n", " "))


@pytest.mark.parametrize("size", SIZES)
async def test_the_per_class_view_fits_its_width(picture_run, size) -> None:
    app = make_app(picture_run, clock=frozen_clock)
    async with app.run_test(size=size) as pilot:
        view: ConfusionView = await open_confusion(pilot)
        await pilot.press("v", "v")
        await wait_until(pilot, lambda: view.mode == "per class" and view.query_one("#confusion-classes").row_count)
        await pilot.pause()
        table = view.query_one("#confusion-classes")
        lines = lines_of(table)
        assert all(len(line.rstrip()) <= table.size.width for line in lines)
        heading = lines[0]
        for word in ("class", "recall", "f1", "taken for"):
            assert word in heading
        assert "Alfa Romeo_Series-1 (1)" in lines[1]  # what class 1 is taken for, with its count, whole
        header = view.query_one("#confusion-header").render().plain
        assert all(len(line) <= size[0] for line in header.split("\n"))


@pytest.mark.parametrize("size", [(80, 24), (100, 30), (200, 60)])
async def test_the_help_shows_its_last_paragraph_whole_or_not_at_all(finished_run, size) -> None:
    app = make_app(finished_run)
    async with app.run_test(size=size) as pilot:
        await wait_until(pilot, lambda: app.screen.state.run_status == "done")
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.pause()
        screen = app.screen
        note = screen.query_one("#help-note")
        box = screen.query_one("VerticalScroll")
        if note.display:
            # all of the note inside the box, nothing scrolled off
            assert note.region.bottom <= box.region.bottom - 1 and box.max_scroll_y == 0
        else:
            assert size == (80, 24)
        if size[0] >= 200:
            assert note.display
