"""TensorBoard logs of a training run, so ``tensorboard --logdir runs/`` compares runs side by side.

Keras's own ``TensorBoard`` callback writes the per-epoch scalars; :class:`TensorBoardExtras` adds
the learning rate and the validation confusion matrix as an image. TensorFlow's summary writer is
the only way to write these files, so this module is used on the TensorFlow backend only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from .callbacks import ConfusionCallback

CONFUSION_IMAGE_SIDE = 256
"""Smallest side of the confusion image in pixels (a class gets a square of pixels)."""


def confusion_image(matrix: np.ndarray) -> np.ndarray:
    """Rows as shares of each true class, white (0) to dark blue (1), as uint8 RGB ``[h, w, 3]``."""
    m = np.asarray(matrix, dtype=np.float64)
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    scale = max(1, CONFUSION_IMAGE_SIDE // max(1, len(m)))
    cells = np.kron(share, np.ones((scale, scale)))
    white, blue = np.array([255.0, 255.0, 255.0]), np.array([8.0, 48.0, 107.0])
    return (white * (1 - cells[..., None]) + blue * cells[..., None]).astype(np.uint8)


class TensorBoardExtras(keras.callbacks.Callback):
    """At each finished epoch: the learning rate and the latest validation confusion matrix.

    Place it after the :class:`~carclf_core.callbacks.ConfusionCallback` it reads.
    """

    def __init__(self, log_dir: Path, confusion: ConfusionCallback, skip: Callable[[], bool] = lambda: False):
        super().__init__()
        import tensorflow as tf

        self.writer = tf.summary.create_file_writer(str(Path(log_dir) / "validation"))
        self.confusion = confusion
        self.skip = skip

    def on_epoch_end(self, epoch, logs=None):
        if self.skip():
            return
        import tensorflow as tf

        with self.writer.as_default():
            optimizer = getattr(self.model, "optimizer", None)
            if optimizer is not None:
                lr = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
                tf.summary.scalar("learning_rate", lr, step=epoch)
            if self.confusion.last_matrix is not None:
                image = confusion_image(self.confusion.last_matrix)
                tf.summary.image(
                    "confusion matrix (validation sample, share of each true class)", image[None], step=epoch
                )
        self.writer.flush()

    def on_train_end(self, logs=None):
        self.writer.close()


def callbacks(log_dir: Path, confusion: ConfusionCallback, skip: Callable[[], bool]) -> list[keras.callbacks.Callback]:
    """Keras's TensorBoard callback (epoch scalars, no graph, no profiling) and the extras."""
    return [
        keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False, update_freq="epoch", profile_batch=0),
        TensorBoardExtras(log_dir, confusion, skip),
    ]
