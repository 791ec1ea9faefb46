"""The train stage: fine-tune the transfer model on the training split, resumably.

Reads the split stage's ``splits.csv`` and ``classes.json``, fits with Keras's EarlyStopping and the
streaming callbacks, and checkpoints every completed epoch into ``<run>/train/`` (see
:mod:`carclf_core.checkpoint`). Running the stage again on the same run (``--resume``) continues
after the last completed epoch with the early-stopping state it had. Outputs: ``best.keras`` (best
weights, the model evaluate uses), ``history.csv``/``history.json``, ``classes.json``,
``summary.json``.

Model and callback code is pure Keras; TensorFlow is touched only through ``inputs`` (tf.data) and
:mod:`carclf_core.keras_env` (MirroredStrategy, GPU query).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import callbacks as cb
from .. import display, keras_env
from .. import metrics as metrics_mod
from .. import model as model_mod
from ..checkpoint import Resume, load_weights
from ..errors import StageError
from ..pipeline import StageCancelled, StageContext, StageResult
from ..provenance import fingerprint
from ..runs import atomic_path, write_json_atomic
from .split import load_splits, split_files

SPLIT_FILES = ("split/splits.csv", "split/classes.json")
"""The training data a checkpoint is made from (see :meth:`_Training._resume_point`)."""


def _confusion_sample(n: int, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a fixed random sample of the validation split (val files are grouped by
    class in ``splits.csv``, so the first N would miss classes)."""
    if size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


@dataclasses.dataclass
class _Data:
    """The training inputs: tf.data pipelines and what the callbacks need to know about them."""

    classes: list[str]
    train: Any
    val: Any
    sample: Any
    """A fixed validation sample for the per-epoch confusion matrix."""
    sample_labels: np.ndarray
    val_baselines: dict[str, float]
    """Chance, majority-class and top-5 baselines of the validation split (metrics.baselines)."""
    class_weight: dict[int, float] | None
    steps: int
    n_train: int
    paths: dict[str, list[str]]
    """The train and val files, in the pipelines' row order."""
    audits: dict[str, Any]
    """Per split, the rows its pipeline delivered (``inputs.RowAudit``), to name the ones it dropped."""


def _load_data(ctx: StageContext) -> _Data:
    config = ctx.config
    splits, classes = load_splits(ctx.run)
    train_paths, train_labels = split_files(splits, "train", config.data.dir, ctx)
    val_paths, val_labels = split_files(splits, "val", config.data.dir, ctx)
    if not train_paths or not val_paths:
        raise StageError(f"{ctx.run.splits_csv}: empty train or val split")

    from .. import inputs  # TensorFlow (tf.data) is imported only now

    icfg, seed, n = config.input, config.split.seed, len(classes)
    sample_idx = _confusion_sample(len(val_paths), config.train.confusion_sample, seed)
    audits = {"train": inputs.RowAudit(len(train_paths)), "val": inputs.RowAudit(len(val_paths))}
    return _Data(
        classes=classes,
        train=inputs.make_dataset(train_paths, train_labels, n, icfg, training=True, seed=seed, audit=audits["train"]),
        val=inputs.make_dataset(val_paths, val_labels, n, icfg, training=False, audit=audits["val"]),
        sample=inputs.make_dataset(
            [val_paths[i] for i in sample_idx],
            val_labels[sample_idx],
            n,
            icfg,
            training=False,
            batch_size=max(icfg.batch_size, 64),
        ),
        sample_labels=val_labels[sample_idx],
        val_baselines=metrics_mod.baselines(val_labels, n),
        class_weight=(
            model_mod.balanced_class_weights(train_labels, n) if config.train.class_weights == "balanced" else None
        ),
        steps=math.ceil(len(train_paths) / icfg.batch_size),
        n_train=len(train_paths),
        paths={"train": train_paths, "val": val_paths},
        audits=audits,
    )


def run(ctx: StageContext) -> StageResult:
    """Fine-tune (or resume fine-tuning) the model; see the module docstring for files written."""
    import keras

    model_mod.validate(ctx.config.train)
    data = _load_data(ctx)
    ctx.stage_dir("train")
    keras.utils.set_random_seed(ctx.config.split.seed)
    gpus, cc_major = keras_env.gpu_info()
    policy = keras_env.mixed_policy(ctx.config.train.mixed_precision, gpus, cc_major)
    previous_policy = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    try:
        return _Training(ctx, data, policy, gpus).run()
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


class _Training:
    """One train stage's fit: the resume point, the shared callbacks, and the phases."""

    def __init__(self, ctx: StageContext, data: _Data, policy: str, gpus: int):
        self.ctx, self.data, self.policy, self.gpus = ctx, data, policy, gpus
        self.tcfg = ctx.config.train
        self.out = ctx.run.train_dir
        self.strategy = keras_env.distribution(self.tcfg.distribute)
        self.source = fingerprint(ctx.run, SPLIT_FILES)
        self.resume = self._resume_point()
        write_json_atomic(self.out / "classes.json", data.classes)
        self.history = self.resume.history
        self.es = cb.ResumableEarlyStopping(
            monitor=self.tcfg.monitor,
            mode=self.tcfg.monitor_direction,
            patience=self.tcfg.patience,
            restore_best_weights=True,
            initial_state=self.resume.early_stopping,
        )
        self.stop = cb.StopOnCancel(ctx.cancel)
        self.diverged = cb.StopOnNonFiniteLoss()
        self.confusion = cb.ConfusionCallback(
            ctx.emit, data.sample, data.sample_labels, data.classes, skip=self._epoch_cut
        )
        self.dropped: dict[str, int] = {"train": 0, "val": 0}
        self.drops = cb.DroppedImagesReporter(data.audits, self._report_dropped, skip=self._epoch_cut)
        self._event_callbacks: list[cb.EventCallback] = []
        self.main_model = None
        """The model whose weights are checkpointed (the warm-up fits a view of it)."""

    def _resume_point(self) -> Resume:
        """Where training goes on: the folder's checkpoint, unless it was trained on another split.

        A checkpoint made from other training data must never be continued (its classes and images
        differ): its folder is set aside under ``previous/`` and training starts fresh.
        """
        resume = Resume.read(self.out)
        if resume.fresh or resume.source == self.source:
            return resume
        kept = self.ctx.run.set_aside("train")
        self.ctx.log(
            "warning",
            f"the train checkpoint was made from another split; starting fresh (the old "
            f"train folder is kept in {kept})",
        )
        self.out.mkdir(parents=True, exist_ok=True)
        return Resume()

    def _report_dropped(self, split: str, rows: list[int]) -> None:
        """Log each image of ``split`` the input pipeline dropped, with why (it no longer decodes)."""
        from ..images import broken_reason

        root = Path(self.ctx.config.data.dir)
        self.dropped[split] += len(rows)
        for row in rows:
            path = Path(self.data.paths[split][row])
            name = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
            self.ctx.log("warning", f"{split} image left out of training: {broken_reason(path)}", file=name)

    def _epoch_cut(self) -> bool:
        """True while the ending epoch was cut short by a stop or a NaN loss: it must not be reported or saved."""
        return self.stop.cut_epoch is not None or self.diverged.found is not None

    def scope(self):
        # a fresh context each time: strategy.scope() objects cannot be entered twice
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def callbacks(self, phase: str) -> list:
        """The callback list of one ``fit``. Order matters: the stop and event callbacks first, then
        Keras's EarlyStopping, then the reporters and the checkpoint, which read what early stopping
        decided at the same epoch end."""
        icfg = self.ctx.config.input
        events = cb.EventCallback(
            self.ctx.emit,
            icfg.batch_size,
            self.data.steps,
            self.data.n_train,
            self.tcfg.batch_events_per_second,
            total_epochs=self.tcfg.epochs,
            phase=phase,
            skip=self._epoch_cut,
        )
        self._event_callbacks.append(events)
        checkpoint = cb.CheckpointCallback(
            self.out,
            self.main_model,
            self.es,
            phase,
            self.history,
            skip=self._epoch_cut,
            save_full=(phase == "finetune" and self.tcfg.checkpoint == "full"),
            source=self.source,
        )
        patience = cb.PatienceReporter(self.ctx.emit, self.es, skip=self._epoch_cut)
        return [
            self.stop,
            self.diverged,
            events,
            self.drops,
            self.es,
            patience,
            self.confusion,
            *self._tensorboard(),
            checkpoint,
        ]

    def _tensorboard(self) -> list:
        """TensorBoard logs in ``<run>/tensorboard/`` (``train.tensorboard``, TensorFlow backend only)."""
        import keras

        if not self.tcfg.tensorboard or keras.backend.backend() != "tensorflow":
            return []
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            self.ctx.log(
                "warning",
                "train.tensorboard: the tensorboard package is not installed, so no TensorBoard "
                "logs are written (pip install tensorboard, or set it to false)",
            )
            return []
        from .. import tensorboard_log

        return tensorboard_log.callbacks(self.ctx.run.path / "tensorboard", self.confusion, self._epoch_cut)

    def fit_phase(self, fit_model, phase: str, epochs: int, initial_epoch: int) -> None:
        """Fit ``fit_model`` from ``initial_epoch`` up to ``epochs``; a stop raises StageCancelled."""
        # shuffling is the input pipeline's job (whole-split buffer); Keras's own flag only warns on tf.data
        with keras_env.quiet_end_of_data():
            fit_model.fit(
                self.data.train,
                validation_data=self.data.val,
                class_weight=self.data.class_weight,
                epochs=epochs,
                initial_epoch=initial_epoch,
                callbacks=self.callbacks(phase),
                verbose=0,
                shuffle=False,
            )
        if self.diverged.found is not None:
            epoch, step, loss = self.diverged.found
            raise StageError(
                f"loss became {display.number(loss)} at epoch {epoch}, step {step}: lower train.learning_rate "
                f"(now {self.tcfg.learning_rate:g})",
                f"the checkpoint of epoch {epoch - 1} is kept" if epoch > 1 else "no epoch had finished",
            )
        if self.stop.cancelled:
            raise StageCancelled(self.ctx.cancel_reason)

    def build(self) -> tuple[Any, Any, bool]:
        """The model to train, its base (None once loaded whole), and whether the optimizer came back too."""
        icfg, resume = self.ctx.config.input, self.resume
        with self.scope():
            model, base = model_mod.build_model(self.tcfg, (icfg.height, icfg.width, 3), len(self.data.classes))
            if resume.early_stopping is None:
                return model, base, False
            self.ctx.log(
                "info",
                f"resuming after epoch {resume.completed} ({resume.phase}), early stopping "
                f"{resume.early_stopping['wait']}/{self.tcfg.patience}",
            )
            if (
                self.tcfg.checkpoint == "full"
                and resume.phase == "finetune"
                and resume.completed >= self.tcfg.warmup_epochs
                and (self.out / "last.keras").is_file()
            ):
                # the full checkpoint carries the optimizer's moments: a true continuation
                return model_mod.load_model(self.out / "last.keras"), None, True
            if (self.out / "last_weights.npz").is_file():
                model.set_weights(load_weights(self.out / "last_weights.npz"))
            return model, base, False

    def run(self) -> StageResult:
        tcfg, resume = self.tcfg, self.resume
        model, base, resumed_full = self.build()
        self.main_model = model
        self.ctx.log(
            "info",
            f"{tcfg.backbone} ({'random init' if tcfg.weights == 'null' else tcfg.weights}), "
            f"{model.count_params():,} parameters, policy {self.policy}, "
            + (f"mirrored over {self.strategy.num_replicas_in_sync} devices" if self.strategy else "one device"),
        )
        done = resume.finished(tcfg.epochs)
        completed = resume.completed
        started = time.monotonic()
        if not done and completed < tcfg.warmup_epochs and base is not None:
            model_mod.apply_freeze(model, base, "base")
            with self.scope():
                warm = model_mod.build_frozen_base_model(model, base)
                model_mod.compile_model(warm, tcfg.learning_rate)
            self.fit_phase(warm, "warmup", tcfg.warmup_epochs, completed)
            if self.es.stopped_epoch > 0:
                done = True  # early stopping ended the run during the warm-up
            else:
                # EarlyStopping restored its best weights at the end of the phase; go on from the last epoch
                model.set_weights(load_weights(self.out / "last_weights.npz"))
                completed = tcfg.warmup_epochs
            self.es.initial_state = {**self.es.state(), "best_weights": self.es.best_weights}

        if not done and completed < tcfg.epochs:
            if not resumed_full:
                if base is not None:
                    frozen = model_mod.apply_freeze(model, base, tcfg.freeze, tcfg.freeze_patterns)
                    if frozen:
                        self.ctx.log("info", f"train.freeze {tcfg.freeze}: {frozen} backbone layers frozen")
                with self.scope():
                    model_mod.compile_model(model, tcfg.learning_rate)
            self.fit_phase(model, "finetune", tcfg.epochs, completed)
        elif done and self.es.best_weights is not None:
            model.set_weights(self.es.best_weights)  # nothing left to fit: keep the best
        return self.finish(model, time.monotonic() - started)

    def finish(self, model, fit_s: float) -> StageResult:
        """Save the best model, the history and the summary."""
        tcfg, out, history = self.tcfg, self.out, self.history
        # EarlyStopping restored the best weights at train end; this is the model evaluate uses
        with atomic_path(out / "best.keras") as tmp:
            model.save(str(tmp))
        with atomic_path(out / "history.csv") as tmp:
            pd.DataFrame(history).to_csv(tmp, index=False)
        write_json_atomic(out / "history.json", history)

        durations = [d for events in self._event_callbacks for d in events.epoch_durations]
        spent = self.confusion.durations
        confusion_share = (sum(spent) / sum(durations)) if durations and spent else None
        es_state = self.es.state()
        best_epoch = es_state["best_epoch"] + 1 if es_state["best"] is not None else None
        best_row = next((h for h in history if h.get("epoch") == best_epoch), {})
        val_acc = best_row.get("val_categorical_accuracy")
        n_classes = len(self.data.classes)
        summary = {
            "epochs_run": len(history),
            "best_epoch": best_epoch,
            "best": es_state["best"],
            "monitor": tcfg.monitor,
            "val_accuracy": val_acc,
            **self.data.val_baselines,
            "fit_s": fit_s,
            "policy": self.policy,
            "gpus": self.gpus,
            "replicas": self.strategy.num_replicas_in_sync if self.strategy else 1,
            "confusion_share": confusion_share,
            "confusion_s": sum(spent),
            "early_stopped": bool(self.es.stopped_epoch > 0 or self.resume.stopped),
            "dropped": dict(self.dropped),
        }
        write_json_atomic(out / "summary.json", summary)
        if confusion_share is not None:
            self.ctx.log(
                "info",
                f"per-epoch validation confusion matrix ({len(self.data.sample_labels)} images) "
                f"cost {confusion_share:.1%} of epoch time",
            )
        majority = self.data.val_baselines["majority_baseline"]
        acc_text = (
            f", val acc {val_acc:.3f} (chance {1 / n_classes:.3f}, majority {majority:.3f})"
            if val_acc is not None
            else ""
        )
        best_text = (
            f"best {tcfg.monitor} {es_state['best']:.4f} at epoch {best_epoch}" if best_epoch else "no best epoch"
        )
        lost = sum(self.dropped.values())
        lost_text = f"; {lost:,} image(s) that no longer decode left out (named in the log)" if lost else ""
        return StageResult(f"{len(history)} epochs, {best_text}{acc_text}{lost_text}", summary)
