"""The train stage: fine-tune the transfer model on the training split, resumably.

Reads the split stage's ``splits.csv`` and ``classes.json``, fits with Keras's EarlyStopping and the
streaming callbacks, and checkpoints every completed epoch into ``<run>/train/`` (see
:mod:`carclf_core.checkpoint`). Running the stage again on the same run (``--resume``) continues
after the last completed epoch with the early-stopping state it had. Outputs: ``best.keras`` (best
weights, the model evaluate uses), ``history.csv``/``history.json``, ``classes.json``,
``summary.json``.

On several machines (``train.distribute: multi_worker``, or ``auto`` with ``TF_CONFIG`` naming more
than one), every machine runs this stage: each trains on its own share of the split (every N-th file)
at ``input.batch_size`` a step, so the global batch is N times that and the learning rate follows
``train.lr_scaling``. The chief (task 0) writes everything; a worker writes nothing into the run
(its events go to ``worker-<rank>.log``, see :mod:`carclf_core.cluster`) and reads the checkpoint
the chief resumes from. :mod:`carclf_core.multiworker` keeps their stops and starts in step.

Model and callback code is pure Keras; TensorFlow is touched only through ``inputs`` (tf.data) and
:mod:`carclf_core.keras_env` (the strategies, GPU query), :mod:`carclf_core.multiworker`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import callbacks as cb
from .. import display, keras_env, multiworker, splitting
from .. import metrics as metrics_mod
from .. import model as model_mod
from ..checkpoint import Resume, load_weights
from ..cluster import Cluster, cluster_from_env, multi_worker_wanted
from ..display import photos_files
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
    val_photos: int
    """Distinct photos of the validation split (copies count once)."""
    class_weight: dict[int, float] | None
    steps: int
    """Steps an epoch (on several machines: of the largest share, which every machine steps through)."""
    n_train: int
    """Training images over all machines."""
    global_batch: int
    """Images a step over all machines: ``input.batch_size`` x machines."""
    paths: dict[str, list[str]]
    """The train and val files of this machine, in the pipelines' row order."""
    audits: dict[str, Any]
    """Per split, the rows its pipeline delivered (``inputs.RowAudit``), to name the ones it dropped."""


def _load_data(ctx: StageContext, team: Cluster | None) -> _Data:
    """The pipelines of this machine: on several machines, its share of the train and val files.

    Class weights, baselines and the confusion sample come from the whole split, so every machine
    weighs and reports alike; the sample is predicted by all together (its order is kept).
    """
    config = ctx.config
    splits, classes = load_splits(ctx.run)
    train_paths, train_labels = split_files(splits, "train", config.data.dir, ctx)
    val_paths, val_labels = split_files(splits, "val", config.data.dir, ctx)
    if not train_paths or not val_paths:
        raise StageError(f"{ctx.run.splits_csv}: empty train or val split")

    from .. import inputs  # TensorFlow (tf.data) is imported only now

    icfg, seed, n = config.input, config.split.seed, len(classes)
    sample_idx = _confusion_sample(len(val_paths), config.train.confusion_sample, seed)
    sample_labels = val_labels[sample_idx]
    val_baselines = metrics_mod.baselines(val_labels, n)
    class_weight = (
        model_mod.balanced_class_weights(train_labels, n) if config.train.class_weights == "balanced" else None
    )
    n_train, machines = len(train_paths), team.size if team else 1
    # A pipeline's batch is the global batch; on several machines the strategy splits it, each
    # machine taking input.batch_size a step: from its own share of the training files (it decodes
    # only those), from its part of each validation and sample batch (whole on every machine).
    global_batch = icfg.batch_size * machines
    sample_batch = max(global_batch, 64)
    if team is not None:
        # Keras 3 cannot take the empty batch TensorFlow hands a machine when a short last batch
        # does not reach it: there every batch is whole (see keras_env.whole_batches)
        if len(val_paths) < global_batch:
            raise StageError(
                f"{ctx.run.splits_csv}: {len(val_paths)} validation images, fewer than a global batch "
                f"({global_batch}: input.batch_size x {team.size} machines)",
                "lower input.batch_size, or train on fewer machines",
            )
        train_paths, train_labels = _even_share(train_paths, train_labels, team, global_batch)
        sample_batch = global_batch
        sample_idx = np.resize(sample_idx, _round_up(len(sample_idx), global_batch))  # repeated from the start
    audits: dict[str, Any] = {"train": inputs.RowAudit(len(train_paths)), "val": inputs.RowAudit(len(val_paths))}
    train = inputs.make_dataset(
        train_paths,
        train_labels,
        n,
        icfg,
        training=True,
        seed=seed,
        batch_size=global_batch,
        audit=audits["train"],
        deterministic=config.train.deterministic,
    )
    val = inputs.make_dataset(
        val_paths, val_labels, n, icfg, training=False, batch_size=global_batch, audit=audits["val"]
    )
    # the sample's labels stay unpadded: the confusion matrix reads that many predictions
    if team is None and len(sample_idx) == len(val_paths):
        # the sample is the whole validation split, in its order: its pipeline serves (building another
        # traces the decoding graph again, seconds of start-up on a CPU)
        sample = val
    else:
        sample = inputs.make_dataset(
            [val_paths[i] for i in sample_idx], val_labels[sample_idx], n, icfg, training=False, batch_size=sample_batch
        )
    if team is not None:
        train = keras_env.whole_batches(train, global_batch, own_share=True)
        val, sample = keras_env.whole_batches(val, global_batch), keras_env.whole_batches(sample, global_batch)
        # the repeating share is read ahead into the next pass: its rows are judged over the run
        audits["train"] = _OverTheRun(audits["train"])
    return _Data(
        classes=classes,
        train=train,
        val=val,
        sample=sample,
        sample_labels=sample_labels,
        val_baselines=val_baselines,
        val_photos=splitting.split_sizes(splits)["val"]["photos"],
        class_weight=class_weight,
        steps=math.ceil(len(train_paths) / icfg.batch_size),
        n_train=n_train,
        global_batch=global_batch,
        paths={"train": train_paths, "val": val_paths},
        audits=audits,
    )


class _OverTheRun:
    """A row audit that counts a row as delivered once it came in any epoch (``start`` keeps what
    was seen). A repeating pipeline prefetches the next pass before the epoch ends, so an audit reset
    at each epoch would name rows that merely came early; a row never delivered is still named once."""

    def __init__(self, audit: Any):
        self.audit = audit

    def start(self) -> None:
        pass

    @property
    def seen(self) -> np.ndarray:
        return self.audit.seen

    def missing(self) -> np.ndarray:
        return self.audit.missing()


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _even_share(paths: list[str], labels: np.ndarray, team: Cluster, global_batch: int) -> tuple[list[str], np.ndarray]:
    """This machine's share of the training files: every N-th (the split lists files class by class,
    so each share has every class), topped up with its own first files to a whole number of global
    batches, the same on every machine: all machines step through the same full batches, an epoch
    being one pass over each share (one that ran out of data first would stall the others)."""
    own = list(range(team.rank, len(paths), team.size))
    length = _round_up(-(-len(paths) // team.size), global_batch)
    own = list(itertools.islice(itertools.cycle(own), length))
    return [paths[i] for i in own], labels[own]


def run(ctx: StageContext) -> StageResult:
    """Fine-tune (or resume fine-tuning) the model; see the module docstring for files written."""
    import keras

    tcfg = ctx.config.train
    model_mod.validate(tcfg)
    cluster = cluster_from_env()
    # before the pipelines: a multi-worker strategy must come before any other TensorFlow operation
    strategy = keras_env.distribution(tcfg, cluster)
    team = cluster if multi_worker_wanted(tcfg.distribute, cluster) else None
    # Python's, NumPy's and the backend's global seeds, before the pipelines: tf.data's shuffle and
    # random draws combine their own seed with the global one, so a run's epochs depend on it
    keras.utils.set_random_seed(ctx.config.split.seed)
    # several machines: collective ops between processes are outside what op determinism covers
    with keras_env.op_determinism(tcfg.deterministic and team is None) as deterministic:
        data = _load_data(ctx, team)
        if team is None or team.chief:
            ctx.stage_dir("train")
        gpus, cc_major = keras_env.gpu_info()
        policy = keras_env.mixed_policy(tcfg.mixed_precision, gpus, cc_major)
        previous_policy = keras.mixed_precision.global_policy().name
        keras.mixed_precision.set_global_policy(policy)
        try:
            return _Training(ctx, data, policy, gpus, strategy, team, deterministic).run()
        finally:
            keras.mixed_precision.set_global_policy(previous_policy)


class _Training:
    """One train stage's fit: the resume point, the shared callbacks, and the phases."""

    def __init__(
        self,
        ctx: StageContext,
        data: _Data,
        policy: str,
        gpus: int,
        strategy,
        team: Cluster | None,
        deterministic: bool = False,
    ):
        self.ctx, self.data, self.policy, self.gpus = ctx, data, policy, gpus
        self.deterministic = deterministic
        """Whether TensorFlow's op determinism was on for this fit (``train.deterministic``)."""
        self.tcfg = ctx.config.train
        self.out = ctx.run.train_dir
        self.strategy, self.team = strategy, team
        self.chief = team is None or team.chief
        """Whether this process writes the run (always, but on a worker of several machines)."""
        self.learning_rate = self.tcfg.learning_rate * keras_env.lr_scale(
            self.tcfg.lr_scaling, team.size if team else 1
        )
        self.source = fingerprint(ctx.run, SPLIT_FILES)
        if self.chief:
            self.resume = self._resume_point()
            write_json_atomic(self.out / "classes.json", data.classes)
        self.sync: multiworker.ClusterSync | None = None
        # a stop on several machines counts once all have agreed on it (ClusterSync), at one batch
        self.agreed_stop = threading.Event() if team else ctx.cancel
        if team is not None:
            # the workers read the checkpoint once the chief has prepared the train folder
            multiworker.wait_for_all(strategy, team, self.tcfg.cluster_wait_s, ctx.emit)
            if not self.chief:
                self.resume = Resume.read(self.out)
            self.sync = multiworker.ClusterSync(
                strategy,
                team,
                ctx.cancel,
                self.agreed_stop,
                ctx.emit,
                ctx.config.input.batch_size,
                len(data.paths["train"]),
                data.global_batch,
                self.learning_rate,
                reason=self._stopped_elsewhere,
            )
            multiworker.check_same_start(
                strategy,
                team,
                {"resume epoch": self.resume.completed, "split file fingerprint": int(self.source[:12], 16)},
            )
        self.history = self.resume.history
        self.es = cb.ResumableEarlyStopping(
            monitor=self.tcfg.monitor,
            mode=self.tcfg.monitor_direction,
            patience=self.tcfg.patience,
            restore_best_weights=True,
            initial_state=self.resume.early_stopping,
        )
        self.stop = cb.StopOnCancel(self.agreed_stop)
        self.diverged = cb.StopOnNonFiniteLoss()
        self.confusion = cb.ConfusionCallback(
            ctx.emit,
            data.sample,
            data.sample_labels,
            data.classes,
            skip=self._epoch_cut,
            best_epoch=lambda: int(self.es.best_epoch),
        )
        self.dropped: dict[str, int] = {"train": 0, "val": 0}
        self.drops = cb.DroppedImagesReporter(data.audits, self._report_dropped, skip=self._epoch_cut)
        self._event_callbacks: list[cb.EventCallback] = []
        self.main_model: Any = None
        """The model whose weights are checkpointed (the warm-up fits a view of it)."""
        self.last_weights: list | None = None
        """The main model's weights at the last finished epoch of the warm-up."""
        self.optimizer_arrays: list | None = None
        """A full checkpoint's optimizer state, set by :meth:`build` until the fine-tuning compile takes it."""

    def _stopped_elsewhere(self, reason: str) -> None:
        self.ctx.cancel_reason = reason

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
        events = cb.EventCallback(
            self.ctx.emit,
            self.data.global_batch,
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
        # On several machines the collectives (ClusterSync's, the confusion sample's predict) must
        # come in the same order on each: what only the chief does (files) does no collective.
        return [
            *([self.sync] if self.sync is not None else []),
            self.stop,
            self.diverged,
            events,
            self.drops,
            self.es,
            patience,
            self.confusion,
            *(self._tensorboard() if self.chief else []),
            *([checkpoint] if self.chief else []),
            *([self._keep_last_weights()] if phase == "warmup" else []),
        ]

    def _keep_last_weights(self):
        """A callback keeping the main model's weights at each finished warm-up epoch (in memory: a
        worker must not wait for the chief's checkpoint file)."""
        import keras

        def keep(epoch, logs=None):
            if not self._epoch_cut():
                self.last_weights = self.main_model.get_weights()

        return keras.callbacks.LambdaCallback(on_epoch_end=keep)

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
        try:
            with keras_env.quiet_end_of_data():
                fit_model.fit(
                    self.data.train,
                    validation_data=self.data.val,
                    class_weight=self.data.class_weight,
                    epochs=epochs,
                    initial_epoch=initial_epoch,
                    # several machines: each share repeats, and an epoch is one pass of the longest
                    steps_per_epoch=self.data.steps if self.team else None,
                    callbacks=self.callbacks(phase),
                    verbose=0,
                    shuffle=False,
                )
        except Exception as exc:
            # the chief's history holds the checkpointed epochs; a worker knows the one running
            finished = len(self.history) if self.chief else (self.sync.epoch - 1 if self.sync else 0)
            lost = multiworker.lost_machine(exc, self.team, finished) if self.team else None
            if lost is None:
                raise
            raise lost from exc
        if self.diverged.found is not None:
            epoch, step, loss = self.diverged.found
            scaled = f", x{self.learning_rate / self.tcfg.learning_rate:.3g} for the global batch" if self.team else ""
            raise StageError(
                f"loss became {display.number(loss)} at epoch {epoch}, step {step}: lower train.learning_rate "
                f"(now {self.tcfg.learning_rate:g}{scaled})",
                f"the checkpoint of epoch {epoch - 1} is kept" if epoch > 1 else "no epoch had finished",
            )
        if self.stop.cancelled:
            raise StageCancelled(self.ctx.cancel_reason)

    def build(self) -> tuple[Any, Any, bool]:
        """The model to train, its base (None once loaded whole), and whether the optimizer came back too
        (loaded whole from a ``last.keras`` of an earlier version); the optimizer state of a full
        checkpoint waits in :attr:`optimizer_arrays` for the fine-tuning model's compile."""
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
            continues = (
                self.tcfg.checkpoint == "full"
                and resume.phase == "finetune"
                and resume.completed >= self.tcfg.warmup_epochs
            )
            if continues and (self.out / "last_optimizer.npz").is_file():
                # the full checkpoint carries the optimizer's moments: a true continuation
                self.optimizer_arrays = load_weights(self.out / "last_optimizer.npz")
            elif continues and (self.out / "last.keras").is_file():
                # written by a version that saved the whole model each epoch
                return model_mod.load_model(self.out / "last.keras"), None, True
            if (self.out / "last_weights.npz").is_file():
                model.set_weights(load_weights(self.out / "last_weights.npz"))
            return model, base, False

    def _restore_optimizer(self, model) -> None:
        """Adam's state from the full checkpoint into the compiled fine-tuning model; when it does not
        fit (another backbone or freeze), the resume goes on with a fresh optimizer and says so."""
        arrays, self.optimizer_arrays = self.optimizer_arrays, None
        if arrays is None:
            return
        why = model_mod.restore_optimizer_state(model, arrays)
        if why is not None:
            self.ctx.log("warning", f"the optimizer starts afresh: {why}", file="train/last_optimizer.npz")

    def _same_weights_everywhere(self, model) -> None:
        """On several machines: refuse to train from different weights (see multiworker.check_same_start)."""
        if self.team is not None:
            # weighted by position, so weights in another order do not add up alike
            weights = model.get_weights()
            checksum = float(sum((i + 1) * float(np.sum(w, dtype=np.float64)) for i, w in enumerate(weights)))
            multiworker.check_same_start(self.strategy, self.team, {"weights checksum": checksum})

    def run(self) -> StageResult:
        tcfg, resume = self.tcfg, self.resume
        model, base, resumed_full = self.build()
        self._same_weights_everywhere(model)
        self.main_model = model
        self.ctx.log(
            "info",
            f"{tcfg.backbone} ({'random init' if tcfg.weights == 'null' else tcfg.weights}), "
            f"{model.count_params():,} parameters, policy {self.policy}, "
            + (f"mirrored over {self.strategy.num_replicas_in_sync} devices" if self.strategy else "one device"),
        )
        if self.team is not None and self.sync is not None:
            n_val = len(self.data.paths["val"])
            kept = n_val // self.data.global_batch * self.data.global_batch
            self.ctx.log(
                "info",
                f"training on {self.team.size} machines as {self.team.name()}: global batch "
                f"{self.data.global_batch} ({self.ctx.config.input.batch_size} a machine), learning rate "
                f"{self.learning_rate:.3g} (train.learning_rate {tcfg.learning_rate:g} x "
                f"{self.learning_rate / tcfg.learning_rate:.3g}, train.lr_scaling {tcfg.lr_scaling}), "
                f"{len(self.data.paths['train']):,} of {self.data.n_train:,} training images here (a share "
                f"topped up to whole global batches), validation on {kept:,} of {n_val:,} images (whole "
                "global batches)",
            )
            self.sync.report()
        done = resume.finished(tcfg.epochs)
        completed = resume.completed
        started = time.monotonic()
        if not done and completed < tcfg.warmup_epochs and base is not None:
            model_mod.apply_freeze(model, base, "base")
            with self.scope():
                warm = model_mod.build_frozen_base_model(model, base)
                model_mod.compile_model(warm, self.learning_rate)
            self.fit_phase(warm, "warmup", tcfg.warmup_epochs, completed)
            if self.es.stopped_epoch > 0:
                done = True  # early stopping ended the run during the warm-up
            else:
                # EarlyStopping restored its best weights at the end of the phase; go on from the last epoch
                model.set_weights(self.last_weights)
                completed = tcfg.warmup_epochs
            self.es.initial_state = {**self.es.state(), "best_weights": self.es.best_weights}

        if not done and completed < tcfg.epochs:
            if not resumed_full:
                if base is not None:
                    frozen = model_mod.apply_freeze(model, base, tcfg.freeze, tcfg.freeze_patterns)
                    if frozen:
                        self.ctx.log("info", f"train.freeze {tcfg.freeze}: {frozen} backbone layers frozen")
                with self.scope():
                    model_mod.compile_model(model, self.learning_rate)
                    self._restore_optimizer(model)
            self.fit_phase(model, "finetune", tcfg.epochs, completed)
        elif done and self.es.best_weights is not None:
            model.set_weights(self.es.best_weights)  # nothing left to fit: keep the best
        return self.finish(model, time.monotonic() - started)

    def _val_intervals(self, best_row: dict) -> dict[str, Any]:
        """The validation figures of the best epoch with their 95 % intervals (see metrics.with_intervals).

        Keras's accuracies count files; with ``split.copies_in_eval: one`` (the default) a file is a
        photo, and with ``all`` the intervals take the photos as n (wider, as they should be). The
        balanced accuracy and each class's recall come from the best epoch's confusion matrix of
        the validation sample (``train.confusion_sample``), when that epoch ran in this process.
        """
        files = len(self.data.paths["val"]) - self.dropped.get("val", 0)
        out: dict[str, Any] = {"val_photos": self.data.val_photos, "val_files": files}
        n = min(self.data.val_photos, files)
        val_acc, val_top5 = best_row.get("val_categorical_accuracy"), best_row.get("val_top5")
        if val_acc is None:
            return out
        figures = {"accuracy": float(val_acc), **self.data.val_baselines}
        if val_top5 is not None:
            figures["top5"] = float(val_top5)
        matrix = self.confusion.best_matrix
        if matrix is not None:
            figures["balanced_accuracy"] = metrics_mod.summary_metrics(matrix)["balanced_accuracy"]
        found = metrics_mod.with_intervals(figures, matrix, n, seed=self.ctx.config.split.seed)
        out.update({f"val_{k}" if k != "interval" else k: v for k, v in found.items()})
        if matrix is not None:
            out["val_balanced_accuracy"] = figures["balanced_accuracy"]
            out["val_confusion_sample"] = int(matrix.sum())
            recall = metrics_mod.per_class_metrics(matrix, self.data.classes)
            out["val_recall"] = [
                {"class": name, "recall": r[2], "low": ci[0], "high": ci[1], "support": r[4]}
                for name, r, ci in zip(self.data.classes, recall, metrics_mod.recall_intervals(matrix), strict=True)
            ]
        if val_top5 is not None:
            out["val_top5"] = float(val_top5)
        return out

    def seeds(self) -> dict[str, int]:
        """Every seed this training used, by what it drew: all are ``split.seed`` (one number to
        write down and to change), named so a reader knows what it covers."""
        seed = self.ctx.config.split.seed
        return {
            "split": seed,
            "weights": seed,  # keras.utils.set_random_seed: initialisation, dropout
            "shuffle": seed,  # the training pipeline's order, a new one each epoch
            "augment": seed,  # which images are augmented, and how
            "confusion_sample": seed,  # the validation images of the per-epoch confusion matrix
        }

    def finish(self, model, fit_s: float) -> StageResult:
        """Save the best model, the history and the summary (a worker of several machines saves nothing)."""
        tcfg, out, history = self.tcfg, self.out, self.history
        if not self.chief:
            last = self.sync.epoch if self.sync else 0
            return StageResult(
                f"{self.team.name() if self.team else 'worker'}: trained with the chief up to epoch {last}"
            )
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
        summary = {
            "epochs_run": len(history),
            "best_epoch": best_epoch,
            "best": es_state["best"],
            "monitor": tcfg.monitor,
            "val_accuracy": val_acc,
            # the best epoch's whole history row (loss, accuracies, top-5, train and validation)
            "best_metrics": best_row,
            **self.data.val_baselines,
            **self._val_intervals(best_row),
            "fit_s": fit_s,
            "policy": self.policy,
            "gpus": self.gpus,
            "replicas": self.strategy.num_replicas_in_sync if self.strategy else 1,
            "machines": self.team.size if self.team else 1,
            "workers": list(self.team.workers) if self.team else [],
            "global_batch": self.data.global_batch,
            "learning_rate": self.learning_rate,
            "confusion_share": confusion_share,
            "confusion_s": sum(spent),
            "early_stopped": bool(self.es.stopped_epoch > 0 or self.resume.stopped),
            "dropped": dict(self.dropped),
            "seeds": self.seeds(),
            "deterministic": self.deterministic,
        }
        write_json_atomic(out / "summary.json", summary)
        if confusion_share is not None:
            self.ctx.log(
                "info",
                f"per-epoch validation confusion matrix ({len(self.data.sample_labels)} images) "
                f"cost {confusion_share:.1%} of epoch time",
            )
        acc_text = ""
        if val_acc is not None:
            shown = {key.removeprefix("val_"): value for key, value in summary.items()}
            acc_text = ", " + metrics_mod.result_line("val", shown)
            acc_text += f" on {photos_files(summary['val_photos'], summary['val_files'])}"
        best_text = (
            f"best {tcfg.monitor} {es_state['best']:.4f} at epoch {best_epoch}" if best_epoch else "no best epoch"
        )
        lost = sum(self.dropped.values())
        lost_text = (
            f"; {display.counted(lost, 'image')} that no longer decode left out (named in the log)" if lost else ""
        )
        return StageResult(f"{len(history)} epochs, {best_text}{acc_text}{lost_text}", summary)
