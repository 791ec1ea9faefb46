"""The training tab: smoothed speed and ETAs from the batch events, the phases before the first batch,
the plots' marks and ticks, and the tab at 80x24 and 200x60 (with NO_COLOR)."""

from __future__ import annotations

import pytest

from carclf_core import events as ev
from carclf_core import runstate as rs

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
    (line,) = [e for e in state.log if e.stage == "train"]
    assert (line.level, line.message) == ("info", "epoch 1/10  loss 0.5000  val_loss 0.6000  val_acc 0.7500")
