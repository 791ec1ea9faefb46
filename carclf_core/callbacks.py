"""Keras callbacks that turn a ``fit`` into events (the dashboard's live feed) and keep it resumable.

They never print. They run synchronously in the ``fit`` thread, so per-batch work is a clock read
and a comparison unless a throttled event is due. Epoch numbers in events are 1-based; Keras's are
0-based. Order in the callback list matters: :class:`StopOnCancel`, :class:`StopOnNonFiniteLoss` and
:class:`EventCallback` first, then :class:`ResumableEarlyStopping`, then :class:`PatienceReporter`,
:class:`ConfusionCallback` and :class:`CheckpointCallback`, which read what early stopping decided at
the same epoch end.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from .checkpoint import save_weights
from .events import BatchEnded, ConfusionReady, EpochEnded, EpochStarted, PatienceChanged, Sink
from .metrics import confusion_matrix
from .model import optimizer_state
from .runs import write_json_atomic


def _float_logs(logs: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in logs.items():
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            continue
    return out


class EventCallback(keras.callbacks.Callback):
    """Emit EpochStarted, throttled BatchEnded and EpochEnded (train + val metrics, LR, images/s, ETA).

    Args:
        emit: the event sink.
        batch_size: images a step (for images/s; the last batch may be smaller).
        steps: steps an epoch when known (tf.data with ``ignore_errors`` has unknown cardinality).
        train_images: images an epoch, caps the images/s count of the last step.
        batch_events_per_second: most BatchEnded events a second.
        total_epochs: the epochs of the whole run (both phases), for the run ETA.
        phase: ``warmup`` or ``finetune``, carried on EpochStarted.
        clock: a monotonic clock (tests may pass their own).
        skip: returns True when the ending epoch must not be reported (cut short by a cancel).
    """

    def __init__(
        self,
        emit: Sink,
        batch_size: int,
        steps: int | None,
        train_images: int | None,
        batch_events_per_second: float = 4.0,
        total_epochs: int | None = None,
        phase: str = "finetune",
        clock: Callable[[], float] = time.monotonic,
        skip: Callable[[], bool] = lambda: False,
    ):
        super().__init__()
        self.emit = emit
        self.skip = skip
        self.batch_size = batch_size
        self.steps = steps
        self.train_images = train_images
        self.min_interval = 1.0 / batch_events_per_second
        self.total_epochs = total_epochs
        self.phase = phase
        self.clock = clock
        self.epochs = total_epochs or 0
        self.epoch_durations: list[float] = []
        self._epoch = 0
        self._epoch_start = 0.0
        self._train_end: float | None = None
        self._last_batch_event = 0.0
        self._steps_done = 0
        self._lock = threading.Lock()

    def set_params(self, params):
        super().set_params(params)
        self.epochs = self.total_epochs or params.get("epochs") or 0
        if self.steps is None:
            self.steps = params.get("steps")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch + 1
        self._epoch_start = self.clock()
        self._train_end = None
        self._steps_done = 0
        self._last_batch_event = self._epoch_start
        self.emit(EpochStarted(epoch=self._epoch, epochs=self.epochs, steps=self.steps, phase=self.phase))

    # Keras may run batch-end hooks of async-safe callbacks on a worker thread, so the training loop
    # does not wait for the logs to be copied off the device every step; the lock keeps the step
    # counter and the throttle consistent, and Keras waits for all of them before on_epoch_end.
    async_safe = True

    def on_train_batch_end(self, batch, logs=None):
        with self._lock:
            self._steps_done = max(self._steps_done, batch + 1)
            now = self.clock()
            if now - self._last_batch_event < self.min_interval:
                return  # the hot path: one clock read and a comparison
            self._last_batch_event = now
            self._emit_batch(now, logs or {})

    def _emit_batch(self, now: float, logs) -> None:
        elapsed = max(now - self._epoch_start, 1e-9)
        rate = self._images_done() / elapsed
        eta = (self.steps - self._steps_done) * elapsed / self._steps_done if self.steps else None
        loss = logs.get("loss")
        acc = logs.get("categorical_accuracy")
        self.emit(
            BatchEnded(
                epoch=self._epoch,
                step=self._steps_done,
                steps=self.steps,
                loss=float(loss) if loss is not None else float("nan"),
                accuracy=float(acc) if acc is not None else None,
                images_per_s=rate,
                eta_s=eta,
            )
        )

    def on_test_begin(self, logs=None):
        # validation starts: the training part of the epoch is over (for images/s)
        if self._train_end is None:
            self._train_end = self.clock()

    def _images_done(self) -> int:
        done = self._steps_done * self.batch_size
        return min(done, self.train_images) if self.train_images else done

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        now = self.clock()
        duration = now - self._epoch_start
        train_time = max((self._train_end or now) - self._epoch_start, 1e-9)
        if self.steps is None:
            self.steps = self._steps_done  # cardinality is known after the first epoch
        if self.skip():
            return  # an epoch cut short by a cancel is not reported as finished
        self.epoch_durations.append(duration)
        recent = self.epoch_durations[-3:]
        eta = (self.epochs - self._epoch) * sum(recent) / len(recent) if self.epochs else None
        lr = None
        if self.model is not None and getattr(self.model, "optimizer", None) is not None:
            try:
                lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            except (TypeError, ValueError):
                lr = None
        self.emit(
            EpochEnded(
                epoch=self._epoch,
                epochs=self.epochs,
                metrics=_float_logs(logs),
                learning_rate=lr,
                duration_s=duration,
                images_per_s=self._images_done() / train_time,
                eta_s=eta,
            )
        )


class StopOnCancel(keras.callbacks.Callback):
    """Turn ``cancel`` (a threading.Event set by the SIGINT handler) into ``model.stop_training``.

    Checked at every batch end (a flag read), so a stop lands within one batch. Keras still runs the
    epoch's validation and ``on_epoch_end`` after the break; :attr:`cut_epoch` tells the checkpoint
    and event callbacks that this epoch is incomplete and must not be saved as finished.
    """

    async_safe = True  # it only reads an Event and sets flags the training loop polls

    def __init__(self, cancel: threading.Event):
        super().__init__()
        self.cancel = cancel
        self.cut_epoch: int | None = None
        """0-based epoch that was cut short by a cancel, if any."""
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if self.cancel.is_set():
            self.cut_epoch = epoch
            self.model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        if self.cancel.is_set():
            if self.cut_epoch is None:
                self.cut_epoch = self._epoch
            self.model.stop_training = True

    def on_test_batch_end(self, batch, logs=None):
        # skip the rest of the validation pass of an epoch that will not be kept anyway
        if self.cancel.is_set():
            if self.cut_epoch is None:
                self.cut_epoch = self._epoch  # validation cut short: the epoch is not complete
            self.model.stop_training = True
            self.model.stop_evaluating = True

    @property
    def cancelled(self) -> bool:
        return self.cut_epoch is not None


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop training at the first batch whose loss is NaN or infinite, and remember where.

    Keras's ``TerminateOnNaN`` only sets ``stop_training``: the fit then ends quietly and the epoch's
    end callbacks would checkpoint the diverged weights as a finished epoch. This one records the
    epoch and step (:attr:`found`) so the checkpoint and event callbacks skip the epoch (their
    ``skip``) and the stage can fail saying so; the last finished epoch's checkpoint and the best
    weights (of the last finite best) stay as they were.
    """

    async_safe = True  # it reads the logs Keras already copied off the device, and sets flags

    def __init__(self) -> None:
        super().__init__()
        self.found: tuple[int, int, float] | None = None
        """(1-based epoch, 1-based step, the loss) of the first non-finite loss, once seen."""
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if self.found is not None or loss is None:
            return
        value = float(loss)
        if not math.isfinite(value):
            self.found = (self._epoch + 1, batch + 1, value)
            self.model.stop_training = True

    def on_test_batch_end(self, batch, logs=None):
        if self.found is not None:  # the epoch will not be kept: its validation pass is wasted time
            self.model.stop_evaluating = True

    @property
    def cut_epoch(self) -> int | None:
        """0-based epoch the loss diverged in (it must not be saved as finished), if any."""
        return None if self.found is None else self.found[0] - 1


class DroppedImagesReporter(keras.callbacks.Callback):
    """Name the images the input pipelines dropped in an epoch (they failed to decode), each once.

    The pipelines skip a file that fails to decode rather than crash mid-epoch; each one's audit
    (``inputs.RowAudit``) records the rows delivered, and at the epoch's end the rows that never came
    are reported. Place it before EarlyStopping: ``stop_training`` already set at this epoch's end then
    means the pass was cut short (a stop, a divergence), and a cut pass proves nothing.

    Args:
        audits: split name -> an audit with ``start()``, ``seen`` and ``missing()``, fed by that
            split's pipeline.
        report: called with a split name and the rows newly found missing.
        skip: returns True when the ending epoch must not be judged (cut short by a cancel).
    """

    def __init__(
        self,
        audits: dict[str, Any],
        report: Callable[[str, list[int]], None],
        skip: Callable[[], bool] = lambda: False,
    ):
        super().__init__()
        self.audits = audits
        self.report = report
        self.skip = skip
        self.reported: dict[str, set[int]] = {split: set() for split in audits}

    def on_epoch_begin(self, epoch, logs=None):
        for audit in self.audits.values():
            audit.start()

    def on_epoch_end(self, epoch, logs=None):
        if self.skip() or self.model.stop_training:
            return
        for split, audit in self.audits.items():
            if not audit.seen.any():  # no pass over this split in this epoch (validation skipped)
                continue
            new = [int(row) for row in audit.missing() if int(row) not in self.reported[split]]
            if new:
                self.reported[split].update(new)
                self.report(split, new)


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Keras's own EarlyStopping, plus a state it starts from instead of zero (for ``--resume`` and
    for the second phase of a warm-up schedule). The stopping logic itself is Keras's, unchanged."""

    def __init__(self, *args, initial_state: dict[str, Any] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.initial_state = initial_state
        # Keras sets these in on_train_begin; a run with nothing left to fit never calls it, and its
        # state() must still answer
        self.wait, self.best_epoch, self.best_weights = 0, 0, None
        if initial_state:
            self._restore(initial_state)

    def _restore(self, s: dict[str, Any]) -> None:
        self.wait = int(s.get("wait", 0))
        self.best = s.get("best")
        self.best_epoch = int(s.get("best_epoch", 0))
        self.best_weights = s.get("best_weights")

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.initial_state:
            self._restore(self.initial_state)

    def state(self) -> dict[str, Any]:
        """wait, best and 0-based best_epoch (plain JSON values)."""
        best_value = getattr(self, "best", None)
        best = None if best_value is None else float(best_value)
        if best is not None and not math.isfinite(best):
            best = None
        return {
            "wait": int(self.wait),
            "best": best,
            "best_epoch": int(self.best_epoch),
            "patience": int(self.patience),
            "monitor": self.monitor,
        }


class PatienceReporter(keras.callbacks.Callback):
    """Emit PatienceChanged from an EarlyStopping placed *before* this callback in the list."""

    def __init__(
        self, emit: Sink, early_stopping: keras.callbacks.EarlyStopping, skip: Callable[[], bool] = lambda: False
    ):
        super().__init__()
        self.emit = emit
        self.early_stopping = early_stopping
        self.skip = skip

    def on_epoch_end(self, epoch, logs=None):
        if self.skip():
            return
        es = self.early_stopping
        best = None if es.best is None else float(es.best)
        if best is not None and not math.isfinite(best):
            best = None
        self.emit(
            PatienceChanged(
                epoch=epoch + 1,
                wait=int(es.wait),
                patience=int(es.patience),
                best=best,
                best_epoch=int(es.best_epoch) + 1 if best is not None else None,
                monitor=es.monitor,
            )
        )


class ConfusionCallback(keras.callbacks.Callback):
    """At each epoch end, predict a bounded validation sample and emit its ConfusionReady.

    Args:
        emit: the event sink.
        dataset: batches of (images, one-hot) of the sample, in a fixed order.
        labels: the sample's class indices, aligned with ``dataset``.
        classes: class names.
        skip: returns True when this epoch must not be reported (cut short by a cancel).
        best_epoch: the 0-based best epoch so far (early stopping's, decided before this callback);
            the matrix of that epoch is kept as ``best_matrix``, for the validation's balanced
            accuracy and per-class recall at the best epoch.
    """

    def __init__(
        self,
        emit: Sink,
        dataset,
        labels: np.ndarray,
        classes: Sequence[str],
        skip: Callable[[], bool] = lambda: False,
        best_epoch: Callable[[], int] | None = None,
    ):
        super().__init__()
        self.emit = emit
        self.dataset = dataset
        self.labels = np.asarray(labels)
        self.classes = tuple(classes)
        self.skip = skip
        self.durations: list[float] = []
        self.last_matrix: np.ndarray | None = None
        self.best_epoch = best_epoch
        self.best_matrix: np.ndarray | None = None
        """The matrix of the best epoch, when that epoch ran in this process (not before a resume)."""

    def on_epoch_end(self, epoch, logs=None):
        if self.skip() or len(self.labels) == 0:
            return
        started = time.monotonic()
        probs = self.model.predict(self.dataset, verbose=0)
        pred = np.argmax(probs, axis=1)
        n = min(len(pred), len(self.labels))
        matrix = confusion_matrix(self.labels[:n], pred[:n], len(self.classes))
        self.last_matrix = matrix
        if self.best_epoch is not None and self.best_epoch() == epoch:
            self.best_matrix = matrix
        duration = time.monotonic() - started
        self.durations.append(duration)
        self.emit(
            ConfusionReady.of(
                matrix,
                epoch=epoch + 1,
                classes=self.classes,
                split="val",
                sample=int(n),
                duration_s=duration,
            )
        )


class CheckpointCallback(keras.callbacks.Callback):
    """Save the last complete epoch (and the best weights so far) atomically, with the early-stopping
    state and the history, so ``--resume`` continues from the next epoch.

    Files in ``folder``: ``last_weights.npz`` (weights, valid in both phases), ``last_optimizer.npz``
    (the optimizer's variables, with ``save_full``), ``best_weights.npz`` (EarlyStopping's best
    weights), ``state.json`` (completed epochs, phase, early-stopping state, history). Each is written
    atomically.
    """

    def __init__(
        self,
        folder: Path,
        main_model: keras.Model,
        early_stopping: ResumableEarlyStopping,
        phase: str,
        history: list[dict[str, Any]],
        skip: Callable[[], bool] = lambda: False,
        save_full: bool = True,
        source: str = "",
    ):
        super().__init__()
        self.source = source
        """What the training data was (the split's fingerprint): a resume from another split is refused."""
        self.folder = Path(folder)
        self.main_model = main_model
        self.early_stopping = early_stopping
        self.phase = phase
        self.history: list[dict[str, Any]] = history
        self.skip = skip
        self.save_full = save_full
        self.durations: list[float] = []

    def on_epoch_end(self, epoch, logs=None):
        if self.skip():
            return
        started = time.monotonic()
        logs = logs or {}
        self.history.append({"epoch": epoch + 1, "phase": self.phase, **_float_logs(logs)})
        es = self.early_stopping
        if es.best_weights is not None and es.best_epoch == epoch:
            save_weights(self.folder / "best_weights.npz", es.best_weights)
        save_weights(self.folder / "last_weights.npz", self.main_model.get_weights())
        if self.save_full:
            save_weights(self.folder / "last_optimizer.npz", optimizer_state(self.model))
        write_json_atomic(
            self.folder / "state.json",
            {
                "completed_epochs": epoch + 1,
                "phase": self.phase,
                "early_stopping": es.state(),
                "history": self.history,
                "stopped": bool(self.model.stop_training),
                "source": self.source,
            },
        )
        self.durations.append(time.monotonic() - started)
