"""TensorBoard logs: the validation confusion matrix as an image with the class names on its axes, and
the learning rate logged once an epoch (by Keras's callback; not again by ours). A real tiny fit."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")
pytest.importorskip("tensorboard")

from carclf_core.callbacks import ConfusionCallback  # noqa: E402
from carclf_core.tensorboard_log import callbacks, confusion_image  # noqa: E402

NAMES = ["Audi_A4", "BMW_X5", "Volkswagen_Golf"]


def test_the_confusion_image_names_its_classes_on_both_axes() -> None:
    matrix = np.array([[5, 1, 0], [0, 4, 2], [1, 0, 6]])
    bare = confusion_image(matrix)
    named = confusion_image(matrix, NAMES)
    assert named.shape[0] > bare.shape[0] and named.shape[1] > bare.shape[1]  # room for the names
    h, w = bare.shape[:2]
    top, left = named.shape[0] - h, named.shape[1] - w
    assert (named[top:, left:] == bare).all()  # the matrix itself unchanged, at the bottom right
    cell = h // 3
    for i in range(3):  # a name beside each row and above each column: dark pixels in the margins
        assert (named[top + i * cell: top + (i + 1) * cell, :left] < 128).any()
        assert (named[:top, left + i * cell: left + (i + 1) * cell] < 128).any()
    other = confusion_image(matrix, ["Ford_F-150", "BMW_X5", "Volkswagen_Golf"])
    assert not (other == named).all()  # the names themselves are drawn
    big = confusion_image(np.random.default_rng(0).integers(0, 5, (300, 300)), [f"class {i}" for i in range(300)])
    assert max(big.shape[:2]) < 400  # 300 classes: numbered every few, the image stays small


def test_the_learning_rate_is_logged_once_and_the_matrix_with_its_names(tmp_path) -> None:
    rng = np.random.default_rng(0)
    x, labels = rng.normal(size=(24, 4)).astype("float32"), rng.integers(0, 3, 24)
    y = keras.utils.to_categorical(labels, 3)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
    confusion = ConfusionCallback(lambda event: None, x, labels, NAMES)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, validation_data=(x, y),
              callbacks=[confusion, *callbacks(tmp_path, confusion, lambda: False)])
    tags: dict[str, int] = {}
    images = []
    for path in tmp_path.rglob("events.out.tfevents.*"):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                tags[value.tag] = tags.get(value.tag, 0) + 1
                if value.tag.startswith("confusion matrix"):
                    images.append(tf.io.decode_png(tf.make_ndarray(value.tensor)[2]).numpy())
    assert {tag: n for tag, n in tags.items() if "learning_rate" in tag} == {"epoch_learning_rate": 2}
    assert len(images) == 2 and images[0].shape[:2] == confusion_image(confusion.last_matrix, NAMES).shape[:2]
