"""The evaluate stage: test-split metrics of the best model, and its export.

Loads ``train/best.keras`` (the restored best weights), predicts the test split in file order and
writes into ``<run>/evaluate/``: ``metrics.json`` (accuracy, top-5, balanced accuracy, each with
its 95 % interval, beside chance, the majority-class baseline and top-5 chance; photos and files;
sink classes; how many test images have a copy in train), ``per_class.csv`` (precision, recall with
its interval, F1, support), ``confusion.csv`` and ``confusion.npy`` (rows true,
columns predicted), ``most_confused.csv``, ``predictions.csv`` (every test image: label, prediction,
probability, the true class's probability, top-5) and ``batch_predictions.csv`` (the first batch, as the reference's
``show_batch_with_pred``). Exports the model with its contract (see :mod:`carclf_core.export`):
``export/model.keras``, ``contract.json``, ``classes.json``, by option a SavedModel for TF Serving and
a checked TFLite file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import metrics as metrics_mod
from ..display import counted as counted_text
from ..display import photos_files
from ..errors import CarclfError, StageError
from ..events import ConfusionReady
from ..pipeline import StageContext, StageResult
from ..runs import atomic_path, write_json_atomic
from ..splitting import copies_across, photo_keys
from .split import load_splits, split_files


def _export(ctx: StageContext, model, classes: list[str], metrics: dict, ds) -> None:
    """The model, its contract and the optional SavedModel and TFLite files (see :mod:`carclf_core.export`)."""
    from ..export import make_contract, write_export

    ecfg = ctx.config.evaluate
    check = None
    if ecfg.export_tflite:  # the TFLite file is checked against the Keras model on real test images
        check = np.concatenate([np.asarray(batch[0]) for batch in ds.take(1)])[:32]
    contract = make_contract(ctx.run, ctx.config, classes, metrics)
    try:
        write_export(
            model, ctx.run, contract, savedmodel=ecfg.export_savedmodel, tflite=ecfg.export_tflite, check_images=check
        )
    except CarclfError:
        raise
    except Exception as exc:  # a backend without TensorFlow, or an export limitation
        raise StageError(
            f"evaluate.export_savedmodel / export_tflite: export failed ({type(exc).__name__}: {exc}); "
            "set them to false to skip"
        ) from exc


def _report_dropped(ctx: StageContext, paths: list[str], delivered: np.ndarray) -> int:
    """Log each test image the input pipeline dropped, with why; how many there were."""
    from ..images import broken_reason

    missing = np.setdiff1d(np.arange(len(paths)), delivered)
    root = Path(ctx.config.data.dir)
    for i in missing:
        path = Path(paths[i])
        name = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        ctx.log("warning", f"test image left out of the evaluation: {broken_reason(path)}", file=name)
    return len(missing)


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
    ds = inputs.make_dataset(
        test_paths, test_labels, len(classes), config.input, training=False, batch_size=batch, with_rows=True
    )
    parts, delivered = [], []
    with quiet_end_of_data():
        for images, _, rows in ds.as_numpy_iterator():
            ctx.check_cancelled()
            parts.append(np.asarray(model.predict_on_batch(images), dtype=np.float64))
            delivered.append(rows)
    # the pipeline drops a file that fails to decode (ignore_errors): evaluate the rest, name each one
    kept = np.concatenate(delivered) if delivered else np.zeros(0, dtype=np.int64)
    dropped = _report_dropped(ctx, test_paths, kept)
    if not len(kept):
        raise StageError(f"none of the {len(test_paths)} test images decodes (each is named in the log)")
    probs = np.concatenate(parts)
    test_paths = [test_paths[i] for i in kept]
    labels = np.asarray(test_labels, dtype=np.int64)[kept]
    pred = probs.argmax(axis=1)
    data_dir = Path(config.data.dir)
    rel_paths = [str(Path(p).relative_to(data_dir)) for p in test_paths]
    # a photo counts once: its first scored file (by path) stands for it; with split.copies_in_eval
    # one (the default) that is every file
    test_part = splits[splits["split"] == "test"]
    key_of = dict(zip(test_part["path"].astype(str), photo_keys(test_part), strict=True))
    counted = ~pd.Series([key_of.get(p, p) for p in rel_paths]).duplicated().to_numpy()
    photos = int(counted.sum())
    matrix = metrics_mod.confusion_matrix(labels[counted], pred[counted], len(classes))
    summary = metrics_mod.summary_metrics(matrix)
    top5_hits = metrics_mod.top_k_accuracy(probs[counted], labels[counted], 5) * photos
    metrics: dict[str, Any] = {
        **summary,
        "top5": top5_hits / photos,
        "photos": photos,
        "files": int(len(labels)),
        "images": int(len(labels)),
        "dropped": dropped,
        "classes": len(classes),
        **metrics_mod.baselines(labels[counted], len(classes), 5),
        **copies_across(splits),
    }
    metrics.update(metrics_mod.with_intervals(metrics, matrix, photos, top5_hits, seed=config.split.seed))
    metrics["sinks"] = metrics_mod.sink_classes(matrix, classes)

    per_class = pd.DataFrame(
        metrics_mod.per_class_metrics(matrix, classes), columns=["class", "precision", "recall", "f1", "support"]
    )
    recall_ci = np.array(metrics_mod.recall_intervals(matrix)).reshape(-1, 2)
    per_class.insert(3, "recall_low", recall_ci[:, 0])
    per_class.insert(4, "recall_high", recall_ci[:, 1])
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
    predictions = pd.DataFrame(
        {
            "path": rel_paths,
            "label": [classes[i] for i in labels],
            "predicted": [classes[i] for i in pred],
            "probability": probs[np.arange(len(pred)), pred],
            # what the loss is made of: the dashboard's worst test photos are those it gave least
            "true_probability": probs[np.arange(len(labels)), labels],
            "correct": labels == pred,
            "top5": [" | ".join(classes[i] for i in row) for row in top5],
            "counted": counted,
        }
    )
    with atomic_path(out / "predictions.csv") as tmp:
        predictions.to_csv(tmp, index=False)
    with atomic_path(out / "batch_predictions.csv") as tmp:
        predictions.head(config.input.batch_size).to_csv(tmp, index=False)
    write_json_atomic(out / "metrics.json", metrics)

    _export(ctx, model, classes, metrics, ds)

    train_summary = {}
    try:
        train_summary = json.loads(ctx.run.train_summary.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    ctx.emit(
        ConfusionReady.of(
            matrix,
            epoch=int(train_summary.get("best_epoch") or 0),
            classes=tuple(classes),
            split="test",
            sample=photos,
        )
    )
    for true, predicted, count in confused[:5]:
        ctx.log("info", f"confused: {true} -> {predicted} ({count}x)")
    text = metrics_mod.result_line("test", metrics) + f" on {photos_files(photos, len(labels))}"
    if metrics["sinks"]:
        text += "; " + metrics_mod.sink_text(metrics["sinks"])
    if "test_with_train_copy" in metrics:
        leaked = metrics["test_with_train_copy"]
        text += f"; {leaked:,} of them with a copy in train" if leaked else "; none with a copy in train"
    if dropped:
        text += f"; {counted_text(dropped, 'test image')} that no longer decode left out (named in the log)"
    return StageResult(text, metrics)
