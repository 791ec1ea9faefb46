"""Where Keras runs: GPU query, mixed-precision policy, distribution strategy (one machine or several),
learning-rate scaling for a global batch, quiet end of data.

Shared by training and the prefilter, so both pick the same precision on the same GPU. TensorFlow
is imported only inside the functions that need it (and only on the TensorFlow backend).
"""

from __future__ import annotations

import contextlib
import functools
import math
import signal
import threading
import warnings

import keras

from .cluster import Cluster, multi_worker_wanted
from .config import TrainConfig
from .errors import ConfigError, StageError


def gpu_info() -> tuple[int, int]:
    """(number of GPUs, lowest compute-capability major) for the active Keras backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        majors = []
        for gpu in gpus:
            with contextlib.suppress(Exception):
                majors.append(int(tf.config.experimental.get_device_details(gpu).get("compute_capability", (0,))[0]))
        return len(gpus), min(majors) if majors else 0
    if backend == "jax":
        import jax

        return len([d for d in jax.devices() if d.platform == "gpu"]), 8
    return 0, 0


def mixed_policy(mode: str, gpus: int, cc_major: int) -> str:
    """The Keras dtype policy for ``train.mixed_precision``: bfloat16 on Ampere and newer, float16
    (with Keras's automatic loss scaling) on older GPUs, float32 on CPU or when off."""
    if mode == "off" or (mode == "auto" and gpus == 0):
        return "float32"
    return "mixed_bfloat16" if cc_major >= 8 or gpus == 0 else "mixed_float16"


def distribution(tcfg: TrainConfig, cluster: Cluster | None = None):
    """The ``tf.distribute`` strategy for ``train.distribute``, or None for the default.

    ``auto`` trains over several machines when ``TF_CONFIG`` lists more than one, else mirrors over
    several GPUs when there are; ``mirrored`` mirrors over the GPUs, or over the logical CPU devices
    when there is no GPU (how the tests exercise it); ``multi_worker`` needs ``TF_CONFIG``.

    Raises:
        ConfigError: ``multi_worker`` without ``TF_CONFIG``.
        StageError: a strategy on a backend other than TensorFlow, or one that cannot start (see
            :func:`multi_worker_strategy`).
    """
    mode = tcfg.distribute
    if mode == "none":
        return None
    if multi_worker_wanted(mode, cluster):
        if cluster is None:
            raise ConfigError(
                "train.distribute",
                "multi_worker needs the environment variable TF_CONFIG naming the machines",
                "see README, Training on several machines",
            )
        _need_tensorflow_backend(mode)
        return multi_worker_strategy(cluster, tcfg.worker_timeout_s, tcfg.cluster_wait_s)
    if keras.backend.backend() != "tensorflow":
        if mode == "mirrored":
            _need_tensorflow_backend(mode)
        return None
    import tensorflow as tf

    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if mode == "auto":
        return tf.distribute.MirroredStrategy(gpus) if len(gpus) > 1 else None
    devices = gpus or [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)


def whole_batches(dataset, batch_size: int, own_share: bool = False):
    """A tf.data pipeline for a fit over several machines that never hands a machine a short batch.

    TensorFlow splits a short last batch between the machines in order, so a machine may get an
    empty one, which Keras 3's steps cannot take (a shape error in the first BatchNormalization);
    here every batch is whole (a last partial one is left out: the training shares and the
    confusion sample are padded to whole batches beforehand, so only validation loses images).

    Args:
        dataset: batches of ``batch_size`` (the global batch), as ``inputs.make_dataset`` makes them.
        batch_size: the global batch.
        own_share: the pipeline holds this machine's own share of the data (training): it repeats,
            its epochs counted in steps, and the strategy is told not to shard it again (it would
            decode every file on every machine and keep its N-th). Otherwise each machine takes its
            part of every batch.
    """
    import tensorflow as tf

    if own_share:
        dataset = dataset.repeat()
    dataset = dataset.unbatch().batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    if own_share:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        dataset = dataset.with_options(options)
    return dataset


def _need_tensorflow_backend(mode: str) -> None:
    if keras.backend.backend() != "tensorflow":
        backend = keras.backend.backend()
        raise StageError(f"train.distribute: `{mode}` needs the TensorFlow Keras backend (KERAS_BACKEND is {backend})")


def lr_scale(rule: str, machines: int) -> float:
    """The factor ``train.lr_scaling`` puts on the learning rate for a global batch ``machines`` times
    one machine's: ``linear`` (Goyal et al. 2017, for SGD), ``sqrt`` (the rule for Adam: Malladi et
    al. 2022), ``none``."""
    return {"linear": float(machines), "sqrt": math.sqrt(machines)}.get(rule, 1.0)


def _bound_the_start(wait_s: float) -> None:
    """Make TensorFlow give up on machines that have not started within ``wait_s`` seconds.

    By default it waits for every machine of ``TF_CONFIG`` to register for an hour, deaf to Ctrl-C
    (it holds the process in C++ while it waits). This sets up its coordination service as
    ``MultiWorkerMirroredStrategy`` itself would (which then leaves it as it is), plus a registration
    deadline. Private TensorFlow modules: if they moved, TensorFlow's own setup (and wait) is kept.
    """
    try:
        from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
        from tensorflow.python.distribute import multi_worker_util
        from tensorflow.python.distribute.cluster_resolver import TFConfigClusterResolver
        from tensorflow.python.eager import context
    except ImportError:
        return
    if context.context().coordination_service is not None:
        return
    spec = TFConfigClusterResolver().cluster_spec()
    jobs = [
        coordination_config_pb2.CoordinatedJob(name=job, num_tasks=spec.num_tasks(job))
        for job in ("chief", "worker")
        if job in spec.jobs
    ]
    context.context().configure_coordination_service(
        service_type="standalone",
        service_leader=multi_worker_util.coordination_leader(spec),
        coordinated_jobs=jobs,
        cluster_register_timeout_in_ms=int(wait_s * 1000),
    )
    # the deadline holds only for a registration that waits at a barrier
    context.context().coordination_service.cluster_register_with_barrier = True


@functools.cache
def multi_worker_strategy(cluster: Cluster, timeout_s: float, wait_s: float):
    """The process's ``MultiWorkerMirroredStrategy`` (created once: TensorFlow configures collective
    operations once a process, before its first TensorFlow operation). It returns once every
    machine ``TF_CONFIG`` lists has started (TensorFlow logs the ones it waits for), at most
    ``wait_s`` seconds.

    Keras 3 reduces a whole ``(x, y)`` batch structure, and scalar losses along ``axis=0``, through
    ``strategy.reduce``, which this strategy only takes leaf by leaf and along an axis the value has
    (keras-team/keras#20585: ``fit`` fails at its first step); the subclass does exactly that and
    nothing else.

    Args:
        cluster: the machines (TensorFlow reads the same ``TF_CONFIG`` itself).
        timeout_s: longest any collective waits for another machine (``train.worker_timeout_s``).
        wait_s: longest wait for every machine to start (``train.cluster_wait_s``).

    Raises:
        StageError: TensorFlow already ran in this process, or a machine did not start in time.
    """
    import tensorflow as tf

    class KerasMultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis=None):
            def leaf(v):
                rank = self.experimental_local_results(v)[0].shape.rank
                return super(KerasMultiWorkerStrategy, self).reduce(reduce_op, v, axis if rank else None)

            return tf.nest.map_structure(leaf, value)

    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        _bound_the_start(wait_s)
        strategy = KerasMultiWorkerStrategy(
            communication_options=tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout_s)
        )
    except RuntimeError as exc:
        if "startup" in str(exc):
            raise StageError(
                "train.distribute: multi-worker training must be the first TensorFlow work of its process "
                f"({cluster.name()})",
                "run the stages before train first, then `carclf-tui --resume RUN --stage train` on every machine",
            ) from exc
        raise
    except tf.errors.DeadlineExceededError as exc:
        raise StageError(
            f"not every machine TF_CONFIG lists started within {wait_s:g} s (train.cluster_wait_s): "
            + ", ".join(cluster.name(rank) for rank in range(cluster.size)),
            "start `carclf-tui --resume RUN --stage train` with its TF_CONFIG on each (TensorFlow's log above "
            "names the ones it waited for)",
        ) from exc
    if sigterm is not None and threading.current_thread() is threading.main_thread():
        # TensorFlow's coordination agent takes SIGTERM over (to note a preemption) and the process
        # then ignores it: give it back to the runner's stop handler (or the default, ending it)
        signal.signal(signal.SIGTERM, sigterm)
    return strategy


@contextlib.contextmanager
def quiet_end_of_data():
    """Silence Keras's "input ran out of data" warning at each epoch end: the pipelines drop
    undecodable files (``ignore_errors``), so their length is unknown and the end is found by
    running out, which is expected here, not a mistake."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        yield


@contextlib.contextmanager
def op_determinism(on: bool):
    """TensorFlow's op determinism (``tf.config.experimental.enable_op_determinism``) while inside,
    the earlier setting restored on the way out (it is process-wide: a test process or a notebook
    goes on as it was). Yields whether it is on.

    With it, every op gives the same output for the same input on the same machine (an op without a
    deterministic kernel raises instead of answering differently), and tf.data keeps element order.
    Nothing to do on other backends: JAX and PyTorch on the CPU are deterministic already.
    """
    if not on or keras.backend.backend() != "tensorflow":
        yield False
        return
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config  # the setting's reader and its undo

    was = tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    try:
        yield True
    finally:
        if not was:
            tf_config.disable_op_determinism()
