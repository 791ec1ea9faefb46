"""The run-state reducer: what a replay of the event stream says, purity, bounded histories."""

from __future__ import annotations

from carclf_core import events as ev
from carclf_core import runstate as rs
from carclf_core.eventlog import parse_lines
from carclf_tui.sample_run import run_events


def replay(events) -> rs.RunState:
    return rs.fold(rs.new_state(("index", "prefilter", "split", "train", "evaluate")), events)


def test_replay_of_a_finished_run() -> None:
    state = replay(run_events(epochs=12, steps=40))
    assert state.run_status == "done"
    assert [state.stages[n].status for n in state.stage_order] == ["done"] * 5
    assert state.stages["index"].summary == "592 images in 8 classes, 4 rejected"
    assert [row.epoch for row in state.epoch_rows] == list(range(1, 13))
    assert state.patience is not None and state.patience.best_epoch == 9
    assert state.patience.stop_after == 12 + 4 - state.patience.wait
    assert state.confusion is not None and state.confusion.epoch == 12
    assert state.prefilter.kept == 500 and state.prefilter.scored == 592
    assert state.warnings == 3 and state.errors == 0
    assert [e.file for e in state.log if e.file][:1] == ["Audi_A4_e00.jpg"]


def test_apply_leaves_its_argument_alone() -> None:
    before = replay(list(run_events(epochs=2, steps=5))[:-3])
    snapshot = (before.revision, before.stages["train"].status, len(before.log), before.batch.steps[:])
    after = rs.apply(before, ev.StageFailed(stage="train", error="boom"))
    after = rs.apply(after, ev.BatchEnded(epoch=3, step=1, steps=5, loss=1.0))
    assert (before.revision, before.stages["train"].status, len(before.log), before.batch.steps) == snapshot
    assert after.stages["train"].status == "failed" and after.errors == before.errors + 1


def test_batch_curve_is_bounded_and_spans_the_epoch() -> None:
    events = [ev.EpochStarted(epoch=1, epochs=1, steps=10_000)]
    events += [ev.BatchEnded(epoch=1, step=s, steps=10_000, loss=1.0 / s) for s in range(1, 10_001)]
    state = replay(events)
    assert len(state.batch.steps) <= rs.BATCH_POINTS
    assert state.batch.steps[0] == 1 and state.batch.steps[-1] > 9_900
    assert state.batch.last_step == 10_000


def test_log_is_bounded_but_counts_everything() -> None:
    events = [ev.LogLine(level="warning", message=f"rejected {i}") for i in range(rs.LOG_LINES + 500)]
    state = replay(events)
    assert len(state.log) == rs.LOG_LINES
    assert state.log_total == rs.LOG_LINES + 500 and state.warnings == rs.LOG_LINES + 500
    assert state.log[-1].message == f"rejected {rs.LOG_LINES + 499}"


def test_restarted_training_replaces_abandoned_epochs() -> None:
    def epoch(n: int, loss: float) -> ev.EpochEnded:
        return ev.EpochEnded(epoch=n, epochs=5, metrics={"loss": loss})

    state = replay([epoch(1, 3.0), epoch(2, 2.0), epoch(3, 1.0), epoch(1, 2.5)])
    assert [(r.epoch, r.metrics["loss"]) for r in state.epoch_rows] == [(1, 2.5)]


def test_runner_lost_fails_the_running_stage_with_the_log_tail() -> None:
    state = replay([ev.RunStarted(run_dir="r", stages=("index",)), ev.StageStarted(stage="index")])
    lost = rs.runner_lost(state, "runner exited with code -9", ["Traceback", "MemoryError"], t=5.0)
    assert state.stages["index"].status == "running"
    assert lost.stages["index"].status == "failed"
    assert "MemoryError" in lost.stages["index"].traceback
    assert any("MemoryError" in e.message for e in lost.log)
    assert rs.runner_lost(lost, "again") is lost  # nothing running: nothing to mark


def test_malformed_lines_are_counted_and_logged() -> None:
    good = ev.to_json(ev.StageStarted(stage="index")).encode()
    events, bad, _ = parse_lines(good + b"\n{not json\n" + good + b"\n")
    state = rs.fold(rs.new_state(), events, bad)
    assert state.bad_lines == 1
    assert any("line 2" in e.message for e in state.log)


def test_a_failed_stage_keeps_its_message_and_traceback() -> None:
    """What the stages tab and the log panel show of a failure comes from here: the error line, the
    whole traceback, the run marked failed, and the stage's timing closed."""
    trace = 'Traceback (most recent call last):\n  File "train.py", line 9, in run\nOSError: [Errno 28] No space left'
    state = replay([ev.RunStarted(run_dir="r", stages=("index", "train")),
                    ev.StageStarted(stage="train", t=100.0),
                    ev.StageFailed(stage="train", error="disk full writing train/last.keras", traceback=trace,
                                   t=104.5),
                    ev.RunFinished(status="failed")])
    train = state.stages["train"]
    assert (train.status, train.error, train.traceback) == ("failed", "disk full writing train/last.keras", trace)
    assert train.summary == "disk full writing train/last.keras" and train.duration_s == 4.5
    assert state.run_status == "failed" and state.errors == 1 and state.current_stage == ""
    assert [(e.level, e.message, e.stage) for e in state.log] == [
        ("error", "train failed: disk full writing train/last.keras", "train")]
    # a later, successful attempt of the same stage starts clean: the old failure does not stick
    retried = rs.fold(state, [ev.StageStarted(stage="train", t=200.0),
                              ev.StageFinished(stage="train", duration_s=3.0, summary="8 epochs", t=203.0)])
    assert (retried.stages["train"].error, retried.stages["train"].traceback) == ("", "")
    assert state.stages["train"].traceback == trace  # and the state it was folded from is untouched
