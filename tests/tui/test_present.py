"""A run always shows its present: a stage started again clears its panels, a resumed train says the
same epoch in the header and its row, the header never says done while a stage is stale or pending and
keeps its error count at 80 columns, and a resumed stage shows its whole time."""

from __future__ import annotations

import time

import pytest

from carclf_core import events as ev
from carclf_core import runstate as rs
from carclf_tui.sample_run import write_events, write_sample_run
from carclf_tui.widgets.stages import StagesTable
from carclf_tui.widgets.status import StatusLine
from carclf_tui.widgets.training import EpochTable, TrainingStats

from .conftest import cell, make_app, rendered, wait_until
from .test_app import show_tab

SIZES = [(80, 24), (200, 60)]


def header(app) -> str:
    return rendered(app.screen.query_one(StatusLine))


@pytest.mark.parametrize("size", SIZES)
async def test_a_train_run_again_clears_the_training_panels_at_once(finished_run, size) -> None:
    app = make_app(finished_run)
    with finished_run.lock():  # a runner holds it (without one the dashboard says the runner is gone)
        async with app.run_test(size=size) as pilot:
            screen = app.screen
            await wait_until(pilot, lambda: screen.state.run_status == "done")
            await show_tab(pilot, "2")
            await wait_until(pilot, lambda: screen.query_one(EpochTable).row_count == 12)
            assert "at epoch 9" in rendered(screen.query_one(TrainingStats))
            now = time.time()
            write_events(finished_run, [ev.RunStarted(run_dir=str(finished_run.path), stages=("train",), t=now),
                                        ev.StageStarted(stage="train", t=now)])
            await wait_until(pilot, lambda: screen.query_one(EpochTable).row_count == 0)
            assert "at epoch 9" not in rendered(screen.query_one(TrainingStats))  # the old patience went too
            assert "▶ train" in header(app) and "epoch" not in header(app)  # not the old epoch 12/12
            await show_tab(pilot, "1")
            table = screen.query_one(StagesTable)
            await wait_until(pilot, lambda: cell(table, "train", "result").startswith("building the model"))
            write_events(finished_run, [ev.EpochStarted(epoch=1, epochs=5, steps=10, t=now + 1),
                                        ev.EpochEnded(epoch=1, epochs=5, metrics={"loss": 2.0, "val_loss": 2.5},
                                                      t=now + 2)])
            await show_tab(pilot, "2")
            await wait_until(pilot, lambda: screen.query_one(EpochTable).row_count == 1)


@pytest.mark.parametrize("size", SIZES)
async def test_a_resumed_train_says_one_epoch_and_its_whole_time(tmp_path, size) -> None:
    run = write_sample_run(tmp_path / "runs", epochs=3, planned=12, finished=False)
    app = make_app(run)
    with run.lock():  # a runner holds it (without one the dashboard says the runner is gone)
        async with app.run_test(size=size) as pilot:
            screen = app.screen
            await wait_until(pilot, lambda: len(screen.state.epoch_rows) == 3)
            now = time.time()
            write_events(run, [ev.EpochStarted(epoch=4, epochs=12, steps=40, t=now - 200),
                               ev.StageInterrupted(stage="train", reason="SIGINT", t=now - 190),
                               ev.RunFinished(status="interrupted", t=now - 190),
                               ev.RunStarted(run_dir=str(run.path), stages=("train", "evaluate"), t=now - 100),
                               ev.StageStarted(stage="train", spent_s=3600.0, t=now - 100)])
            await wait_until(pilot, lambda: screen.state.stages["train"].spent_s == 3600.0)
            table = screen.query_one(StagesTable)
            await wait_until(pilot, lambda: cell(table, "train", "time").startswith("1:01:"))  # 3600 s + 100 s
            assert "epoch" not in header(app)  # not epoch 4 of the stopped attempt
            write_events(run, [ev.EpochStarted(epoch=4, epochs=12, steps=40, t=now - 50)])
            await wait_until(pilot, lambda: "epoch 4/12" in header(app))
            await wait_until(pilot, lambda: cell(table, "train", "result").startswith("epoch 4/12"))
            assert [row.epoch for row in screen.state.epoch_rows] == [1, 2, 3]  # the epochs it continues


@pytest.mark.parametrize("size", SIZES)
async def test_the_header_says_stale_not_done_and_keeps_its_error_count(tmp_path, size) -> None:
    run = write_sample_run(tmp_path / "runs", name="20260101-120000-a-rather-long-experiment-name-for-ssh")
    write_events(run, [ev.StagesStale(stale={"train": "split changed", "evaluate": "train changed"}),
                       ev.LogLine(level="error", message="disk full writing metrics")])
    app = make_app(run)
    async with app.run_test(size=size) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.state.errors == 1 and screen.state.run_status == "done")
        await pilot.pause()
        line = header(app)
        assert "errors 1" in line and "warnings" in line and "↻ 2 stale" in line and "✓" not in line
        assert "3/5 done" in line and len(line) <= size[0]
        if size[0] >= 200:
            assert "carclf 20260101-120000-a-rather-long-experiment-name-for-ssh" in line
        else:
            assert "…" in line  # the name gave way, not the counts


def test_the_header_says_what_happens_while_the_runner_starts() -> None:
    state = rs.fold(rs.new_state(("index", "train")), [
        ev.StageStarted(stage="index", t=1.0), ev.StageInterrupted(stage="index", reason="SIGINT", t=2.0),
        ev.RunFinished(status="interrupted", t=2.0)])
    assert "■ interrupted" in StatusLine.line("run", state, False, 80).plain
    starting = StatusLine.line("run", state, True, 80).plain
    assert "▶ starting the runner" in starting and "interrupted" not in starting
    assert "· idle" in StatusLine.line("run", rs.new_state(("index", "train")), False, 80).plain
