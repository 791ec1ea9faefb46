"""What each epoch's checkpoint writes, for train.checkpoint full and weights."""

import json

import keras
import numpy as np
import pytest

from carclf_core import callbacks as cb
from carclf_core.checkpoint import load_weights


@pytest.mark.parametrize("save_full, files", [
    (True, {"best_weights.npz", "last_weights.npz", "last.keras", "state.json"}),
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
