"""The callbacks that decide what a fit means, each on a real Keras model of one Dense layer (a fit or
a predict costs about a second): the divergence guard and the per-epoch confusion matrix. The cheap
event logic (throttling) is in ``test_model.py``; the callbacks inside a whole training run are in
``test_train.py``."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from carclf_core.callbacks import ConfusionCallback, StopOnNonFiniteLoss
from carclf_core.events import ConfusionReady


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
