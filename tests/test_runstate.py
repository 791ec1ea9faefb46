"""The run-state reducer: what a replay of the event stream says, purity, bounded histories."""

from __future__ import annotations

import numpy as np

from carclf_core import events as ev
from carclf_core import runstate as rs
from carclf_core.eventlog import BadLine, parse_lines
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
    assert [(e.t, e.level, e.message, e.stage) for e in state.log] == [
        (100.0, "info", "train started", "train"),
        (104.5, "error", "train failed: disk full writing train/last.keras", "train")]
    # a later, successful attempt of the same stage starts clean: the old failure does not stick
    retried = rs.fold(state, [ev.StageStarted(stage="train", t=200.0),
                              ev.StageFinished(stage="train", duration_s=3.0, summary="8 epochs", t=203.0)])
    assert (retried.stages["train"].error, retried.stages["train"].traceback) == ("", "")
    assert state.stages["train"].traceback == trace  # and the state it was folded from is untouched


COUNTERS = ("revision", "rev_stages", "rev_training", "rev_prefilter", "rev_log")

# Each event, and the change counters it must move (revision always): a view redraws only what moved,
# so a counter left still is a frozen panel and one moved for nothing is wasted redrawing.
BUMPS = [
    (ev.RunStarted(run_dir="r", stages=("index", "prefilter")), {"rev_stages"}),
    (ev.StageStarted(stage="index"), {"rev_stages", "rev_log"}),  # its log line
    (ev.StageProgress(stage="index", done=1, total=2), {"rev_stages"}),
    (ev.StageFinished(stage="index", duration_s=1.0, summary="ok"), {"rev_stages", "rev_log"}),
    (ev.StageStarted(stage="prefilter"), {"rev_stages", "rev_prefilter", "rev_log"}),
    (ev.StageProgress(stage="prefilter", done=1, total=2), {"rev_stages", "rev_prefilter"}),
    (ev.PrefilterHistogram(edges=(0.0, 0.5, 1.0), counts=(1, 1), threshold=0.1, kept=1, scored=2), {"rev_prefilter"}),
    (ev.PrefilterExamples(kept=(("a.jpg", 0.9),), rejected=(("b.jpg", 0.0),)), {"rev_prefilter"}),
    (ev.StageInterrupted(stage="prefilter", reason="SIGINT"), {"rev_stages", "rev_log"}),
    (ev.LogLine(level="info", message="hello"), {"rev_log"}),
    (ev.EpochStarted(epoch=1, epochs=2, steps=3), {"rev_training"}),
    (ev.BatchEnded(epoch=1, step=1, steps=3, loss=1.0), {"rev_training"}),
    (ev.EpochEnded(epoch=1, epochs=2, metrics={"loss": 1.0}), {"rev_training", "rev_log"}),  # its log line
    (ev.PatienceChanged(epoch=1, wait=0, patience=3, best=1.0, best_epoch=1), {"rev_training"}),
    (ev.ConfusionReady(epoch=1, classes=("a", "b"), matrix=((1, 0), (0, 1))), {"rev_training"}),
    (ev.StageFailed(stage="train", error="boom"), {"rev_stages", "rev_log"}),
    (ev.RunFinished(status="failed"), {"rev_stages"}),
]


def _counters(state: rs.RunState) -> dict[str, int]:
    return {name: getattr(state, name) for name in COUNTERS}


def test_each_event_moves_the_revision_and_exactly_its_sections_counters() -> None:
    state = rs.new_state()
    for event, moved in BUMPS:
        after = rs.apply(state, event)
        change = {k: v - _counters(state)[k] for k, v in _counters(after).items()}
        assert change == {name: int(name == "revision" or name in moved) for name in COUNTERS}, event.kind
        state = after
    lost = rs.runner_lost(rs.fold(state, [ev.StageStarted(stage="train")]), "gone", ["a", "b"])
    assert lost.rev_log - state.rev_log == 1 + 3  # the stage's start, the error line and the two tail lines
    noted = rs.note(state, "info", "runner exited")
    assert {k: v - _counters(state)[k] for k, v in _counters(noted).items()} == {
        "revision": 1, "rev_stages": 0, "rev_training": 0, "rev_prefilter": 0, "rev_log": 1}
    skipped = rs.fold(state, [], [BadLine(7, "truncated"), 9])
    assert skipped.revision - state.revision == 2 and skipped.rev_log - state.rev_log == 2 and skipped.bad_lines == 2
    assert [(e.t, e.level, e.message) for e in list(skipped.log)[-2:]] == [
        (0.0, "warning", "events.jsonl line 7: truncated, skipped"),
        (0.0, "warning", "events.jsonl line 9: malformed, skipped")]


def test_training_events_fill_every_field_they_carry() -> None:
    state = replay([
        ev.EpochStarted(epoch=3, epochs=9, steps=40, phase="warmup"),
        ev.BatchEnded(epoch=3, step=5, steps=40, loss=0.7, accuracy=0.25, images_per_s=80.0, eta_s=12.0),
        ev.EpochEnded(epoch=3, epochs=9, metrics={"loss": 0.6, "val_loss": 0.8}, learning_rate=1e-4, duration_s=4.0,
                      images_per_s=90.0, eta_s=24.0),
        ev.PatienceChanged(epoch=3, wait=1, patience=4, best=0.75, best_epoch=2, monitor="val_loss"),
        ev.ConfusionReady(epoch=3, classes=("a", "b"), matrix=((3, 1), (0, 4)), split="val", sample=8),
        ev.BatchEnded(epoch=4, step=2, steps=40, loss=0.5),  # a new epoch's batch starts a new curve
    ])
    assert (state.epoch, state.epochs, state.phase) == (3, 9, "warmup")
    assert state.epoch_rows == [rs.EpochRow(3, 9, {"loss": 0.6, "val_loss": 0.8}, 1e-4, 4.0, 90.0, 24.0)]
    assert state.patience == rs.Patience(3, 1, 4, 0.75, 2, "val_loss") and state.patience.stop_after == 6
    # the dense form older logs carry is read as its non-zero cells
    assert state.confusion == rs.Confusion(3, ("a", "b"), ((0, 0, 3), (0, 1, 1), (1, 1, 4)), "val", 8)
    assert state.confusion.counts().tolist() == [[3, 1], [0, 4]]
    curve = state.batch
    assert (curve.epoch, curve.steps, curve.loss, curve.accuracy, curve.last_step) == (4, [2], [0.5], [None], 2)
    assert (curve.total_steps, curve.images_per_s, curve.eta_s) == (40, None, None)
    before = replay([ev.EpochStarted(epoch=3, epochs=9, steps=40),
                     ev.BatchEnded(epoch=3, step=5, steps=40, loss=0.7, accuracy=0.25, images_per_s=80.0, eta_s=12.0)])
    b = before.batch
    assert (b.steps, b.loss, b.accuracy, b.total_steps, b.images_per_s, b.eta_s) == ([5], [0.7], [0.25], 40, 80.0, 12.0)


def test_stage_and_prefilter_events_fill_every_field_they_carry() -> None:
    state = replay([
        ev.RunStarted(run_dir="runs/x", stages=("index", "prefilter"), pid=77, t=10.0),
        ev.StageStarted(stage="index", total=5, t=11.0),
        ev.StageProgress(stage="index", done=2, total=5, rate=4.0, eta_s=0.75, info={"kept": 2}, t=11.5),
        ev.LogLine(level="warning", message="rejected: empty file", stage="index", file="a.jpg", t=11.6),
        ev.StageFinished(stage="index", duration_s=1.5, summary="5 images", result={"images": 5}, t=13.0),
        ev.StageStarted(stage="prefilter", t=14.0),
        ev.PrefilterHistogram(edges=(0.0, 0.5, 1.0), counts=(3, 2), threshold=0.1, kept=2, scored=5),
        ev.PrefilterExamples(kept=(("c.jpg", 0.9),), rejected=(("d.jpg", 0.01),)),
        ev.StageInterrupted(stage="prefilter", reason="SIGTERM", t=15.0),
        ev.RunFinished(status="interrupted"),
    ])
    assert (state.run_dir, state.runner_pid, state.run_status, state.current_stage) == ("runs/x", 77, "interrupted", "")
    index = state.stages["index"]
    assert (index.status, index.started, index.finished, index.duration_s, index.summary) == (
        "done", 11.0, 13.0, 1.5, "5 images")
    assert (index.done, index.total, index.rate, index.eta_s, index.info) == (2, 5, 4.0, 0.75, {"kept": 2, "images": 5})
    prefilter = state.stages["prefilter"]
    assert (prefilter.status, prefilter.duration_s, prefilter.summary) == (
        "interrupted", 1.0, "stopped (SIGTERM); finished work kept")
    assert state.prefilter == rs.PrefilterView((0.0, 0.5, 1.0), (3, 2), 0.1, 2, 5, (("c.jpg", 0.9),),
                                               (("d.jpg", 0.01),))
    assert [(e.t, e.level, e.message, e.stage, e.file) for e in state.log] == [
        (11.0, "info", "index started", "index", ""),
        (11.6, "warning", "rejected: empty file", "index", "a.jpg"),
        (13.0, "info", "index done: 5 images", "index", ""),
        (14.0, "info", "prefilter started", "prefilter", ""),
        (15.0, "warning", "prefilter interrupted: SIGTERM", "prefilter", "")]
    assert (state.warnings, state.errors, state.log_total) == (2, 0, 5)
    # a restarted prefilter starts from an empty view, not the interrupted attempt's histogram
    restarted = rs.apply(state, ev.StageStarted(stage="prefilter", t=20.0))
    assert restarted.prefilter == rs.PrefilterView() and restarted.stages["prefilter"].status == "running"


def test_a_copy_shares_nothing_a_later_event_changes() -> None:
    before = replay([ev.StageStarted(stage="index"), ev.StageProgress(stage="index", done=1, info={"kept": 1}),
                     ev.EpochStarted(epoch=1, epochs=2, steps=10),
                     ev.BatchEnded(epoch=1, step=1, steps=10, loss=2.0, accuracy=0.1),
                     ev.PrefilterHistogram(edges=(0.0, 1.0), counts=(4,), threshold=0.1, kept=1, scored=4),
                     ev.LogLine(level="info", message="first")])
    snapshot = (dict(before.stages["index"].info), list(before.batch.steps), list(before.batch.loss),
                list(before.batch.accuracy), before.prefilter.threshold, [e.message for e in before.log])
    after = rs.fold(before, [ev.StageProgress(stage="index", done=2, info={"kept": 2, "more": 1}),
                             ev.BatchEnded(epoch=1, step=2, steps=10, loss=1.0, accuracy=0.2),
                             ev.PrefilterHistogram(edges=(0.0, 1.0), counts=(4,), threshold=0.3, kept=0, scored=4),
                             ev.LogLine(level="info", message="second")])
    assert (dict(before.stages["index"].info), before.batch.steps, before.batch.loss, before.batch.accuracy,
            before.prefilter.threshold, [e.message for e in before.log]) == snapshot
    assert after.stages["index"].info == {"kept": 2, "more": 1} and after.batch.loss == [2.0, 1.0]
    assert [e.message for e in after.log] == ["index started", "first", "second"]
    assert after.prefilter.threshold == 0.3


def test_the_batch_curve_keeps_evenly_spaced_aligned_points() -> None:
    events = [ev.EpochStarted(epoch=1, epochs=1, steps=5000)]
    events += [ev.BatchEnded(epoch=1, step=s, steps=5000, loss=float(s), accuracy=s / 5000) for s in range(1, 5001)]
    curve = replay(events).batch
    assert curve.stride == 32  # 5000 steps into fewer than 256 points: halved five times
    assert len(curve.steps) < rs.BATCH_POINTS and set(np.diff(curve.steps)) == {curve.stride}
    assert curve.steps[0] == 1 and curve.steps[-1] > 5000 - curve.stride
    assert curve.loss == [float(s) for s in curve.steps] and curve.accuracy == [s / 5000 for s in curve.steps]


def test_a_lost_runner_fails_the_running_stage_with_every_detail() -> None:
    state = replay([ev.RunStarted(run_dir="r", stages=("index", "train")), ev.StageStarted(stage="train", t=1.0)])
    lost = rs.runner_lost(state, "runner exited with code -9", ["Traceback", "MemoryError"], t=5.0)
    train = lost.stages["train"]
    assert (train.status, train.error, train.summary, train.traceback, train.finished) == (
        "failed", "runner exited with code -9", "runner exited with code -9", "Traceback\nMemoryError", 5.0)
    assert (lost.run_status, lost.current_stage, lost.errors) == ("failed", "", 1)
    assert [(e.t, e.level, e.message, e.stage) for e in lost.log] == [
        (1.0, "info", "train started", "train"),
        (5.0, "error", "train: runner exited with code -9", "train"),
        (5.0, "info", "  | Traceback", "train"), (5.0, "info", "  | MemoryError", "train")]
    assert rs.runner_lost(state, "gone").stages["train"].finished is None  # no time given: none made up


def test_an_event_the_reducer_cannot_fold_is_skipped_counted_and_logged() -> None:
    broken = ev.StageProgress(stage="index", done=1, info=5)  # type: ignore[arg-type]  # what validation stops
    state = rs.fold(rs.new_state(("index",)), [ev.StageStarted(stage="index"), broken, ev.LogLine(level="info",
                                                                                                   message="after")])
    without = rs.fold(rs.new_state(("index",)), [ev.StageStarted(stage="index"), ev.LogLine(level="info",
                                                                                        message="after")])
    assert state.fold_errors == 1 and state.revision > without.revision  # views redraw to show the error line
    started, error, after = state.log
    assert (started.message, error.t, error.level, after.level) == ("index started", 0.0, "error", "info")
    assert error.message.startswith("events.jsonl: a stage_progress event could not be folded (TypeError: ")
    assert error.message.endswith("); skipped") and after.message == "after"


def test_stage_bookkeeping_across_starts_ends_and_reports() -> None:
    state = replay([ev.StageStarted(stage="index", total=12, t=3.0)])
    index = state.stages["index"]
    assert (index.name, index.status, index.started, index.total) == ("index", "running", 3.0, 12)
    assert (state.current_stage, state.run_status) == ("index", "running")
    # a late end of another stage does not clear the one running now
    other = rs.apply(state, ev.StageFinished(stage="split", duration_s=1.0, summary="ok"))
    assert other.current_stage == "index"
    # a resumed run reports an epoch again: the newest report replaces it, nothing is duplicated
    def epoch(n: int, loss: float) -> ev.EpochEnded:
        return ev.EpochEnded(epoch=n, epochs=5, metrics={"loss": loss}, t=100.0 + n)

    rows = replay([epoch(1, 3.0), epoch(2, 2.0), epoch(3, 1.0), epoch(3, 0.9)])
    assert [(r.epoch, r.metrics["loss"]) for r in rows.epoch_rows] == [(1, 3.0), (2, 2.0), (3, 0.9)]
    # each finished epoch is also a log line of the train stage, at the epoch's time
    assert [(e.t, e.level, e.stage, e.message) for e in rows.log][-1] == (
        103.0, "info", "train", rs.epoch_line(3, 5, {"loss": 0.9}))
    assert rs.epoch_line(3, 5, {"loss": 0.9}).startswith("epoch 3/5")


def test_reader_notes_lost_runners_and_errors_are_counted_exactly() -> None:
    state = replay([ev.RunStarted(run_dir="r", stages=("train",)), ev.StageStarted(stage="train")])
    noted = rs.note(state, "warning", "runner exited with code 1", t=7.0)
    assert [(e.t, e.level, e.message) for e in noted.log][-1] == (7.0, "warning", "runner exited with code 1")
    lost = rs.runner_lost(noted, "gone", t=8.0)
    assert (lost.revision - noted.revision, lost.rev_stages - noted.rev_stages) == (1, 1)
    twice = rs.fold(rs.new_state(), [ev.StageFailed(stage="a", error="x"), ev.StageFailed(stage="b", error="y"),
                                     ev.StageProgress(stage="a", done=1, info=5),  # type: ignore[arg-type]
                                     ev.StageProgress(stage="b", done=1, info=6)])  # type: ignore[arg-type]
    assert (twice.errors, twice.fold_errors) == (4, 2)


def _trained(epochs: int, upto: int, t0: float = 0.0) -> list[ev.Event]:
    """A train stage's events through epoch ``upto`` of ``epochs`` (each epoch 10 s, patience reported)."""
    out: list[ev.Event] = []
    for n in range(1, upto + 1):
        t = t0 + 10 * n
        out += [ev.EpochStarted(epoch=n, epochs=epochs, steps=4, t=t - 9),
                ev.BatchEnded(epoch=n, step=4, steps=4, loss=1.0 / n, t=t - 2),
                ev.EpochEnded(epoch=n, epochs=epochs, metrics={"loss": 1.0 / n, "val_loss": 1.0 / n}, t=t),
                ev.PatienceChanged(epoch=n, wait=0, patience=3, best=1.0 / n, best_epoch=n, t=t),
                ev.ConfusionReady(epoch=n, classes=("a", "b"), cells=((0, 0, n),), t=t)]
    return out


def test_a_train_run_again_shows_nothing_of_the_run_before_until_its_own_first_epoch() -> None:
    done = replay([ev.RunStarted(run_dir="r", stages=("train",)), ev.StageStarted(stage="train", t=0.0),
                   *_trained(12, 12), ev.StageFinished(stage="train", duration_s=120.0, summary="ok", t=121.0)])
    assert len(done.epoch_rows) == 12 and done.patience is not None and done.confusion is not None
    again = rs.apply(done, ev.StageStarted(stage="train", t=500.0))
    assert (again.epoch_rows, again.patience, again.confusion, again.epoch, again.batch.epoch) == ([], None, None, 0, 0)
    progress = rs.training_progress(again, 505.0)
    assert progress is not None and (progress.epoch, progress.activity) == (0, "building the model")
    first = rs.apply(again, ev.EpochStarted(epoch=1, epochs=12, steps=4, t=510.0))
    assert first.epoch_rows == [] and first.patience is None  # a fresh start: epoch 1 keeps nothing
    ended = rs.fold(first, [ev.EpochEnded(epoch=1, epochs=12, metrics={"loss": 3.0}, t=520.0)])
    assert [row.metrics["loss"] for row in ended.epoch_rows] == [3.0]


def test_a_resumed_train_keeps_the_epochs_it_continues_and_its_header_and_row_agree() -> None:
    stopped = replay([ev.RunStarted(run_dir="r", stages=("train",)), ev.StageStarted(stage="train", t=0.0),
                      *_trained(12, 3), ev.EpochStarted(epoch=4, epochs=12, steps=4, t=31.0),
                      ev.BatchEnded(epoch=4, step=2, steps=4, loss=0.2, t=33.0),
                      ev.StageInterrupted(stage="train", reason="SIGINT", t=35.0),
                      ev.RunFinished(status="interrupted")])
    assert stopped.stages["train"].duration_s == 35.0
    resumed = rs.fold(stopped, [ev.RunStarted(run_dir="r", stages=("train",)),
                                ev.StageStarted(stage="train", spent_s=35.0, t=100.0)])
    assert resumed.epoch_rows == [] and resumed.epoch == 0  # not epoch 4 of the stopped attempt
    progress = rs.training_progress(resumed, 101.0)
    assert progress is not None and progress.epoch == 0
    assert resumed.stages["train"].elapsed(110.0) == 45.0  # its whole time, the stopped attempt's counted in
    assert resumed.log[-1].message == "train started (continuing; 35 s spent before)"
    going = rs.apply(resumed, ev.EpochStarted(epoch=4, epochs=12, steps=4, t=105.0))
    assert [row.epoch for row in going.epoch_rows] == [1, 2, 3] and going.patience is not None
    assert going.patience.epoch == 3 and going.confusion is None
    progress = rs.training_progress(going, 106.0)
    assert progress is not None and (progress.epoch, going.epoch) == (4, 4)
    finished = rs.fold(going, [*_trained(12, 12)[15:], ev.StageFinished(stage="train", duration_s=120.0,
                                                                        summary="ok", t=200.0)])
    assert [row.epoch for row in finished.epoch_rows] == list(range(1, 13))
    assert finished.stages["train"].duration_s == 120.0 and finished.log[-1].message == "train done: ok"


def test_an_ended_attempt_counts_the_time_of_those_before() -> None:
    state = replay([ev.StageStarted(stage="index", spent_s=20.0, t=100.0),
                    ev.StageFailed(stage="index", error="boom", t=105.0)])
    assert state.stages["index"].duration_s == 25.0 and state.stages["index"].elapsed(999.0) == 25.0
    odd = replay([ev.StageStarted(stage="index", spent_s=-5.0, t=100.0)])  # a hand-made log: no negative time
    assert odd.stages["index"].elapsed(101.0) == 1.0 and odd.log[-1].message == "index started"


def test_a_restarted_train_that_reports_its_patience_first_keeps_that_one() -> None:
    state = replay([ev.StageStarted(stage="train", t=0.0), *_trained(12, 3),
                    ev.StageInterrupted(stage="train", reason="SIGINT", t=40.0),
                    ev.StageStarted(stage="train", t=100.0),
                    ev.PatienceChanged(epoch=3, wait=1, patience=5, best=0.5, best_epoch=2, t=101.0),
                    ev.EpochStarted(epoch=4, epochs=12, steps=4, t=102.0)])
    assert state.patience is not None and (state.patience.patience, state.patience.wait) == (5, 1)
    assert [row.epoch for row in state.epoch_rows] == [1, 2, 3]
