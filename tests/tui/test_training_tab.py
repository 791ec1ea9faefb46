"""The training tab: smoothed speed and ETAs from the batch events, the phases before the first batch,
the plots' marks and ticks, and the tab at 80x24 and 200x60 (with NO_COLOR)."""

from __future__ import annotations

import re

import pytest
from rich.color import ColorSystem
from rich.style import Style
from rich.text import Text

from carclf_core import events as ev
from carclf_core import runstate as rs
from carclf_tui.sample_run import T0, write_events
from carclf_tui.widgets import plots
from carclf_tui.widgets.devices import DeviceLine
from carclf_tui.widgets.stages import StagesTable
from carclf_tui.widgets.training import COLUMNS, EpochTable, TrainingStats, fitting_columns

from .conftest import cell, launch, make_app, wait_until
from .test_app import show_tab

T = 1_000_000.0


def replay(events) -> rs.RunState:
    return rs.fold(rs.new_state(("train",)), events)


def epoch_events(epoch: int, start: float, *, steps: int = 100, step_s: float = 0.1, first_step_s: float = 5.0,
                 batch: int = 32, every: int = 5, validation_s: float = 2.0, epochs: int = 10,
                 phase: str = "finetune") -> list[ev.Event]:
    """One epoch as the trainer reports it: the first step slow (compiling), then ``step_s`` a step,
    a batch event every ``every`` steps, ``validation_s`` of validation before the epoch's end."""
    out: list[ev.Event] = [ev.EpochStarted(t=start, epoch=epoch, epochs=epochs, steps=steps, phase=phase)]
    for step in [1, *range(every, steps + 1, every)]:
        t = start + first_step_s + (step - 1) * step_s
        out.append(ev.BatchEnded(t=t, epoch=epoch, step=step, steps=steps, loss=1.0 / step, accuracy=0.5,
                                 images_per_s=step * batch / (t - start), eta_s=None))
    end = start + first_step_s + (steps - 1) * step_s + validation_s
    out.append(ev.EpochEnded(t=end, epoch=epoch, epochs=epochs, duration_s=end - start, images_per_s=100.0,
                             metrics={"loss": 0.5, "val_loss": 0.6, "val_categorical_accuracy": 0.75}))
    return out


def test_speed_leaves_out_the_first_step_and_validation() -> None:
    events = [ev.StageStarted(stage="train", t=T), *epoch_events(1, T + 10)]
    state = replay(events[:12])  # the first step took 5 s (compiling), then 0.1 s a step
    assert state.batch.steps_per_s == pytest.approx(10.0)
    assert state.batch.smoothed_images_per_s == pytest.approx(320.0)
    assert state.batch.images_per_s < 0.6 * 320  # what the trainer reported: the compilation included
    state = replay(events)
    assert state.after_steps_s == pytest.approx(2.0)  # validation, measured from the epoch's end


def test_speed_follows_a_change_and_ignores_the_gap_between_epochs() -> None:
    events = [ev.StageStarted(stage="train", t=T), *epoch_events(1, T, step_s=0.1),
              *epoch_events(2, T + 100, steps=400, step_s=0.05, first_step_s=0.05, validation_s=30.0)]
    state = replay(events[:-1])
    # from 10 to 20 steps/s: followed within the 20 s epoch; the 83 s between the epochs left out
    assert state.batch.steps_per_s == pytest.approx(20.0, rel=0.05)
    assert state.batch.first_of_fit is False


def test_progress_says_what_happens_before_the_first_batch() -> None:
    started = [ev.RunStarted(run_dir="r", stages=("train",), t=T), ev.StageStarted(stage="train", t=T)]
    progress = rs.training_progress(replay(started), now=T + 12)
    assert (progress.activity, progress.since, progress.epoch_eta_s, progress.run_eta_s) == (
        "building the model", T, None, None)
    epoch = epoch_events(1, T + 15)
    progress = rs.training_progress(replay(started + epoch[:1]), now=T + 17)
    assert (progress.activity, progress.since, progress.step) == ("compiling the first step", T + 15, 0)
    state = replay(started + epoch[:-1] + [ev.EpochEnded(t=T + 30, epoch=1, epochs=10, metrics={})])
    second = replay(started + epoch + epoch_events(2, T + 40)[:1])
    assert rs.training_progress(state, T + 31).activity == "ending the epoch"
    assert rs.training_progress(second, T + 41).activity == "starting epoch 2"
    assert rs.training_progress(replay(started + epoch[:-1]), T + 35).activity == "validating"
    assert rs.training_progress(replay(started + epoch[:5]), T + 60).activity == "no batch since"
    assert rs.training_progress(replay(started + epoch), T + 60) is not None
    assert rs.training_progress(replay([*started, *epoch, ev.StageInterrupted(stage="train", reason="SIGINT")]),
                                T + 60) is None  # nothing runs: no ETA left on screen


def test_etas_move_with_each_batch_and_count_down_between() -> None:
    started = [ev.StageStarted(stage="train", t=T)]
    events = started + epoch_events(1, T, validation_s=3.0) + epoch_events(2, T + 20, first_step_s=0.1)
    half = [e for e in events if not (isinstance(e, ev.BatchEnded) and e.epoch == 2 and e.step > 50)
            and not (isinstance(e, ev.EpochEnded) and e.epoch == 2)]
    state = replay(half)
    last_t = state.batch.last_t
    progress = rs.training_progress(state, now=last_t)
    # 50 steps left at 10 steps/s, then 3 s of validation; 8 more epochs of 10 s + 3 s
    assert progress.epoch_eta_s == pytest.approx(5.0 + 3.0, rel=0.02)
    assert progress.run_eta_s == pytest.approx(8.0 + 8 * 13.0, rel=0.02)
    assert progress.fraction == pytest.approx((1 + 0.5) / 10)
    assert progress.images_per_s == pytest.approx(320.0, rel=0.02)
    later = rs.training_progress(state, now=last_t + 2)
    assert later.epoch_eta_s == pytest.approx(progress.epoch_eta_s - 2, rel=0.02)
    more = replay(half + [e for e in events if isinstance(e, ev.BatchEnded) and e.epoch == 2 and 50 < e.step <= 70])
    assert rs.training_progress(more, more.batch.last_t).epoch_eta_s == pytest.approx(3.0 + 3.0, rel=0.02)


def test_early_stopping_gets_its_own_eta() -> None:
    events = [ev.StageStarted(stage="train", t=T), *epoch_events(1, T, validation_s=0.0, first_step_s=0.1),
              ev.PatienceChanged(t=T + 11, epoch=1, wait=1, patience=3, best=0.5, best_epoch=0)]
    progress = rs.training_progress(replay(events), now=T + 11)
    assert progress.activity == "ending the epoch" and progress.epoch_eta_s is None
    assert progress.run_eta_s == pytest.approx(9 * 10.0, rel=0.02)
    assert progress.stop_eta_s == pytest.approx(2 * 10.0, rel=0.02)  # stops after epoch 3 unless it improves


def test_each_finished_epoch_is_a_log_line() -> None:
    state = replay([ev.StageStarted(stage="train", t=T), *epoch_events(1, T)])
    started, line = [e for e in state.log if e.stage == "train"]
    assert started.message == "train started"
    assert (line.level, line.message) == ("info", "epoch 1/10  loss 0.5000  val_loss 0.6000  val_acc 0.7500")


# --- the plots' drawing, without an app ------------------------------------------------------------------


def test_epoch_ticks_are_whole_numbers_spaced_to_fit() -> None:
    assert plots.integer_ticks(1, 12, dots=140, label_width=2) == list(range(1, 13))
    for high, dots, width in ((12, 40, 2), (300, 70, 3), (37, 60, 2), (5000, 150, 4)):
        ticks = plots.integer_ticks(1, high, dots=dots, label_width=width)
        cells = [(t - 1) * dots / 2 / (high - 1) for t in ticks]
        assert ticks[0] == 1 and ticks[-1] > high * 0.7 and all(isinstance(t, int) for t in ticks)
        assert min(b - a for a, b in zip(cells, cells[1:], strict=False)) >= width + 1  # labels never touch


def test_the_value_axis_stays_put_for_a_small_change() -> None:
    assert plots.y_range([0.16, 1.75], rows=7) == plots.y_range([0.17, 1.71], rows=7) == (0.0, 2.0, 0.5)
    low, high, step = plots.y_range([0.5, 0.5], rows=5)  # one value: a range around it, never zero wide
    assert low < 0.5 < high and step > 0


def test_only_changed_cells_are_repainted() -> None:
    old = [Text("epoch 3/12 · step 10/200 · 612 img/s"), Text("patience ░░░░ 0/4")]
    new = [Text("epoch 3/12 · step 15/200 · 612 img/s"), Text("patience ░░░░ 0/4")]
    (region,) = plots.changed_regions(old, new, 40)
    assert (region.x, region.y, region.width, region.height) == (19, 0, 1, 1)
    far = [Text("epoch 3/12 · step 15/200 · 613 img/s"), old[1]]
    assert len(plots.changed_regions(old, far, 40)) == 2  # two changes far apart: two small regions
    styled = [Text(old[0].plain, style="bold"), old[1]]
    assert plots.changed_regions(old, styled, 40)[0].width == len(old[0].plain)  # a new style repaints
    assert plots.changed_regions(old, old[:1], 40) is None  # another size: everything is new


def test_each_plot_draws_with_a_plotext_figure_of_its_own() -> None:
    """Two plots, two plotext figures, neither plotext's module-level one (which any other code using
    plotext's functions would draw into); the drawing is plotext's: its axes and braille curves."""
    import plotext

    loss, acc = plots.CurvePlot("loss"), plots.CurvePlot("accuracy")
    assert loss.plotext_figure is loss.plotext_figure is not acc.plotext_figure
    assert plotext.figure not in (loss.plotext_figure, acc.plotext_figure)
    events = [ev.StageStarted(stage="train", t=T), *epoch_events(1, T), *epoch_events(2, T + 30),
              *epoch_events(3, T + 60)]
    loss._state = replay(events)
    legend, *body, axis, ticks = [line.plain for line in loss.figure(40, 12)]
    assert "train" in legend and "val" in legend and len(body) == 9
    assert all(line[4] in "┤│" for line in body) and axis[4] == "└" and ticks.split() == ["1", "2", "3"]
    assert any("\u2800" < c <= "\u28ff" for line in body for c in line)  # braille dots
    assert sum(line.count(plots.VAL_MARK) for line in body) == 3


def test_nan_and_infinite_points_are_left_out_and_counted() -> None:
    events = [ev.StageStarted(stage="train", t=T), *epoch_events(1, T), *epoch_events(2, T + 30)]
    events[-1] = ev.EpochEnded(t=T + 45, epoch=2, epochs=10, metrics={"loss": float("nan"), "val_loss": float("inf")})
    plot = plots.CurvePlot("loss")
    plot._state = replay(events)
    legend, *body, axis, ticks = [line.plain for line in plot.figure(60, 12)]
    assert "(2 NaN/inf not drawn)" in legend
    assert sum(line.count(plots.VAL_MARK) for line in body) == 1  # epoch 1's, the only finite one


def test_the_threshold_shows_over_the_histogram_bars() -> None:
    histogram = plots.HistogramPlot()
    edges = tuple(i / 20 for i in range(21))
    counts = (50, 20, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 4, 8, 16, 30, 60, 90)
    histogram._key = (edges, counts, 0.05)
    legend, *body, axis, ticks = [line.plain for line in histogram.figure(60, 14)]
    assert "threshold 0.05" in legend
    columns = {line.index(plots.THRESHOLD_LINE) for line in body}
    assert len(columns) == 1
    column = columns.pop()
    assert all(line[column] == plots.THRESHOLD_LINE for line in body)  # over the bars too
    assert ticks.split() == ["0.00", "0.25", "0.50", "0.75", "1.00"]
    assert any("█" in line for line in body)


def test_the_pacer_backs_off_while_the_terminal_falls_behind() -> None:
    now = [0.0]
    pacer = plots.Pacer(base=1.0, most=8.0, clock=lambda: now[0])
    assert pacer.due(backlog=0)
    now[0] = 0.5
    assert not pacer.due(backlog=0)
    intervals = []
    for _ in range(5):  # frames stay queued for the terminal: each redraw waits twice as long, up to 8 s
        now[0] += pacer.interval
        assert pacer.due(backlog=3)
        intervals.append(pacer.interval)
    assert intervals == [2.0, 4.0, 8.0, 8.0, 8.0]
    now[0] += pacer.interval
    assert pacer.due(backlog=0) and pacer.interval == 4.0  # the queue emptied: back towards 1 s


def test_the_marks_are_palette_colours_of_their_own() -> None:
    """Train, val and the best-epoch (threshold) line use named colours of the 16-colour palette, none
    black or white, all different: they survive 256 and 16 colours (a theme colour was drawn as the
    background), and the terminal's own palette decides how they look."""
    numbers = [Style.parse(style).color.downgrade(ColorSystem.STANDARD).number
               for style in (plots.TRAIN_STYLE, plots.VAL_STYLE, plots.MARK_STYLE, plots.BATCH_STYLE)]
    assert len(set(numbers)) == 4 and not set(numbers) & {0, 7, 8, 15}


def test_the_table_drops_top5_and_the_learning_rate_before_validation_accuracy() -> None:
    keys = [[c.key for c in fitting_columns(width)] for width in (200, 78, 60, 30, 10)]
    assert keys[0] == [c.key for c in COLUMNS]
    assert "top5" not in keys[1] and "val_acc" in keys[1] and "val_loss" in keys[1]
    assert "lr" not in keys[2] and "val_acc" in keys[2]
    assert keys[4] == ["epoch", "val_acc"]  # never fewer


# --- the tab in the app ------------------------------------------------------------------------------------


class Clock:
    """A wall clock the test moves."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def plot_lines(screen, metric: str) -> list[str]:
    return [line.plain for line in screen.query_one(f"#{'loss' if metric == 'loss' else 'acc'}-plot").lines]


def stats(screen) -> str:
    return "\n".join(line.plain for line in screen.query_one(TrainingStats).lines)


@pytest.mark.parametrize("no_color", [False, True])
async def test_a_finished_run_at_80x24(finished_run, monkeypatch, no_color) -> None:
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(finished_run)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.state.run_status == "done")
        await show_tab(pilot, "2")
        assert app.no_color == no_color
        table = screen.query_one(EpochTable)
        shown = [c.key for c in table.columns_shown]
        assert "val_acc" in shown and "top5" not in shown
        assert table.virtual_size.width <= table.size.width  # nothing to scroll sideways to
        assert table.get_row("9")[0].plain == "9*"  # the best epoch, marked by a character
        assert "run ETA finished" in stats(screen) and "best val_loss 0.4529 at epoch 9" in stats(screen)
        for metric in ("loss", "accuracy"):
            legend, *body, axis, ticks = plot_lines(screen, metric)
            assert "train" in legend and "val" in legend and "best 9" in legend  # the legend: a line of its own
            assert not any("train" in line or "val" in line for line in body)
            assert ticks.split() == [str(e) for e in range(1, 13)]  # whole epochs
            assert sum(line.count(plots.VAL_MARK) for line in body) >= 10  # val is marked, train is not
            column = {line.index(plots.BEST_LINE) for line in body if plots.BEST_LINE in line}
            # the best epoch's line sits on its tick (plotext marks a line crossing the axis with ┼) and label
            best_column = column.pop()
            assert len(column) == 0 and axis[best_column] == "┼" and ticks[best_column] == "9"


async def test_200x60_gives_the_room_to_the_curves_and_all_columns(finished_run) -> None:
    app = make_app(finished_run)
    async with app.run_test(size=(200, 60)) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.state.run_status == "done")
        await show_tab(pilot, "2")
        assert [c.key for c in screen.query_one(EpochTable).columns_shown] == [c.key for c in COLUMNS]
        loss = plot_lines(screen, "loss")
        assert len(loss) >= 25 and max(map(len, loss)) >= 95
        assert len(screen.query_one(TrainingStats).lines) <= 3


async def test_the_tab_says_what_happens_before_the_first_batch_and_clears_when_it_stops(empty_run) -> None:
    clock = Clock(T0)
    app = make_app(empty_run, clock=clock)
    with empty_run.lock():  # as a runner does: a run whose lock nobody holds has a lost runner
        async with app.run_test(size=(100, 30)) as pilot:
            screen = app.screen
            await show_tab(pilot, "2")
            write_events(empty_run, [ev.RunStarted(t=T0, run_dir=str(empty_run.path), stages=("train",)),
                                     ev.StageStarted(t=T0, stage="train")])
            await wait_until(pilot, lambda: screen.state.running_stage() == "train")
            clock.t = T0 + 12
            await wait_until(pilot, lambda: "building the model 12s" in stats(screen))
            assert "waiting for the first batch" in "\n".join(plot_lines(screen, "loss"))
            epoch = epoch_events(1, T0 + 15, steps=200, step_s=0.1, first_step_s=6.0)
            write_events(empty_run, epoch[:1])
            clock.t = T0 + 18
            await wait_until(pilot, lambda: "epoch 1/10 (finetune): compiling the first step 3s" in stats(screen))
            write_events(empty_run, epoch[1:21])  # 96 steps: 6 s for the first, then 10 steps a second
            clock.t = epoch[20].t
            await wait_until(pilot, lambda: "step 95/200" in stats(screen))
            text = stats(screen)
            assert "320 img/s" in text  # 32 images a step, 10 steps a second: the first step left out
            assert re.search(r"epoch ETA 1[01]s", text) and "run ETA " in text  # 105 steps at 10 a second
            await show_tab(pilot, "1")
            row = cell(screen.query_one(StagesTable), "train", "result")
            assert re.fullmatch(r"epoch 1/10 · 5 % · ETA [0-9:]+", row), row
            await show_tab(pilot, "2")
            write_events(empty_run, [ev.StageInterrupted(t=clock.t, stage="train", reason="SIGINT")])
            await wait_until(pilot, lambda: "training stopped before an epoch ended" in stats(screen))
            assert "ETA" not in stats(screen) and "img/s" not in stats(screen)


async def test_the_device_line_shows_each_gpu_through_nvml(finished_run, monkeypatch) -> None:
    """This machine has no NVIDIA driver: NVML is the stand-in of test_devices, loaded by the worker."""
    from carclf_tui import devices as devices_mod

    from .test_devices import H100, fake_nvml

    monkeypatch.setattr(devices_mod, "load_nvml", lambda: (fake_nvml([H100, {**H100, "util": 3}]), ""))
    app = make_app(finished_run)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = app.screen
        await show_tab(pilot, "2")
        line = screen.query_one(DeviceLine)
        await wait_until(pilot, lambda: line.report is not None)
        text = "\n".join(t.plain for t in line.lines)
        assert "GPU0 NVIDIA H100 80GB HBM3  87 %" in text and "41.0/80.0 GiB 63 °C 310 W" in text
        # Both fit on one line only with the second one short (flow shortens the last items first)
        assert "GPU1 3 % 41/80 GiB" in text and len(line.lines) == 1


async def test_without_a_gpu_the_device_line_follows_the_runner(empty_run, reap) -> None:
    """The fake runner (a real child process) runs 'train': the line samples its CPU and memory."""
    app = make_app(empty_run, mode="hang")
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await launch(pilot, reap, "down", "down", "down", "r")
        await show_tab(pilot, "2")
        line = screen.query_one(DeviceLine)
        pid = app.runner.process.pid
        await wait_until(pilot, lambda: any(f"runner pid {pid}" in t.plain for t in line.lines))
        await pilot.press("s")
        await wait_until(pilot, lambda: app.runner.poll() is not None)
