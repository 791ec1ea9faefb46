"""The evaluate stage: test-split metrics of the best model, and its export.

Loads ``train/best.keras`` (the restored best weights), predicts the test split in file order and
writes into ``<run>/evaluate/``: ``metrics.json`` (accuracy, top-5, balanced accuracy beside chance,
the majority-class baseline and top-5 chance; how many test images have a copy in train),
``per_class.csv`` (precision/recall/F1/support), ``confusion.csv`` and ``confusion.npy`` (rows true,
columns predicted), ``most_confused.csv``, ``predictions.csv`` (every test image: label, prediction,
probability, top-5) and ``batch_predictions.csv`` (the first batch, as the reference's
``show_batch_with_pred``). Exports ``export/model.keras`` + ``export/classes.json`` and, with
``evaluate.export_savedmodel``, a SavedModel archive ``export/savedmodel/`` that TensorFlow Serving
loads (signature ``serve``: float32 pixels 0..255 in, class probabilities out).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from .. import metrics as metrics_mod
from ..dataset import copies_across
from ..errors import StageError
from ..events import ConfusionReady
from ..pipeline import StageContext, StageResult
from ..runs import atomic_path, write_json_atomic
from .split import load_splits, split_files


def export_savedmodel(model, folder: Path) -> None:
    """Write a SavedModel archive for TF Serving into ``folder``, replacing it only when complete."""
    folder = Path(folder)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-savedmodel-", dir=folder.parent))
    try:
        target = tmp / "savedmodel"
        model.export(str(target), format="tf_saved_model", verbose=False)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(target, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(ctx: StageContext) -> StageResult:
    """Evaluate the best model on the test split and export it; see the module docstring."""
    config = ctx.config
    splits, classes = load_splits(ctx.run)
    best_path = ctx.run.best_model
    if not best_path.is_file():
        raise StageError(f"{best_path}: missing; run the train stage first")
    test_paths, test_labels = split_files(splits, "test", config.data.dir, ctx)
    if not test_paths:
        raise StageError(f"{ctx.run.splits_csv}: the test split is empty")

    from .. import inputs  # TensorFlow
    from .. import model as model_mod
    from ..keras_env import quiet_end_of_data

    model = model_mod.load_model(best_path)
    out = ctx.stage_dir("evaluate")
    batch = max(config.input.batch_size, 64)
    ds = inputs.make_dataset(test_paths, test_labels, len(classes), config.input, training=False, batch_size=batch)
    with quiet_end_of_data():
        probs = np.asarray(model.predict(ds, verbose=0), dtype=np.float64)
    ctx.check_cancelled()
    if len(probs) != len(test_labels):
        # ignore_errors dropped a file changed since the index stage: predictions no longer line up
        raise StageError(
            f"{len(test_labels) - len(probs)} test image(s) no longer decode (changed since "
            "the index stage); run the index stage again"
        )
    labels = np.asarray(test_labels, dtype=np.int64)
    pred = probs.argmax(axis=1)
    matrix = metrics_mod.confusion_matrix(labels, pred, len(classes))
    summary = metrics_mod.summary_metrics(matrix)
    metrics = {
        **summary,
        "top5": metrics_mod.top_k_accuracy(probs, labels, 5),
        "images": int(len(labels)),
        "classes": len(classes),
        **metrics_mod.baselines(labels, len(classes), 5),
        **copies_across(splits),
    }

    per_class = pd.DataFrame(
        metrics_mod.per_class_metrics(matrix, classes), columns=["class", "precision", "recall", "f1", "support"]
    )
    with atomic_path(out / "per_class.csv") as tmp:
        per_class.to_csv(tmp, index=False)
    with atomic_path(out / "confusion.csv") as tmp:
        pd.DataFrame(matrix, index=classes, columns=classes).to_csv(tmp, index_label="true\\predicted")
    with atomic_path(out / "confusion.npy") as tmp:
        np.save(tmp, matrix)
    confused = metrics_mod.most_confused(matrix, classes, k=config.evaluate.most_confused)
    with atomic_path(out / "most_confused.csv") as tmp:
        pd.DataFrame(confused, columns=["true", "predicted", "count"]).to_csv(tmp, index=False)
    top5 = np.argsort(-probs, axis=1)[:, :5]
    data_dir = Path(config.data.dir)
    rel_paths = [str(Path(p).relative_to(data_dir)) for p in test_paths]
    predictions = pd.DataFrame(
        {
            "path": rel_paths,
            "label": [classes[i] for i in labels],
            "predicted": [classes[i] for i in pred],
            "probability": probs[np.arange(len(pred)), pred],
            "correct": labels == pred,
            "top5": [" | ".join(classes[i] for i in row) for row in top5],
        }
    )
    with atomic_path(out / "predictions.csv") as tmp:
        predictions.to_csv(tmp, index=False)
    with atomic_path(out / "batch_predictions.csv") as tmp:
        predictions.head(config.input.batch_size).to_csv(tmp, index=False)
    write_json_atomic(out / "metrics.json", metrics)

    export = out / "export"
    export.mkdir(exist_ok=True)
    with atomic_path(export / "model.keras") as tmp:
        model.save(str(tmp))
    write_json_atomic(export / "classes.json", classes)
    if config.evaluate.export_savedmodel:
        try:
            export_savedmodel(model, export / "savedmodel")
        except Exception as exc:  # a backend without TensorFlow, or an export limitation
            raise StageError(
                f"evaluate.export_savedmodel: SavedModel export failed ({type(exc).__name__}: "
                f"{exc}); set it to false to skip"
            ) from exc

    train_summary = {}
    try:
        train_summary = json.loads(ctx.run.train_summary.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    ctx.emit(
        ConfusionReady(
            epoch=int(train_summary.get("best_epoch") or 0),
            classes=tuple(classes),
            matrix=tuple(tuple(int(v) for v in row) for row in matrix.tolist()),
            split="test",
            sample=int(len(labels)),
        )
    )
    for true, predicted, count in confused[:5]:
        ctx.log("info", f"confused: {true} -> {predicted} ({count}x)")
    text = (
        f"test accuracy {metrics['accuracy']:.3f} (chance {metrics['chance']:.3f}, majority "
        f"{metrics['majority_baseline']:.3f}), top-5 {metrics['top5']:.3f} (chance {metrics['top5_chance']:.3f}), "
        f"balanced {metrics['balanced_accuracy']:.3f} on {len(labels)} images"
    )
    if "test_with_train_copy" in metrics:
        leaked = metrics["test_with_train_copy"]
        text += f"; {leaked:,} of them with a copy in train" if leaked else "; none with a copy in train"
    return StageResult(text, metrics)
