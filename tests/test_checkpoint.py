"""What each epoch's checkpoint writes, for train.checkpoint full and weights."""

import json

import keras
import numpy as np
import pytest

from carclf_core import callbacks as cb
from carclf_core import model as model_mod
from carclf_core.checkpoint import load_weights


@pytest.mark.parametrize("save_full, files", [
    (True, {"best_weights.npz", "last_weights.npz", "last_optimizer.npz", "state.json"}),
    (False, {"best_weights.npz", "last_weights.npz", "state.json"}),
])
def test_checkpoint_files_and_state(tmp_path, save_full, files):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    y = keras.utils.to_categorical(np.arange(32) % 3, 3)
    es = cb.ResumableEarlyStopping(monitor="loss", patience=5, restore_best_weights=True)
    history = []
    model.fit(x, y, epochs=2, verbose=0,
              callbacks=[es, cb.CheckpointCallback(tmp_path, model, es, "finetune", history, save_full=save_full)])
    assert {p.name for p in tmp_path.iterdir()} == files
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["completed_epochs"] == 2 and [h["epoch"] for h in state["history"]] == [1, 2]
    restored = load_weights(tmp_path / "last_weights.npz")
    assert all(np.array_equal(a, b) for a, b in zip(restored, model.get_weights(), strict=True))


def _tiny(learning_rate: float = 1e-2):
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="categorical_crossentropy")
    return model


def _fit(model, epochs, initial_epoch=0, callbacks=()):
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = keras.utils.to_categorical(np.arange(64) % 3, 3)
    model.fit(x, y, batch_size=16, epochs=epochs, initial_epoch=initial_epoch, shuffle=False, verbose=0,
              callbacks=list(callbacks))


def test_a_full_checkpoint_resumes_adam_where_it_stopped(tmp_path):
    """Two epochs, a checkpoint, a fresh process's model given the weights and the optimizer state, one
    epoch more: the same weights as three epochs at once (Adam's step count and moments carried over;
    a fresh optimizer takes other steps)."""
    whole = _tiny()
    _fit(whole, 3)

    first = _tiny()
    es = cb.ResumableEarlyStopping(monitor="loss", patience=5)
    _fit(first, 2, callbacks=[es, cb.CheckpointCallback(tmp_path, first, es, "finetune", [], save_full=True)])

    def resumed(with_optimizer: bool):
        model = _tiny()
        model.set_weights(load_weights(tmp_path / "last_weights.npz"))
        if with_optimizer:
            assert model_mod.restore_optimizer_state(model, load_weights(tmp_path / "last_optimizer.npz")) is None
        _fit(model, 3, initial_epoch=2)
        return model.get_weights()

    def same(weights):
        return all(np.allclose(a, b, rtol=0, atol=1e-6) for a, b in zip(weights, whole.get_weights(), strict=True))

    assert same(resumed(with_optimizer=True))
    assert not same(resumed(with_optimizer=False))


def test_a_resume_keeps_the_learning_rate_compiled_now_and_refuses_another_model(tmp_path):
    first = _tiny(learning_rate=1e-2)
    _fit(first, 1)
    state = model_mod.optimizer_state(first)
    later = _tiny(learning_rate=1e-4)  # train.learning_rate changed before the resume
    assert model_mod.restore_optimizer_state(later, state) is None
    assert float(later.optimizer.learning_rate) == pytest.approx(1e-4)
    assert int(later.optimizer.iterations) == int(first.optimizer.iterations) == 4
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, activation="softmax")])
    other.compile(optimizer="adam", loss="categorical_crossentropy")
    assert model_mod.restore_optimizer_state(other, state) == \
        "the checkpoint has 10 optimizer variables, the model 6"
