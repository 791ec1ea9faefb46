"""The callbacks that decide what a fit means, each on a real Keras model of one Dense layer (a fit or
a predict costs about a second), or driven hook by hook on a clock the test moves: the divergence
guard, the cancel, the epoch events and their ETA, the dropped-image report, early stopping's resumed
state, the checkpoint and the per-epoch confusion matrix. The batch throttling is in ``test_model.py``;
the callbacks inside a whole training run are in ``test_train.py``."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from carclf_core.callbacks import (
    CheckpointCallback,
    ConfusionCallback,
    DroppedImagesReporter,
    EventCallback,
    PatienceReporter,
    ResumableEarlyStopping,
    StopOnCancel,
    StopOnNonFiniteLoss,
)
from carclf_core.events import BatchEnded, ConfusionReady, EpochEnded, EpochStarted, PatienceChanged


def _linear_model(inputs: int, outputs: int, activation: str | None = None) -> keras.Model:
    return keras.Sequential([keras.Input((inputs,)), keras.layers.Dense(outputs, activation=activation)])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_nan_or_infinite_loss_stops_the_fit_at_its_step(bad):
    """A real fit whose third batch has a target of NaN or infinity: its loss is not finite from that
    step on. The guard must stop the fit there and name epoch 1, step 3, whichever it is (a guard
    testing only ``isinf`` lets a NaN loss train on and checkpoint the diverged weights)."""
    model = _linear_model(2, 1)
    model.compile(optimizer="sgd", loss="mse")
    x = np.ones((12, 2), dtype="float32")
    y = np.zeros((12, 1), dtype="float32")
    y[5] = bad  # batch size 2: the third batch (rows 4 and 5)
    guard = StopOnNonFiniteLoss()
    steps: list[int] = []
    seen = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: steps.append(batch + 1))
    history = model.fit(x, y, batch_size=2, epochs=3, shuffle=False, verbose=0, callbacks=[guard, seen])
    assert guard.found is not None, "the fit went on with a non-finite loss"
    epoch, step, loss = guard.found
    assert (epoch, step) == (1, 3) and not math.isfinite(loss)
    assert math.isnan(loss) if math.isnan(bad) else math.isinf(loss)
    assert guard.cut_epoch == 0  # the epoch is not to be saved as finished
    assert steps == [1, 2, 3] and len(history.epoch) == 1  # stopped at that step, no second epoch


def test_a_finite_loss_does_not_stop_the_fit():
    model = _linear_model(2, 1)
    model.compile(optimizer="sgd", loss="mse")
    guard = StopOnNonFiniteLoss()
    history = model.fit(np.ones((8, 2), "float32"), np.zeros((8, 1), "float32"), batch_size=2, epochs=2,
                        verbose=0, callbacks=[guard])
    assert guard.found is None and guard.cut_epoch is None and len(history.epoch) == 2


def test_the_epoch_confusion_matrix_has_true_rows_and_predicted_columns():
    """A model that predicts the class its input one-hot names, on a sample with asymmetric mistakes:
    two class-0 images taken for class 1, one class-2 image taken for class 1, none the other way. A
    matrix built with true and predicted swapped puts those counts in column 0 and 2 of row 1."""
    model = _linear_model(3, 3, "softmax")
    model.set_weights([np.eye(3, dtype="float32") * 10, np.zeros(3, dtype="float32")])
    predicted = np.array([0, 1, 1, 1, 1, 2, 1])
    labels = np.array([0, 0, 0, 1, 1, 2, 2])
    events: list = []
    callback = ConfusionCallback(events.append, np.eye(3, dtype="float32")[predicted], labels, ["a", "b", "c"])
    callback.set_model(model)
    callback.on_epoch_end(4)
    expected = [[1, 2, 0],  # true a: one right, two taken for b
                [0, 2, 0],  # true b: both right
                [0, 1, 1]]  # true c: one taken for b, one right
    assert callback.last_matrix is not None and callback.last_matrix.tolist() == expected
    (event,) = events
    assert isinstance(event, ConfusionReady) and event.epoch == 5 and event.sample == 7 and event.split == "val"
    dense = np.zeros((3, 3), dtype=int)
    for true, pred, count in event.cells:
        dense[true, pred] = count
    assert dense.tolist() == expected and event.classes == ("a", "b", "c")


def test_a_cut_epoch_emits_no_confusion_matrix():
    model = _linear_model(3, 3, "softmax")
    events: list = []
    callback = ConfusionCallback(events.append, np.eye(3, dtype="float32"), np.arange(3), ["a", "b", "c"],
                                 skip=lambda: True)
    callback.set_model(model)
    callback.on_epoch_end(0)
    assert events == [] and callback.last_matrix is None


def _clocked_events(**kwargs):
    """An EventCallback on a clock the test moves, and the events it emitted."""
    events: list = []
    now = [0.0]
    callback = EventCallback(events.append, clock=lambda: now[0], **kwargs)
    return callback, events, now


def test_the_epoch_end_event_carries_metrics_rate_learning_rate_and_the_run_eta():
    """Four epochs of 10 steps of 8 images, the steps unknown until the first epoch ran (a pipeline
    that drops undecodable files): each epoch trains 8 s, validates until its end, and the third is
    slower. The rate counts the training part only, capped at the epoch's images; the run's ETA is
    the epochs left times the mean of the last three epochs."""
    model = _linear_model(2, 1)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.125), loss="mse")
    callback, events, now = _clocked_events(batch_size=8, steps=None, train_images=76, batch_events_per_second=0.001)
    callback.set_model(model)
    callback.set_params({"epochs": 4, "steps": None})
    ended = []
    for epoch, seconds in enumerate([10.0, 10.0, 16.0]):
        started = now[0]
        callback.on_epoch_begin(epoch)
        for step in range(10):
            now[0] = started + 0.8 * (step + 1)
            callback.on_train_batch_end(step, {"loss": 1.0})
        callback.on_test_begin()
        now[0] = started + seconds - 1.0
        callback.on_test_begin()  # a second validation call does not move the training's end
        now[0] = started + seconds
        callback.on_epoch_end(epoch, {"note": "text", "loss": 0.5, "none": None, "val_loss": np.float32(0.25)})
        ended.append(events[-1])
    starts = [e for e in events if isinstance(e, EpochStarted)]
    assert [(e.epoch, e.epochs, e.steps) for e in starts] == [(1, 4, None), (2, 4, 10), (3, 4, 10)]
    assert all(isinstance(e, EpochEnded) for e in ended)
    first, _, third = ended
    assert (first.epoch, first.epochs) == (1, 4)
    assert first.metrics == {"loss": 0.5, "val_loss": 0.25}  # values that are not numbers are left out
    assert first.learning_rate == pytest.approx(0.125)
    assert first.duration_s == pytest.approx(10.0) and third.duration_s == pytest.approx(16.0)
    assert first.images_per_s == pytest.approx(76 / 8.0)  # 80 images stepped, 76 in the epoch, over 8 s
    assert first.eta_s == pytest.approx(3 * 10.0)
    assert third.eta_s == pytest.approx(1 * (10 + 10 + 16) / 3)
    assert callback.epoch_durations == pytest.approx([10.0, 10.0, 16.0])


def test_the_run_eta_is_over_the_last_three_epochs_and_the_total_of_both_phases():
    callback, events, now = _clocked_events(batch_size=4, steps=5, train_images=None, total_epochs=10,
                                            phase="warmup")
    callback.set_params({"epochs": 3, "steps": 5})  # this phase's fit: 3 epochs of the run's 10
    for epoch, seconds in enumerate([100.0, 1.0, 2.0, 3.0]):
        started = now[0]
        callback.on_epoch_begin(epoch)
        callback.on_train_batch_end(4, {})
        now[0] = started + seconds
        callback.on_epoch_end(epoch, None)
    ended = [e for e in events if isinstance(e, EpochEnded)]
    assert [e.epochs for e in ended] == [10] * 4
    assert ended[-1].eta_s == pytest.approx((10 - 4) * 2.0)  # the slow first epoch is forgotten
    assert ended[-1].images_per_s == pytest.approx(5 * 4 / 3.0)  # no cap: steps x batch size
    assert ended[-1].learning_rate is None  # no model
    assert {e.phase for e in events if isinstance(e, EpochStarted)} == {"warmup"}


def test_a_skipped_epoch_end_emits_nothing_and_leaves_the_eta_alone():
    skipped = [True]
    callback, events, now = _clocked_events(batch_size=1, steps=3, train_images=3, skip=lambda: skipped[0])
    callback.set_params({"epochs": 2})
    callback.on_epoch_begin(0)
    now[0] = 50.0
    callback.on_epoch_end(0, {"loss": 1.0})
    assert not any(isinstance(e, EpochEnded) for e in events) and callback.epoch_durations == []


def test_a_batch_event_without_loss_or_accuracy_and_unknown_steps():
    callback, events, now = _clocked_events(batch_size=2, steps=None, train_images=None)
    callback.set_params({"epochs": 1, "steps": None})
    now[0] = 100.0
    callback.on_epoch_begin(0)
    now[0] = 100.5
    callback.on_train_batch_end(4, None)
    batch = events[-1]
    assert isinstance(batch, BatchEnded) and (batch.epoch, batch.step, batch.steps) == (1, 5, None)
    assert math.isnan(batch.loss) and batch.accuracy is None and batch.eta_s is None
    assert batch.images_per_s == pytest.approx(20.0)  # 10 images in half a second
    now[0] = 101.5
    callback.on_train_batch_end(5, {"loss": np.float32(0.5), "categorical_accuracy": 0.75})
    assert (events[-1].step, events[-1].loss, events[-1].accuracy) == (6, 0.5, 0.75)


def test_steps_and_epochs_keras_knows_are_used_when_none_were_given():
    """Without a step count the fit's own (``params``) is used, for the batch ETA; without any epoch
    count there is no run ETA; a model not compiled has no learning rate to report."""
    callback, events, now = _clocked_events(batch_size=2, steps=None, train_images=None)
    callback.set_params({"steps": 20})
    callback.set_model(_linear_model(2, 1))
    callback.on_epoch_begin(0)
    now[0] = 1.0
    callback.on_train_batch_end(4, {"loss": 1.0})
    batch = events[-1]
    assert isinstance(batch, BatchEnded) and batch.steps == 20 and batch.eta_s == pytest.approx(3.0)
    now[0] = 4.0
    callback.on_epoch_end(0, {"loss": 1.0})
    ended = events[-1]
    assert isinstance(ended, EpochEnded) and ended.epochs == 0 and ended.eta_s is None
    assert ended.learning_rate is None
    assert ended.images_per_s == pytest.approx(10 / 4.0)


def test_a_cancel_stops_the_fit_within_a_batch_and_marks_its_epoch_cut():
    """A real fit of 3 epochs of 5 batches, cancelled at the third batch of the second epoch."""
    import threading

    model = _linear_model(2, 1)
    model.compile(optimizer="sgd", loss="mse")
    cancel = threading.Event()
    stop = StopOnCancel(cancel)
    seen: list[tuple[int, int]] = []
    epoch_now = [0]

    def batch_end(batch, logs):
        seen.append((epoch_now[0], batch))
        if (epoch_now[0], batch) == (1, 2):
            cancel.set()

    track = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: epoch_now.__setitem__(0, epoch),
                                           on_train_batch_end=batch_end)
    assert not stop.cancelled
    history = model.fit(np.ones((10, 2), "float32"), np.zeros((10, 1), "float32"), batch_size=2, epochs=3,
                        shuffle=False, verbose=0, callbacks=[track, stop])
    assert stop.cut_epoch == 1 and stop.cancelled
    assert seen[-1] == (1, 2) and len(history.epoch) == 2  # no batch after the cancel, no third epoch


def test_a_cancel_before_an_epoch_or_during_its_validation_cuts_that_epoch():
    import threading

    model = _linear_model(2, 1)
    cancel = threading.Event()
    model.stop_training = model.stop_evaluating = False  # as fit and evaluate start
    stop = StopOnCancel(cancel)
    stop.set_model(model)
    stop.on_epoch_begin(3)
    stop.on_test_batch_end(0)
    assert stop.cut_epoch is None and not model.stop_training
    cancel.set()
    stop.on_test_batch_end(1)  # in the validation of epoch 3
    assert stop.cut_epoch == 3 and model.stop_training and model.stop_evaluating
    stop.on_train_batch_end(0)
    assert stop.cut_epoch == 3  # the first cut is the one kept
    before = StopOnCancel(cancel)
    before.set_model(_linear_model(2, 1))
    before.model.stop_training = False
    before.on_epoch_begin(5)  # set between epochs: the next one is cut before it starts
    assert before.cut_epoch == 5 and before.model.stop_training


def test_after_a_non_finite_loss_the_validation_pass_is_skipped():
    model = _linear_model(2, 1)
    model.stop_training = model.stop_evaluating = False
    guard = StopOnNonFiniteLoss()
    guard.set_model(model)
    guard.on_epoch_begin(1)
    guard.on_train_batch_end(0, {"loss": 2.0})
    guard.on_train_batch_end(1, None)
    guard.on_test_batch_end(0)
    assert guard.found is None and not model.stop_evaluating
    guard.on_train_batch_end(2, {"loss": np.float32("nan")})
    guard.on_train_batch_end(3, {"loss": float("inf")})  # the first non-finite loss is the one kept
    assert guard.found is not None and guard.found[:2] == (2, 3) and guard.cut_epoch == 1
    guard.on_test_batch_end(0)
    assert model.stop_evaluating


def test_dropped_images_are_named_once_and_only_for_a_whole_pass():
    """Rows the pipeline never delivered are reported per split, each once; a split with no pass this
    epoch, an epoch cut short and an epoch after a stop report nothing."""
    from carclf_core.inputs import RowAudit

    audits = {"train": RowAudit(5), "val": RowAudit(3)}
    reports: list[tuple[str, list[int]]] = []
    cut = [False]
    reporter = DroppedImagesReporter(audits, lambda split, rows: reports.append((split, rows)), skip=lambda: cut[0])
    model = _linear_model(2, 1)
    model.stop_training = False
    reporter.set_model(model)

    def epoch(number, train_rows, val_rows):
        reporter.on_epoch_begin(number)
        audits["train"].record(np.array(train_rows, dtype=int))
        audits["val"].record(np.array(val_rows, dtype=int))
        reporter.on_epoch_end(number)

    epoch(0, [0, 1, 3], [0, 1, 2])
    assert reports == [("train", [2, 4])]
    epoch(1, [], [0, 2])  # no training pass (its rows are not all missing); validation misses row 1
    assert reports == [("train", [2, 4]), ("val", [1])]
    epoch(2, [0, 3], [0, 1, 2])  # 2 and 4 missing again: named once
    assert reports[2:] == [("train", [1])]
    cut[0] = True
    epoch(3, [0], [0])  # a pass cut short misses rows that are not lost
    model.stop_training = True
    cut[0] = False
    epoch(4, [0], [0])
    assert len(reports) == 3
    assert reporter.reported == {"train": {1, 2, 4}, "val": {1}}


def test_early_stopping_resumes_from_its_saved_state():
    """A resumed run's early stopping goes on from the recorded wait and best, not from zero: patience 3,
    wait 2 and a best loss no fit here reaches: the first epoch of the resumed fit (the sixth) ends it."""
    model = _linear_model(2, 1)
    model.compile(optimizer="sgd", loss="mse")
    best = [np.full((2, 1), 3.0, "float32"), np.full(1, -1.0, "float32")]  # the warm-up's best, handed over
    saved = {"wait": 2, "best": 1e-9, "best_epoch": 4}
    es = ResumableEarlyStopping(monitor="loss", patience=3, restore_best_weights=True,
                                initial_state={**saved, "best_weights": best})
    assert es.state() == {"wait": 2, "best": 1e-9, "best_epoch": 4, "patience": 3, "monitor": "loss"}
    history = model.fit(np.ones((4, 2), "float32"), np.ones((4, 1), "float32"), initial_epoch=5, epochs=10,
                        verbose=0, callbacks=[es])
    assert history.epoch == [5] and es.stopped_epoch == 5
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), best, strict=True))  # restored
    assert es.state() == {"wait": 3, "best": 1e-9, "best_epoch": 4, "patience": 3, "monitor": "loss"}
    fresh = ResumableEarlyStopping(monitor="val_loss", patience=2)
    assert fresh.state() == {"wait": 0, "best": None, "best_epoch": 0, "patience": 2, "monitor": "val_loss"}


def test_the_patience_event_reports_early_stoppings_wait_and_1_based_best_epoch():
    es = ResumableEarlyStopping(monitor="loss", patience=4, initial_state={"wait": 1, "best": 0.5, "best_epoch": 2})
    events: list = []
    skip = [False]
    reporter = PatienceReporter(events.append, es, skip=lambda: skip[0])
    reporter.on_epoch_end(3)
    (event,) = events
    assert isinstance(event, PatienceChanged)
    assert (event.epoch, event.wait, event.patience, event.best, event.best_epoch, event.monitor) == (
        4, 1, 4, 0.5, 3, "loss")
    es.best = float("inf")  # no epoch measured yet
    reporter.on_epoch_end(0)
    assert (events[-1].best, events[-1].best_epoch) == (None, None)
    es.best = None  # a resumed state that had none
    reporter.on_epoch_end(0)
    assert (events[-1].best, events[-1].best_epoch) == (None, None)
    skip[0] = True
    reporter.on_epoch_end(5)
    assert len(events) == 3
    es.best = float("-inf")
    assert es.state()["best"] is None


def test_the_checkpoint_keeps_the_best_epochs_snapshot_only_and_skips_a_cut_epoch(tmp_path):
    import json

    from carclf_core.checkpoint import load_weights

    model = _linear_model(2, 1)
    model.compile(optimizer="sgd", loss="mse")
    es = ResumableEarlyStopping(monitor="loss", patience=3)
    history: list = [{"epoch": 1, "phase": "warmup", "loss": 9.0}]
    cut = [False]
    checkpoint = CheckpointCallback(tmp_path, model, es, "finetune", history, skip=lambda: cut[0],
                                    save_full=False, source="split-abc")
    checkpoint.set_model(model)
    model.stop_training = False
    es.best_epoch = 0  # no best weights yet (a monitored value never measured): none saved
    checkpoint.on_epoch_end(0, {"loss": 1.0})
    assert not (tmp_path / "best_weights.npz").exists()
    assert json.loads((tmp_path / "state.json").read_text())["stopped"] is False
    best = [np.full((2, 1), 7.0, "float32"), np.zeros(1, "float32")]
    es.best_weights, es.best_epoch = best, 1
    checkpoint.on_epoch_end(1, {"loss": np.float32(0.5), "name": "x"})
    assert np.array_equal(load_weights(tmp_path / "best_weights.npz")[0], best[0])
    es.best_weights = [np.zeros((2, 1), "float32"), np.zeros(1, "float32")]  # best still epoch 1
    model.stop_training = True
    checkpoint.on_epoch_end(2, None)
    assert np.array_equal(load_weights(tmp_path / "best_weights.npz")[0], best[0])
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["completed_epochs"] == 3 and state["phase"] == "finetune" and state["stopped"] is True
    assert state["source"] == "split-abc" and state["early_stopping"]["monitor"] == "loss"
    assert state["history"] == [{"epoch": 1, "phase": "warmup", "loss": 9.0},
                                {"epoch": 1, "phase": "finetune", "loss": 1.0},
                                {"epoch": 2, "phase": "finetune", "loss": 0.5},
                                {"epoch": 3, "phase": "finetune"}]
    cut[0] = True
    checkpoint.on_epoch_end(3, {"loss": 0.1})
    assert json.loads((tmp_path / "state.json").read_text()) == state and len(history) == 4
    assert len(checkpoint.durations) == 3 and all(0 <= s < 60 for s in checkpoint.durations)


def test_the_confusion_matrix_of_the_best_epoch_is_kept():
    model = _linear_model(3, 3, "softmax")
    model.set_weights([np.eye(3, dtype="float32") * 10, np.zeros(3, dtype="float32")])
    best = [0]
    events: list = []
    callback = ConfusionCallback(events.append, np.eye(3, dtype="float32")[[0, 1, 2, 2]], [0, 1, 2],
                                 ["a", "b", "c"], best_epoch=lambda: best[0])
    callback.set_model(model)
    callback.on_epoch_end(0)
    first = callback.best_matrix
    assert first is not None and first.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]  # 3 labels: 3 rows used
    model.set_weights([np.roll(np.eye(3, dtype="float32"), 1, axis=1) * 10, np.zeros(3, dtype="float32")])
    callback.on_epoch_end(1)  # not the best epoch: the best matrix stays the first one
    assert callback.best_matrix is first and callback.last_matrix.tolist() == [[0, 1, 0], [0, 0, 1], [1, 0, 0]]
    assert len(callback.durations) == 2 and all(0 <= s < 60 for s in callback.durations)
    assert [e.duration_s for e in events] == callback.durations
    empty = ConfusionCallback(lambda event: None, np.eye(3, dtype="float32"), [], ["a", "b", "c"])
    empty.set_model(model)
    empty.on_epoch_end(0)
    assert empty.last_matrix is None
