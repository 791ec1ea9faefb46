"""TensorBoard logs of a training run, so ``tensorboard --logdir runs/`` compares runs side by side.

Keras's own ``TensorBoard`` callback writes the per-epoch scalars, the learning rate among them
(``epoch_learning_rate``: written once, there); :class:`TensorBoardExtras` adds the validation
confusion matrix as an image with the class names on its axes. TensorFlow's summary writer is the
only way to write these files, so this module is used on the TensorFlow backend only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np

from .callbacks import ConfusionCallback
from .display import printable

CONFUSION_IMAGE_SIDE = 256
"""Smallest side of the confusion image in pixels (a class gets a square of pixels)."""
LABEL_PX = 11
"""Height of a line of the default bitmap font: a class's name is written where its cell is this high;
in a bigger matrix every k-th class is, by its number in ``split/classes.json`` (1-based)."""
NAME_CHARS = 24
"""Most characters of a class name on an axis (the end cut, ``...``)."""


def confusion_image(matrix: np.ndarray, classes: Sequence[str] = ()) -> np.ndarray:
    """Rows as shares of each true class, white (0) to dark blue (1), as uint8 RGB ``[h, w, 3]``, with
    the class names on the axes (true down the left, predicted along the top) when ``classes`` are
    given."""
    m = np.asarray(matrix, dtype=np.float64)
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    scale = max(1, CONFUSION_IMAGE_SIDE // max(1, len(m)))
    cells = np.kron(share, np.ones((scale, scale)))
    white, blue = np.array([255.0, 255.0, 255.0]), np.array([8.0, 48.0, 107.0])
    grid = (white * (1 - cells[..., None]) + blue * cells[..., None]).astype(np.uint8)
    if not len(classes):
        return grid
    return _labelled(grid, [printable(name) for name in classes], scale)


def _labelled(grid: np.ndarray, names: list[str], cell: int) -> np.ndarray:
    from PIL import Image, ImageDraw

    step = max(1, -(-LABEL_PX // cell))  # label every step-th class so the lines do not overlap
    labels = {i: (names[i] if step == 1 else str(i + 1)) for i in range(0, len(names), step)}
    # ASCII marks: the default bitmap font has no arrows or ellipsis
    labels = {i: text if len(text) <= NAME_CHARS else text[: NAME_CHARS - 3] + "..." for i, text in labels.items()}
    h, w = grid.shape[:2]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    widths = {i: int(measure.textlength(text)) + 1 for i, text in labels.items()}
    margin = max(widths.values()) + 8
    canvas = Image.new("RGB", (margin + w, margin + LABEL_PX + h), (255, 255, 255))
    canvas.paste(Image.fromarray(grid), (margin, margin + LABEL_PX))
    draw = ImageDraw.Draw(canvas)
    draw.text((margin, 0), "predicted", fill=(0, 0, 0))
    draw.text((2, margin + LABEL_PX - 12), "true", fill=(0, 0, 0))
    top = Image.new("RGB", (margin, w), (255, 255, 255))  # the predicted names, drawn across, then turned
    across = ImageDraw.Draw(top)
    for i, text in labels.items():
        y = margin + LABEL_PX + i * cell + (cell - LABEL_PX) // 2
        draw.text((margin - 4 - widths[i], y), text, fill=(0, 0, 0))
        across.text((4, i * cell + (cell - LABEL_PX) // 2), text, fill=(0, 0, 0))  # turned: read upwards
    canvas.paste(top.rotate(90, expand=True), (margin, LABEL_PX))
    return np.asarray(canvas)


class TensorBoardExtras(keras.callbacks.Callback):
    """At each finished epoch: the latest validation confusion matrix, its class names on its axes.

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
            # the learning rate is Keras's TensorBoard callback's to log (epoch_learning_rate): once
            if self.confusion.last_matrix is not None:
                image = confusion_image(self.confusion.last_matrix, self.confusion.classes)
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
