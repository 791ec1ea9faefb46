"""The train stage: fine-tune the transfer model on the training split, resumably.

Reads ``split/splits.csv`` and ``split/classes.json``, fits with Keras's EarlyStopping and the
streaming callbacks, and checkpoints every completed epoch into ``<run>/train/`` (see
:class:`carclf_core.callbacks.CheckpointCallback`). Running the stage again on the same run (``--resume``)
continues after the last completed epoch with the early-stopping state it had. Outputs:
``best.keras`` (best weights, the model evaluate uses), ``history.csv``/``history.json``,
``classes.json``, ``summary.json``.

Model and callback code is pure Keras; TensorFlow is touched only through ``inputs`` (tf.data) and
inside :func:`_distribution` (MirroredStrategy); device queries are in :func:`model.gpu_info`.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import callbacks as cb
from . import model as model_mod
from .config import Config
from .runs import RunDir, atomic_path, write_json_atomic
from .stages import StageCancelled, StageContext, StageError, StageResult


def load_splits(run: RunDir) -> tuple[pd.DataFrame, list[str]]:
    """The split table and class list written by the split stage."""
    folder = run.path / "split"
    splits_path, classes_path = folder / "splits.csv", folder / "classes.json"
    for path in (splits_path, classes_path):
        if not path.is_file():
            raise StageError(f"{path}: missing; run the split stage first")
    splits = pd.read_csv(splits_path, dtype={"path": str, "label": str, "split": str}, keep_default_na=False)
    classes = json.loads(classes_path.read_text(encoding="utf-8"))
    return splits, list(classes)


def split_files(splits: pd.DataFrame, split: str, data_dir: str,
                ctx: StageContext | None = None) -> tuple[list[str], np.ndarray]:
    """Paths (joined with ``data.dir``) and class indices of one split, in saved order.

    Files that vanished since the index stage are left out, each named in a warning through ``ctx``,
    so a deleted image costs one sample rather than the epoch (or misaligned test predictions).
    """
    part = splits[splits["split"] == split]
    root = Path(data_dir)
    paths = [str(root / p) for p in part["path"]]
    labels = part["class_index"].to_numpy(dtype=np.int32)
    present = np.array([Path(p).is_file() for p in paths], dtype=bool)
    if not present.all():
        for rel in part["path"].to_numpy()[~present]:
            if ctx is not None:
                ctx.log("warning", f"{split} image missing since indexing, left out", file=str(rel))
        paths = [p for p, ok in zip(paths, present) if ok]
        labels = labels[present]
    return paths, labels


def _distribution(mode: str):
    """A ``tf.distribute.MirroredStrategy`` for ``train.distribute``, or None for the default.

    ``auto`` mirrors over several GPUs when there are; ``mirrored`` mirrors over the GPUs, or over the
    logical CPU devices when there is no GPU (how the tests exercise it).
    """
    if mode == "none":
        return None
    import keras

    if keras.backend.backend() != "tensorflow":
        if mode == "mirrored":
            raise StageError("train.distribute: `mirrored` needs the TensorFlow Keras backend "
                             f"(KERAS_BACKEND is {keras.backend.backend()})")
        return None
    import tensorflow as tf

    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if mode == "auto":
        return tf.distribute.MirroredStrategy(gpus) if len(gpus) > 1 else None
    devices = gpus or [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)


@contextlib.contextmanager
def quiet_end_of_data():
    """Silence Keras's "input ran out of data" warning at each epoch end: the pipelines drop
    undecodable files (``ignore_errors``), so their length is unknown and the end is found by
    running out, which is expected here, not a mistake."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        yield


def _confusion_sample(n: int, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a fixed random sample of the validation split (val files are grouped by
    class in ``splits.csv``, so the first N would miss classes)."""
    if size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def run(ctx: StageContext) -> StageResult:
    """Fine-tune (or resume fine-tuning) the model; see the module docstring for files written."""
    import keras

    config: Config = ctx.config
    tcfg = config.train
    model_mod.validate(tcfg)
    splits, classes = load_splits(ctx.run)
    num_classes = len(classes)
    out = ctx.stage_dir("train")
    write_json_atomic(out / "classes.json", classes)
    train_paths, train_labels = split_files(splits, "train", config.data.dir, ctx)
    val_paths, val_labels = split_files(splits, "val", config.data.dir, ctx)
    if not train_paths or not val_paths:
        raise StageError(f"{ctx.run.path / 'split' / 'splits.csv'}: empty train or val split")

    from . import inputs  # TensorFlow (tf.data) is imported only now

    icfg = config.input
    seed = config.split.seed
    keras.utils.set_random_seed(seed)
    ds_train = inputs.make_dataset(train_paths, train_labels, num_classes, icfg, training=True, seed=seed)
    ds_val = inputs.make_dataset(val_paths, val_labels, num_classes, icfg, training=False)
    sample_idx = _confusion_sample(len(val_paths), tcfg.confusion_sample, seed)
    ds_sample = inputs.make_dataset([val_paths[i] for i in sample_idx], val_labels[sample_idx], num_classes,
                                    icfg, training=False, batch_size=max(icfg.batch_size, 64))
    class_weight = (model_mod.balanced_class_weights(train_labels, num_classes)
                    if tcfg.class_weights == "balanced" else None)
    steps = math.ceil(len(train_paths) / icfg.batch_size)

    gpus, cc_major = model_mod.gpu_info()
    policy = model_mod.mixed_policy(tcfg.mixed_precision, gpus, cc_major)
    previous_policy = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    try:
        return _fit(ctx, keras, out, classes, ds_train, ds_val, ds_sample, val_labels[sample_idx],
                    class_weight, steps, len(train_paths), policy, gpus)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def _fit(ctx: StageContext, keras, out: Path, classes: list[str], ds_train, ds_val, ds_sample,
         sample_labels: np.ndarray, class_weight, steps: int, n_train: int, policy: str,
         gpus: int) -> StageResult:
    tcfg = ctx.config.train
    icfg = ctx.config.input
    input_shape = (icfg.height, icfg.width, 3)
    strategy = _distribution(tcfg.distribute)

    def scope():
        # a fresh context each time: strategy.scope() objects cannot be entered twice
        return strategy.scope() if strategy is not None else contextlib.nullcontext()

    state = cb.read_state(out)
    completed = int(state["completed_epochs"]) if state else 0
    history: list[dict[str, float]] = list(state.get("history", [])) if state else []
    already_done = bool(state and (state.get("stopped") or completed >= tcfg.epochs))
    warmup = tcfg.warmup_epochs

    with scope():
        model, base = model_mod.build_model(tcfg, input_shape, len(classes))
        resumed_full = False
        if state:
            if (tcfg.checkpoint == "full" and state.get("phase") == "finetune" and completed >= warmup
                    and (out / "last.keras").is_file()):
                # the full checkpoint carries the optimizer's moments: a true continuation
                model = model_mod.load_model(out / "last.keras")
                base = None
                resumed_full = True
            elif (out / "last_weights.npz").is_file():
                model.set_weights(cb.load_weights(out / "last_weights.npz"))
            ctx.log("info", f"resuming after epoch {completed} ({state.get('phase')}), early stopping "
                            f"{state['early_stopping']['wait']}/{tcfg.patience}")

    initial_es = None
    if state:
        initial_es = dict(state["early_stopping"])
        initial_es["best_weights"] = cb.load_weights(out / "best_weights.npz")
    es = cb.ResumableEarlyStopping(monitor=tcfg.monitor, patience=tcfg.patience, restore_best_weights=True,
                                   initial_state=initial_es)
    stop = cb.StopOnCancel(ctx.cancel)
    confusion = cb.ConfusionCallback(ctx.emit, ds_sample, sample_labels, classes,
                                     skip=lambda: stop.cut_epoch is not None)
    ctx.log("info", f"{tcfg.backbone} ({'random init' if tcfg.weights == 'null' else tcfg.weights}), "
                    f"{model.count_params():,} parameters, policy {policy}, "
                    f"{'mirrored over ' + str(strategy.num_replicas_in_sync) + ' devices' if strategy else 'one device'}")

    def phase_callbacks(phase: str, fit_model) -> list:
        events = cb.EventCallback(ctx.emit, icfg.batch_size, steps, n_train, tcfg.batch_events_per_second,
                                  total_epochs=tcfg.epochs, phase=phase,
                                  skip=lambda: stop.cut_epoch is not None)
        epoch_durations_ref.append(events.epoch_durations)
        checkpoint = cb.CheckpointCallback(out, model, es, phase, history, skip=lambda: stop.cut_epoch is not None,
                                           save_full=(phase == "finetune" and tcfg.checkpoint == "full"))
        patience = cb.PatienceReporter(ctx.emit, es, skip=lambda: stop.cut_epoch is not None)
        return [stop, events, es, patience, confusion, checkpoint]

    epoch_durations_ref: list[list[float]] = []
    val_steps = None
    # shuffling is the input pipeline's job (whole-split buffer); Keras's own flag only warns on tf.data
    fit_kwargs: dict[str, Any] = dict(validation_data=ds_val, class_weight=class_weight, verbose=0, shuffle=False,
                                      validation_steps=val_steps)
    started = time.monotonic()
    if not already_done and completed < warmup and base is not None:
        model_mod.apply_freeze(model, base, "base")
        with scope():
            warm = model_mod.build_frozen_base_model(model, base)
            model_mod.compile_model(warm, tcfg.learning_rate)
        with quiet_end_of_data():
            warm.fit(ds_train, epochs=warmup, initial_epoch=completed, callbacks=phase_callbacks("warmup", warm),
                     **fit_kwargs)
        if stop.cancelled:
            raise StageCancelled(ctx.cancel_reason)
        if es.stopped_epoch > 0:
            already_done = True  # early stopping ended the run during the warm-up
        else:
            # EarlyStopping restored its best weights at the end of the phase; go on from the last epoch
            model.set_weights(cb.load_weights(out / "last_weights.npz"))
            completed = warmup
        es.initial_state = {**es.state(), "best_weights": es.best_weights}

    if not already_done and completed < tcfg.epochs:
        if not resumed_full:
            if base is not None:
                frozen = model_mod.apply_freeze(model, base, tcfg.freeze, tcfg.freeze_patterns)
                if frozen:
                    ctx.log("info", f"train.freeze {tcfg.freeze}: {frozen} backbone layers frozen")
            with scope():
                model_mod.compile_model(model, tcfg.learning_rate)
        with quiet_end_of_data():
            model.fit(ds_train, epochs=tcfg.epochs, initial_epoch=completed,
                      callbacks=phase_callbacks("finetune", model), **fit_kwargs)
        if stop.cancelled:
            raise StageCancelled(ctx.cancel_reason)
    elif already_done and es.initial_state and es.initial_state.get("best_weights") is not None:
        model.set_weights(es.initial_state["best_weights"])  # nothing left to fit: keep the best

    fit_s = time.monotonic() - started
    # EarlyStopping restored the best weights at train end; this is the model evaluate uses
    with atomic_path(out / "best.keras") as tmp:
        model.save(str(tmp))
    frame = pd.DataFrame(history)
    with atomic_path(out / "history.csv") as tmp:
        frame.to_csv(tmp, index=False)
    write_json_atomic(out / "history.json", history)

    durations = [d for ref in epoch_durations_ref for d in ref]
    confusion_share = (sum(confusion.durations) / sum(durations)) if durations and confusion.durations else None
    es_state = es.state()
    best_epoch = es_state["best_epoch"] + 1 if es_state["best"] is not None else None
    best_row = next((h for h in history if h.get("epoch") == best_epoch), {})
    val_acc = best_row.get("val_categorical_accuracy")
    data = {
        "epochs_run": len(history), "best_epoch": best_epoch, "best": es_state["best"], "monitor": tcfg.monitor,
        "val_accuracy": val_acc, "chance": 1.0 / len(classes), "fit_s": fit_s, "policy": policy,
        "gpus": gpus, "replicas": strategy.num_replicas_in_sync if strategy else 1,
        "confusion_share": confusion_share,
        "confusion_s": sum(confusion.durations), "early_stopped": bool(es.stopped_epoch > 0 or
                                                                       (state or {}).get("stopped", False)),
    }
    write_json_atomic(out / "summary.json", data)
    if confusion_share is not None:
        ctx.log("info", f"per-epoch validation confusion matrix ({len(sample_labels)} images) cost "
                        f"{confusion_share:.1%} of epoch time")
    acc_text = f", val acc {val_acc:.3f} (chance {1 / len(classes):.3f})" if val_acc is not None else ""
    best_text = f"best {tcfg.monitor} {es_state['best']:.4f} at epoch {best_epoch}" if best_epoch else "no best epoch"
    return StageResult(f"{len(history)} epochs, {best_text}{acc_text}", data)
