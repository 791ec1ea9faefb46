"""Training results pinned, not shapes: the best epoch's weights survive a resume, and balanced class
weights reach ``fit``. Real training through the train stage, on tiny generated JPEGs.

Each test builds its own small models (a fit costs a graph build), so the data and schedules are
the smallest that still make the effect certain rather than likely.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from carclf_core import config as config_mod
from carclf_core.checkpoint import load_weights, read_state
from carclf_core.events import ConfusionReady, EpochEnded
from carclf_core.model import load_model
from carclf_core.pipeline import StageContext
from carclf_core.registry import run_all
from carclf_core.runs import create_run

from .conftest import car_name, jpeg_bytes, make_dataset

pytestmark = pytest.mark.slow


def _config(data: Path, root: Path, *settings: str) -> config_mod.Config:
    return config_mod.load(None, [f"data.dir={data}", f"run.root={root}", "prefilter.mode=off",
                                  "split.min_per_class=5", "input.height=32", "input.width=32", "input.augment=false",
                                  "train.weights=null", "train.warmup_epochs=0", "train.confusion_sample=0",
                                  "train.checkpoint=weights", *settings])


def _run(config, run, names, **context) -> str:
    """Run stages; a failure fails the test with the stage's own error."""
    seen: list = []
    emit = context.pop("emit", None)

    def sink(event) -> None:
        seen.append(event)
        if emit is not None:
            emit(event)

    status = run_all(StageContext(config=config, run=run, emit=sink, **context), names)
    errors = [e.error for e in seen if e.kind == "stage_failed"]
    assert not errors, errors
    return status


def _shift_validation_labels(run) -> None:
    """Label every validation image as the next class: the better the model learns the training
    labels, the worse its validation loss, so the best epoch is the first."""
    splits = pd.read_csv(run.splits_csv, dtype=str, keep_default_na=False)
    classes = json.loads(run.classes_json.read_text())
    val = splits["split"] == "val"
    shifted = [(int(c) + 1) % len(classes) for c in splits.loc[val, "class_index"]]
    splits.loc[val, "class_index"] = [str(c) for c in shifted]
    splits.loc[val, "label"] = [classes[c] for c in shifted]
    splits.to_csv(run.splits_csv, index=False)


def test_a_resume_after_the_best_epoch_gives_evaluate_the_best_weights(tmp_path):
    """Interrupted after epoch 2 (best: epoch 1), resumed for epoch 3: best.keras, the model evaluate
    loads, must hold epoch 1's weights. A resume that forgot the saved best weights would let Keras
    take the first epoch it sees after the resume as the best and hand evaluate epoch 3's model.

    VGG16 has no BatchNorm, so even from random weights it learns the colour-coded classes within an
    epoch and its validation loss moves at once (a random-init MobileNet's stays at chance while its
    batch statistics settle).
    """
    data = make_dataset(tmp_path / "data", {("Audi", "A4"): 10, ("BMW", "X5"): 10, ("Kia", "Rio"): 10})
    # a confusion sample larger than the validation split: the matrix is of the whole split
    config = _config(data, tmp_path / "runs", "train.backbone=vgg16", "train.learning_rate=0.0001",
                     "input.batch_size=4", "train.epochs=3", "train.patience=10", "train.confusion_sample=1000")
    run = create_run(config)
    assert _run(config, run, ["index", "split"]) == "done"
    _shift_validation_labels(run)

    cancel = threading.Event()
    confusions: list[ConfusionReady] = []

    def stop_after_epoch_2(event) -> None:
        if isinstance(event, ConfusionReady):
            confusions.append(event)
        if isinstance(event, EpochEnded) and event.epoch == 2:
            cancel.set()  # what the SIGINT handler does, mid-fit

    assert _run(config, run, ["train"], emit=stop_after_epoch_2, cancel=cancel) == "interrupted"
    splits = pd.read_csv(run.splits_csv, dtype=str, keep_default_na=False)
    val_labels = splits.loc[splits["split"] == "val", "class_index"].astype(int)
    true_counts = np.bincount(val_labels, minlength=3).tolist()
    assert [c.epoch for c in confusions] == [1, 2]
    for confusion in confusions:  # every validation image once, in the row of its (shifted) label
        assert confusion.sample == len(val_labels) and confusion.counts().sum(axis=1).tolist() == true_counts
    saved = read_state(run.train_dir)
    assert saved["completed_epochs"] == 2 and saved["early_stopping"]["best_epoch"] == 0  # 0-based: epoch 1
    best_of_epoch_1 = load_weights(run.train_dir / "best_weights.npz")

    assert _run(config, run, ["train"]) == "done"
    history = json.loads((run.train_dir / "history.json").read_text())
    val_loss = [h["val_loss"] for h in history]
    assert [h["epoch"] for h in history] == [1, 2, 3] and val_loss[0] < min(val_loss[1:]), val_loss
    # the summary reports the best epoch's metrics, not the last epoch's
    summary = json.loads((run.train_dir / "summary.json").read_text())
    assert summary["best_epoch"] == 1 and summary["best_metrics"] == history[0] and summary["epochs_run"] == 3
    assert summary["best"] == pytest.approx(history[0]["val_loss"])
    assert summary["val_accuracy"] == history[0]["val_categorical_accuracy"]
    best = load_model(run.best_model).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(best, best_of_epoch_1, strict=True))
    last = load_weights(run.train_dir / "last_weights.npz")
    assert not all(np.array_equal(a, b) for a, b in zip(best, last, strict=True))  # so the check means something


def _minority_probability(tmp_path: Path, class_weights: str) -> float:
    """Train on two classes of indistinguishable images, 40 against 10, and return the model's mean
    probability for the minority class. The frozen random backbone gives every image the same
    features, so the head can only learn a prior: the class frequencies (0.2 for the minority)
    unweighted, one half with balanced class weights."""
    data = tmp_path / "data"
    if not data.exists():
        data.mkdir()
        for (make, model), n in ((("Audi", "A4"), 40), (("Kia", "Rio"), 10)):
            for i in range(n):
                (data / car_name(make, model, f"{make}{i:03d}")).write_bytes(
                    jpeg_bytes((120, 120, 120), (32, 32), seed=i if make == "Audi" else 100 + i))
    config = _config(data, tmp_path / f"runs-{class_weights}", "train.backbone=mobilenetv3small_minimalistic",
                     "train.freeze=base", "train.learning_rate=0.05", "input.batch_size=4", "train.epochs=3",
                     "train.patience=10", f"train.class_weights={class_weights}")
    run = create_run(config)
    assert _run(config, run, ["index", "split", "train"]) == "done"
    classes = json.loads(run.classes_json.read_text())
    from PIL import Image

    with Image.open(next(data.iterdir())) as image:
        pixels = np.asarray(image.convert("RGB"), dtype="float32")[None]
    probs = np.asarray(load_model(run.best_model)(pixels, training=False))
    return float(probs[0, classes.index("Kia_Rio")])


def test_balanced_class_weights_reach_fit(tmp_path):
    weighted = _minority_probability(tmp_path, "balanced")
    unweighted = _minority_probability(tmp_path, "none")
    assert unweighted < 0.3, unweighted  # the head learnt the 1:4 prior: training works
    assert 0.4 < weighted < 0.6, weighted  # balanced weights make the two classes count the same
