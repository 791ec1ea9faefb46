"""Training on several machines: what keeps their ``fit`` calls in step, and what a lost machine means.

``tf.distribute.MultiWorkerMirroredStrategy`` keeps the weights in step by all-reducing each step's
gradients; every collective operation must be entered by every machine in the same order, or they
wait on each other until ``train.worker_timeout_s``. So everything one machine alone decides must be
agreed on at the same step: a stop (Ctrl-C or the dashboard's ``s`` on any machine stops them all at
one batch, :class:`ClusterSync`), and the point training resumes from (:func:`check_same_start`).
A machine that dies surfaces as a TensorFlow error on the others; :func:`lost_machine` turns it into
one line naming the machine and what to do.

TensorFlow is imported inside the functions only (this module is only used by the train stage).
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from .cluster import Cluster
from .errors import StageError
from .events import LogLine, Sink, WorkersReport

AGREE_EVERY_STEPS = 4
"""Steps between two agreements on a stop. One costs about 2 ms (measured: two CPU processes on one
machine; mostly TensorFlow's call overhead), so every 4th step keeps it under 1 % of a GPU step of
60 ms, and a stop lands within 4 steps."""


@functools.cache
def _summer(strategy: Any):
    """The sum over machines as a tf.function of the strategy (traced once, on every machine at the
    same call: eagerly, each call costs about six times as much)."""
    import tensorflow as tf

    local = len(strategy.extended.worker_devices)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float64)])
    def summed(vector):
        # every local replica adds its share, so each machine counts once however many devices it has
        per_replica = strategy.run(lambda v: v / local, args=(vector,))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    return summed


def sum_over_workers(strategy: Any, vector: Sequence[float], timeout_s: float | None = None) -> np.ndarray:
    """The element-wise sum of ``vector`` over the machines (each machine's once, however many devices
    it has). A collective: every machine must call it at the same point.

    Args:
        strategy: the multi-worker strategy.
        vector: this machine's numbers.
        timeout_s: longest wait for the other machines; None: the strategy's own (``train.worker_timeout_s``).
    """
    import tensorflow as tf

    values = tf.constant(np.asarray(vector, dtype=np.float64))
    if timeout_s is None:
        return np.asarray(_summer(strategy)(values), dtype=np.float64)
    local = len(strategy.extended.worker_devices)
    total = strategy.extended.reduce_to(
        tf.distribute.ReduceOp.SUM,
        strategy.run(lambda: values / local),
        destinations=strategy.extended.worker_devices[0],
        options=tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout_s),
    )
    return np.asarray(total, dtype=np.float64)


def gather(strategy: Any, cluster: Cluster, values: Sequence[float], timeout_s: float | None = None) -> np.ndarray:
    """Every machine's ``values``, as a ``[machines, len(values)]`` array, on every machine (a collective)."""
    table = np.zeros((cluster.size, len(values)))
    table[cluster.rank] = values
    return sum_over_workers(strategy, table.ravel().tolist(), timeout_s).reshape(table.shape)


def wait_for_all(strategy: Any, cluster: Cluster, wait_s: float, emit: Sink) -> None:
    """Wait until every machine reaches this point, at most ``wait_s`` seconds.

    The workers wait here for the chief to finish the stages before training and to prepare the
    train folder (so they read the checkpoint it will train from); all machines start training
    together.

    Raises:
        StageError: a machine did not arrive within ``wait_s``, naming ``train.cluster_wait_s``.
    """
    import tensorflow as tf

    waiting_for = "the chief" if not cluster.chief else "the workers"
    emit_log(emit, f"waiting for {waiting_for} (at most {wait_s:g} s, train.cluster_wait_s)")
    started = time.monotonic()
    try:
        gather(strategy, cluster, [1.0], timeout_s=wait_s)
    except tf.errors.DeadlineExceededError as exc:
        raise StageError(
            f"{waiting_for} did not reach training within {wait_s:g} s (train.cluster_wait_s)",
            "start `carclf-tui --resume RUN --stage train` on every machine TF_CONFIG lists, or raise "
            "train.cluster_wait_s",
        ) from exc
    emit_log(emit, f"all {cluster.size} machines ready after {time.monotonic() - started:.1f} s")


def emit_log(emit: Sink, message: str, level: str = "info") -> None:
    emit(LogLine(level=level, message=message, stage="train"))


def check_same_start(strategy: Any, cluster: Cluster, facts: dict[str, float]) -> None:
    """Refuse to train when the machines would start from different points (a collective).

    Every machine reads the split and the resume point from the run folder itself; when that is not
    the same shared folder everywhere (a stale copy, another run), their weights would silently stay
    apart (each applies the same all-reduced update to its own weights). So the stage compares what
    each machine read: the epochs done, the split's fingerprint, a checksum of the weights.

    Args:
        strategy: the multi-worker strategy.
        cluster: the machines.
        facts: name -> this machine's number (exact in float64), the same names on every machine.

    Raises:
        StageError: naming the first machine that differs from the chief, and in what.
    """
    names = list(facts)
    table = gather(strategy, cluster, [float(facts[name]) for name in names])
    for rank in range(1, cluster.size):
        for j, name in enumerate(names):
            mine, chief = table[rank, j], table[0, j]
            if not np.isclose(mine, chief, rtol=1e-9, atol=1e-9):
                raise StageError(
                    f"{cluster.name(rank)} read another {name} than the chief ({mine:.12g}, the chief {chief:.12g})",
                    "every machine must read the same run folder: a shared folder, given to --resume on each",
                )


_TASK = re.compile(r"/job:(\w+)/replica:\d+/task:(\d+)")


def lost_machine(exc: BaseException, cluster: Cluster, finished: int) -> StageError | None:
    """The words for a collective that failed because a machine died, hung or became unreachable.

    Args:
        exc: what ``fit`` raised.
        cluster: the machines.
        finished: the last epoch finished (checkpointed, on the chief); 0 for none.

    Returns:
        A StageError naming the machine (when TensorFlow says which) and how to resume, or None
        when ``exc`` is not such a failure.
    """
    import tensorflow as tf

    lost = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError)
    if not isinstance(exc, lost) and not (
        isinstance(exc, tf.errors.OpError) and "Collective ops is aborted" in str(exc)
    ):
        return None
    text = str(exc)
    others = {int(task) for job, task in _TASK.findall(text) if job in ("worker", "chief")} - {cluster.rank}
    who = ", ".join(cluster.name(rank) for rank in sorted(others)) if others else "another machine"
    how = (
        "did not answer within train.worker_timeout_s"
        if isinstance(exc, tf.errors.DeadlineExceededError)
        else "stopped answering (killed, crashed or unreachable)"
    )
    kept = f"the checkpoint of epoch {finished} is kept" if finished else "no epoch had finished"
    return StageError(
        f"{who} {how} after epoch {finished}: training stopped on {cluster.name()}",
        f"{kept}; start the machines again and run `carclf-tui --resume RUN --stage train` on each "
        "(any number of workers: TF_CONFIG says how many)",
    )


class ClusterSync(keras.callbacks.Callback):
    """Keep what one machine alone knows in step on all of them, and report each one's throughput.

    * A stop asked on any machine (``cancel``: SIGINT, SIGTERM, the dashboard's ``s``) is agreed on
      every :data:`AGREE_EVERY_STEPS` batches (one small all-reduce), and only then set in ``agreed``, which the
      :class:`~carclf_core.callbacks.StopOnCancel` of every machine watches: they all stop at the
      same batch, so none is left waiting in a collective the others never enter.
    * At each epoch end every machine's own training throughput is gathered and emitted as a
      :class:`~carclf_core.events.WorkersReport` (the chief's goes into the run's event log).

    Place it first in the callback list; it must run on the main thread (not ``async_safe``), so
    its collectives come in the same order on every machine.

    Args:
        strategy: the multi-worker strategy.
        cluster: the machines, and this one's rank.
        cancel: this machine's own stop request.
        agreed: set when any machine asked to stop, at the same batch on all of them.
        emit: the event sink.
        batch_size: images a step on this machine.
        images: training images on this machine (its share).
        global_batch: images a step over all machines.
        learning_rate: the learning rate used (scaled for the global batch).
        reason: called with the words for a stop that came from another machine.
    """

    def __init__(
        self,
        strategy: Any,
        cluster: Cluster,
        cancel: threading.Event,
        agreed: threading.Event,
        emit: Sink,
        batch_size: int,
        images: int,
        global_batch: int,
        learning_rate: float,
        reason: Any = None,
    ):
        super().__init__()
        self.strategy, self.cluster = strategy, cluster
        self.cancel, self.agreed = cancel, agreed
        self.emit = emit
        self.batch_size, self.images = batch_size, images
        self.global_batch, self.learning_rate = global_batch, learning_rate
        self.reason = reason
        self.epoch = 0
        """The 1-based epoch running (or last run)."""
        self._started = 0.0
        self._train_end: float | None = None
        self._steps = 0

    def report(self, epoch: int = 0, rates: Sequence[float | None] = ()) -> None:
        self.emit(
            WorkersReport(
                workers=self.cluster.workers,
                images_per_s=tuple(rates),
                epoch=epoch,
                global_batch=self.global_batch,
                learning_rate=self.learning_rate,
            )
        )

    def _agree_on_stop(self) -> None:
        if self.agreed.is_set():
            return  # set on every machine at the same batch: none calls the collective any more
        asked = sum_over_workers(self.strategy, [1.0 if self.cancel.is_set() else 0.0])[0]
        if asked > 0:
            if not self.cancel.is_set() and self.reason is not None:
                self.reason("stop requested on another machine")
            self.agreed.set()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch + 1
        self._started, self._train_end, self._steps = time.monotonic(), None, 0
        self._agree_on_stop()

    def on_train_batch_end(self, batch, logs=None):
        self._steps = batch + 1
        if self._steps % AGREE_EVERY_STEPS == 0:
            self._agree_on_stop()

    def on_test_begin(self, logs=None):
        if self._train_end is None:
            self._train_end = time.monotonic()

    def on_test_batch_end(self, batch, logs=None):
        if (batch + 1) % AGREE_EVERY_STEPS == 0:
            self._agree_on_stop()

    def on_epoch_end(self, epoch, logs=None):
        if self.agreed.is_set():
            return  # a cut epoch is not reported, on any machine
        seconds = max((self._train_end or time.monotonic()) - self._started, 1e-9)
        rate = min(self._steps * self.batch_size, self.images) / seconds
        rates = gather(self.strategy, self.cluster, [rate])[:, 0]
        self.report(epoch + 1, [float(r) for r in rates])
