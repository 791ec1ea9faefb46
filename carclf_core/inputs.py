"""tf.data input pipelines: the only module of the pipeline that needs TensorFlow itself.

Images come out as float32 pixels in 0..255 at the configured size; scaling for a particular backbone
is done inside the model, so the exported model takes plain pixels. Training pipelines shuffle over
the whole split (every epoch anew) and augment a configured share of images, decided per image;
validation and test pipelines keep file order, so predictions line up with labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from .config import InputConfig

AUTOTUNE = tf.data.AUTOTUNE


def read_rgb(path: tf.Tensor) -> tf.Tensor:
    """Read and decode one image file (JPEG, PNG, GIF, BMP, WebP) into uint8 RGB, any size."""
    data = tf.io.read_file(path)
    image = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
    return tf.ensure_shape(image, [None, None, 3])


def decode_image(path: tf.Tensor, height: int, width: int, resize: str) -> tf.Tensor:
    """Read and decode one image file into float32 RGB ``height x width``."""
    image = tf.cast(read_rgb(path), tf.float32)
    if resize == "pad":
        image = tf.image.resize_with_pad(image, height, width)
    elif resize == "crop":
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        scale = tf.maximum(height / shape[0], width / shape[1])
        scaled = tf.cast(tf.math.ceil(shape * scale), tf.int32)
        image = tf.image.resize(image, scaled)
        image = tf.image.resize_with_crop_or_pad(image, height, width)
    else:
        image = tf.image.resize(image, (height, width))
    return tf.clip_by_value(image, 0.0, 255.0)


def augment(image: tf.Tensor, cfg: InputConfig) -> tf.Tensor:
    """Random flip, brightness and contrast on one 0..255 image."""
    image = tf.image.random_flip_left_right(image)
    if cfg.brightness > 0:
        image = tf.image.random_brightness(image, cfg.brightness * 255.0)
    if cfg.contrast > 0:
        image = tf.image.random_contrast(image, 1.0 - cfg.contrast, 1.0 + cfg.contrast)
    return tf.clip_by_value(image, 0.0, 255.0)


def maybe_augment(image: tf.Tensor, cfg: InputConfig) -> tuple[tf.Tensor, tf.Tensor]:
    """Augment with probability ``cfg.augment_share``, drawn for this image alone.

    (Drawing once in Python while building the pipeline, as the reference's snippet does, would
    augment every image or none.)

    Returns:
        The image and whether it was augmented.
    """
    apply = tf.random.uniform(()) < cfg.augment_share
    image = tf.cond(apply, lambda: augment(image, cfg), lambda: image)
    return image, apply


def make_dataset(
    paths: Sequence[str],
    labels: Sequence[int] | np.ndarray,
    num_classes: int,
    cfg: InputConfig,
    training: bool,
    seed: int | None = None,
    batch_size: int | None = None,
    with_augment_flags: bool = False,
) -> tf.data.Dataset:
    """Build the pipeline for one split.

    Args:
        paths: image files, in the split's saved order.
        labels: class indices into the saved class list, aligned with ``paths``.
        num_classes: length of the class list (one-hot depth).
        cfg: the ``input`` config section.
        training: shuffle every epoch and augment (train split); False keeps order (val, test).
        seed: shuffle seed, for reproducible epochs.
        batch_size: overrides ``cfg.batch_size`` (prediction may use larger batches).
        with_augment_flags: also yield the per-image augmentation decision (for tests and debugging).

    Returns:
        Batches of ``(images float32 [b, h, w, 3] in 0..255, one-hot float32 [b, num_classes])``.
        Files that fail to decode are dropped (``ignore_errors``); the index stage has already
        rejected every file it could not decode, so this only catches files changed since.
    """
    if len(paths) != len(labels):
        raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
    ds = tf.data.Dataset.from_tensor_slices(
        (tf.constant(list(paths), tf.string), tf.constant(np.asarray(labels, dtype=np.int32)))
    )
    parallel = cfg.decode_workers or AUTOTUNE
    buffer = cfg.shuffle_buffer or max(len(paths), 1)

    def load(path, label):
        image = decode_image(path, cfg.height, cfg.width, cfg.resize)
        return image, tf.one_hot(label, num_classes, dtype=tf.float32)

    if training and not cfg.cache:
        # shuffling file names is cheap, so the buffer can hold the whole split
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(load, num_parallel_calls=parallel, deterministic=not training)
    ds = ds.ignore_errors()
    if cfg.cache:
        ds = ds.cache()
        if training:
            ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if training and cfg.augment:

        def aug(image, label):
            image, applied = maybe_augment(image, cfg)
            return (image, label, applied) if with_augment_flags else (image, label)

        ds = ds.map(aug, num_parallel_calls=parallel, deterministic=False)
    elif with_augment_flags:
        ds = ds.map(lambda image, label: (image, label, tf.constant(False)))
    ds = ds.batch(batch_size or cfg.batch_size)
    return ds.prefetch(AUTOTUNE)


def decode_prefilter_image(path: tf.Tensor, size: int, resize: str) -> tf.Tensor:
    """Read one image into uint8 RGB ``size x size`` for an ImageNet classifier.

    ``crop_or_pad`` centre-crops or zero-pads without scaling, as the reference's prefilter does
    (``tf.image.resize_with_crop_or_pad``); ``pad`` scales the whole picture to fit, keeping its
    aspect, and pads the rest. uint8 keeps batches four times smaller than float32; each model
    applies its own preprocessing.
    """
    image = read_rgb(path)
    if resize == "crop_or_pad":
        return tf.image.resize_with_crop_or_pad(image, size, size)
    if resize == "pad":
        scaled = tf.image.resize_with_pad(tf.cast(image, tf.float32), size, size)
        return tf.cast(tf.clip_by_value(tf.round(scaled), 0.0, 255.0), tf.uint8)
    raise ValueError(f"prefilter.resize: expected crop_or_pad or pad, got {resize!r}")


def make_prefilter_dataset(
    paths: Sequence[str],
    size: int,
    resize: str,
    batch_size: int,
    decode_workers: int = 0,
) -> tf.data.Dataset:
    """Batches for the prefilter: parallel decode, file order kept, broken files dropped.

    Args:
        paths: image files (absolute, or relative to the working directory).
        size: square side the classifier takes, in pixels.
        resize: ``crop_or_pad`` or ``pad`` (see :func:`decode_prefilter_image`).
        batch_size: images a batch.
        decode_workers: parallel decode calls; 0 lets tf.data tune it.

    Returns:
        Batches of ``(images uint8 [b, size, size, 3], rows int64 [b])`` where ``rows`` are positions
        in ``paths``. A file that cannot be read or decoded is skipped (``ignore_errors``), so the
        caller finds it as a missing row and can name it.
    """
    rows = tf.data.Dataset.range(len(paths))
    files = tf.data.Dataset.from_tensor_slices(tf.constant(list(paths), tf.string))
    ds = tf.data.Dataset.zip((files, rows))
    ds = ds.map(
        lambda path, row: (decode_prefilter_image(path, size, resize), row),
        num_parallel_calls=decode_workers or AUTOTUNE,
        deterministic=True,
    )
    ds = ds.ignore_errors()
    return ds.batch(batch_size).prefetch(AUTOTUNE)
