"""Where Keras runs: GPU query, mixed-precision policy, distribution strategy, quiet end of data.

Shared by training and the prefilter, so both pick the same precision on the same GPU. TensorFlow
is imported only inside the functions that need it (and only on the TensorFlow backend).
"""

from __future__ import annotations

import contextlib
import warnings

import keras

from .errors import StageError


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


def distribution(mode: str):
    """A ``tf.distribute.MirroredStrategy`` for ``train.distribute``, or None for the default.

    ``auto`` mirrors over several GPUs when there are; ``mirrored`` mirrors over the GPUs, or over the
    logical CPU devices when there is no GPU (how the tests exercise it).
    """
    if mode == "none":
        return None
    if keras.backend.backend() != "tensorflow":
        if mode == "mirrored":
            raise StageError(
                "train.distribute: `mirrored` needs the TensorFlow Keras backend "
                f"(KERAS_BACKEND is {keras.backend.backend()})"
            )
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
