"""tf.data input pipelines: the only module of the pipeline that needs TensorFlow itself.

Images come out as float32 pixels in 0..255 at the configured size; scaling for a particular backbone
is done inside the model, so the exported model takes plain pixels. Training pipelines shuffle over
the whole split (every epoch anew) and augment a configured share of images, decided per image;
both follow the seed, so a new pipeline with the same seed repeats the same epochs. Validation and
test pipelines keep file order, so predictions line up with labels. Every image is turned upright by
its EXIF orientation, as :func:`carclf_core.images.read_image` does in Python. Decoding and resizing
follow the steps the export's contract states for clients (:func:`carclf_core.export.preparation`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
import tensorflow as tf

from .config import InputConfig
from .imagegate import admitted
from .images import ANTIALIAS_SHRINK, orientation_of_file, orientations

AUTOTUNE = tf.data.AUTOTUNE
CENTER_CROP = 0.875
"""Share of the shorter side the prefilter's ``center_crop`` keeps: the ImageNet evaluation recipe
(resize to 256, crop 224) that ResNet and EfficientNet report their accuracy with."""
JPEG_DCT = "INTEGER_ACCURATE"
"""libjpeg's accurate integer inverse DCT (``JDCT_ISLOW``): what Pillow and most libjpeg clients decode
with. Measured on scikit-image's photos saved as JPEG at three sizes, two qualities and chroma
subsamplings (``bench/bench_contract.py``): 0 levels apart from Pillow, where TensorFlow's own default
(the fast DCT) was up to 7 levels off."""


def apply_orientation(image: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
    """Turn an ``[h, w, c]`` image upright for EXIF ``orientation`` (Pillow's ``exif_transpose``).

    Every orientation is an optional transpose followed by optional flips: 5-8 transpose; then 2, 3,
    6, 7 flip left-right and 3, 4, 7, 8 flip top-bottom. An upright image (1) is passed through.
    """

    def turn() -> tf.Tensor:
        perm = tf.where(orientation >= 5, tf.constant([1, 0, 2]), tf.constant([0, 1, 2]))
        flip_rows = tf.reduce_any(tf.equal(orientation, [3, 4, 7, 8]))
        flip_columns = tf.reduce_any(tf.equal(orientation, [2, 3, 6, 7]))
        axes = tf.boolean_mask(tf.constant([0, 1]), tf.stack([flip_rows, flip_columns]))
        return tf.reverse(tf.transpose(image, perm), axes)

    return tf.cond(tf.equal(orientation, 1), lambda: image, turn)


def _orientation_of(path: tf.Tensor) -> tf.Tensor:
    """The file's EXIF orientation through Python (a single image's read, not a pipeline's)."""
    turn = tf.py_function(lambda p: orientation_of_file(os.fsdecode(p.numpy())), [path], tf.int32)
    return tf.reshape(turn, [])


Orientation: TypeAlias = "tf.Tensor | int | None"
"""A file's EXIF orientation for the readers: a tensor, a Python int when the pipeline knows it for
every file (1: all upright, and no op is added for it), or None to read it from the file."""


def read_rgb(path: tf.Tensor, orientation: Orientation = None) -> tf.Tensor:
    """Read and decode one image file (JPEG, PNG, GIF, BMP, WebP) into uint8 RGB, any size, upright.

    Args:
        path: the file.
        orientation: its EXIF orientation. Pipelines pass it, read for all their files when they are
            built (:func:`carclf_core.images.orientations`: parsing EXIF with graph ops cost more
            than the decode); without it, it is read from the file in Python.
    """
    if orientation is None:
        orientation = _orientation_of(path)
    data = tf.io.read_file(path)
    image = tf.cond(
        tf.io.is_jpeg(data),
        lambda: tf.io.decode_jpeg(data, channels=3, dct_method=JPEG_DCT),
        lambda: tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8),
    )
    image = tf.ensure_shape(image, [None, None, 3])
    return image if isinstance(orientation, int) and orientation == 1 else apply_orientation(image, orientation)


def _resize(image: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    """Bilinear resize of a float ``[h, w, c]`` image to ``size`` (half-pixel centres, edges clamped),
    antialiased (the bilinear kernel widened by the shrink factor, as Pillow's ``BILINEAR`` resize
    does) when a side shrinks more than :data:`ANTIALIAS_SHRINK` times."""
    source = tf.shape(image)[:2]
    target = tf.cast(size, tf.int32)
    return tf.cond(
        tf.reduce_any(ANTIALIAS_SHRINK * target < source),
        lambda: tf.image.resize(image, target, antialias=True),
        lambda: tf.image.resize(image, target),
    )


def scaled_size(height: tf.Tensor, width: tf.Tensor, target_h: int, target_w: int, resize: str) -> tf.Tensor:
    """The size ``[h, w]`` (int64) a ``height x width`` picture is scaled to before padding or cropping
    into ``target_h x target_w``, in whole-pixel arithmetic a client can repeat exactly.

    ``pad`` fits inside: the limiting side becomes the target's, the other ``floor(side x target /
    limiting side)``, at least 1. ``crop`` covers: the limiting side becomes the target's, the other
    ``ceil(...)``. ``stretch``: the target size.
    """
    h, w = tf.cast(height, tf.int64), tf.cast(width, tf.int64)
    th, tw = tf.constant(target_h, tf.int64), tf.constant(target_w, tf.int64)
    if resize == "stretch":
        return tf.stack([th, tw])
    if resize == "pad":
        by_height = th * w <= tw * h  # the height limits: h x (tw / w) would overflow th
        return tf.where(
            by_height,
            tf.stack([th, tf.maximum(tf.constant(1, tf.int64), w * th // h)]),
            tf.stack([tf.maximum(tf.constant(1, tf.int64), h * tw // w), tw]),
        )
    if resize == "crop":
        by_height = th * w >= tw * h  # scaling the height to th covers the width
        return tf.where(by_height, tf.stack([th, -(-w * th // h)]), tf.stack([-(-h * tw // w), tw]))
    raise ValueError(f"input.resize: expected pad, crop or stretch, got {resize!r}")


def _fit_and_pad(image: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """Scale a float image to fit ``height x width`` keeping its aspect (:func:`scaled_size`), placed
    at ``((height - h) // 2, (width - w) // 2)`` (the odd pixel after), zero-padded."""
    shape = tf.shape(image, out_type=tf.int64)
    size = scaled_size(shape[0], shape[1], height, width, "pad")
    top, left = tf.unstack(tf.cast((tf.constant([height, width], tf.int64) - size) // 2, tf.int32))
    return tf.image.pad_to_bounding_box(_resize(image, size), top, left, height, width)


def _cover_and_crop(image: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """Scale a float image to cover ``height x width`` keeping its aspect (:func:`scaled_size`), then
    keep the window at ``((h - height) // 2, (w - width) // 2)``."""
    shape = tf.shape(image, out_type=tf.int64)
    size = scaled_size(shape[0], shape[1], height, width, "crop")
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    return tf.ensure_shape(_resize(image, size)[top : top + height, left : left + width], [height, width, None])


def decode_image(path: tf.Tensor, height: int, width: int, resize: str, orientation: Orientation = None) -> tf.Tensor:
    """Read and decode one image file into float32 RGB ``height x width``, upright.

    ``pad`` scales to fit and pads, ``crop`` scales to cover and centre-crops, ``stretch`` scales
    each side on its own (:func:`scaled_size`; the export's contract spells the same steps out for
    clients). ``orientation`` as for :func:`read_rgb`.
    """
    image = tf.cast(read_rgb(path, orientation), tf.float32)
    if resize == "pad":
        image = _fit_and_pad(image, height, width)
    elif resize == "crop":
        image = _cover_and_crop(image, height, width)
    else:
        image = _resize(image, tf.constant([height, width]))
    return tf.clip_by_value(image, 0.0, 255.0)


def augment(image: tf.Tensor, cfg: InputConfig, seed: tf.Tensor) -> tf.Tensor:
    """Random flip, brightness and contrast on one 0..255 image, drawn from ``seed`` (int64 ``[2]``)
    with stateless random ops: the same seed gives the same changes, whichever thread runs it."""
    flip, brightness, contrast = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    image = tf.image.stateless_random_flip_left_right(image, flip)
    if cfg.brightness > 0:
        image = tf.image.stateless_random_brightness(image, cfg.brightness * 255.0, brightness)
    if cfg.contrast > 0:
        image = tf.image.stateless_random_contrast(image, 1.0 - cfg.contrast, 1.0 + cfg.contrast, contrast)
    return tf.clip_by_value(image, 0.0, 255.0)


def maybe_augment(image: tf.Tensor, cfg: InputConfig, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Augment with probability ``cfg.augment_share``, drawn for this image alone from its ``seed``.

    (Drawing once in Python while building the pipeline, as the reference's snippet does, would
    augment every image or none.)

    Returns:
        The image and whether it was augmented.
    """
    draw, changes = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    apply = tf.random.stateless_uniform((), draw) < cfg.augment_share
    image = tf.cond(apply, lambda: augment(image, cfg, changes), lambda: image)
    return image, apply


class RowAudit:
    """Which rows of a split a pipeline delivered since :meth:`start`: what went in against what came out.

    The pipelines drop a file that fails to decode (``ignore_errors``) rather than crash mid-epoch;
    the audit lets the stage name each one. It is fed once a batch (one Python call per batch, not
    per image), after the decode, so it sees exactly the rows that reach the model.
    """

    def __init__(self, rows: int):
        self.seen = np.zeros(rows, dtype=bool)

    def start(self) -> None:
        """Forget what was delivered (call before each pass over the data)."""
        self.seen[:] = False

    def record(self, rows: np.ndarray) -> np.ndarray:
        self.seen[rows] = True
        return rows

    def missing(self) -> np.ndarray:
        """Rows not delivered since :meth:`start`, in order."""
        return np.flatnonzero(~self.seen)


def _gated(ds: tf.data.Dataset, paths: Sequence[str], row_at: int) -> tf.data.Dataset:
    """Leave out, before any decode, the files the pixel gate refuses from their headers (too many
    pixels, not a regular file): they go missing as a file that fails to decode does, and the caller
    names them (:func:`carclf_core.imagegate.check_pixels`). ``row_at``: where the row is in an element."""
    allowed = admitted(paths)
    if allowed.all():
        return ds  # no op added: the common case
    table = tf.constant(allowed)
    return ds.filter(lambda *element: tf.gather(table, element[row_at]))


def make_dataset(
    paths: Sequence[str],
    labels: Sequence[int] | np.ndarray,
    num_classes: int,
    cfg: InputConfig,
    training: bool,
    seed: int | None = None,
    batch_size: int | None = None,
    with_augment_flags: bool = False,
    with_rows: bool = False,
    audit: RowAudit | None = None,
    deterministic: bool = True,
) -> tf.data.Dataset:
    """Build the pipeline for one split.

    Args:
        paths: image files, in the split's saved order.
        labels: class indices into the saved class list, aligned with ``paths``.
        num_classes: length of the class list (one-hot depth).
        cfg: the ``input`` config section.
        training: shuffle every epoch and augment (train split); False keeps order (val, test).
        seed: seed of the shuffle and of the augmentation; with the same seed (and the same global
            TensorFlow seed, which ``keras.utils.set_random_seed`` sets) a new pipeline delivers the
            same epochs again: the same order and the same changes to each image.
        batch_size: overrides ``cfg.batch_size`` (prediction may use larger batches).
        with_augment_flags: also yield the per-image augmentation decision (for tests and debugging).
        with_rows: also yield each image's position in ``paths`` (int64), last.
        audit: records the rows delivered, batch by batch (see :class:`RowAudit`).
        deterministic: a training pipeline delivers its images in the shuffled order even when a
            later one decodes first (False lets a fast image overtake a slow one: the order, and so
            the batches, then vary from run to run). Evaluation pipelines always keep file order.

    Returns:
        Batches of ``(images float32 [b, h, w, 3] in 0..255, one-hot float32 [b, num_classes])``,
        then the augmentation flags and the rows when asked for. Files that fail to decode are
        dropped (``ignore_errors``): the index stage has already rejected every file it could not
        decode, so this only catches files changed since, or the rare file only Pillow decodes;
        ``with_rows`` or ``audit`` tell the caller which.
    """
    if len(paths) != len(labels):
        raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
    turns = orientations(paths)
    turned = bool((turns != 1).any())  # else no orientation op at all: most collections are upright
    ds = tf.data.Dataset.from_tensor_slices(
        (
            tf.constant(list(paths), tf.string),
            turns,
            tf.constant(np.asarray(labels, dtype=np.int32)),
            tf.range(len(paths), dtype=tf.int64),
        )
    )
    ds = _gated(ds, paths, row_at=3)
    parallel = cfg.decode_workers or AUTOTUNE
    buffer = cfg.shuffle_buffer or max(len(paths), 1)
    keep_rows = with_rows or audit is not None

    def load(path, orientation, label, row):
        image = decode_image(path, cfg.height, cfg.width, cfg.resize, orientation if turned else 1)
        return (image, tf.one_hot(label, num_classes, dtype=tf.float32)) + ((row,) if keep_rows else ())

    def extras(applied, rest):
        return ((applied,) if with_augment_flags else ()) + tuple(rest)

    if training and not cfg.cache:
        # shuffling file names is cheap, so the buffer can hold the whole split
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    ordered = deterministic or not training
    ds = ds.map(load, num_parallel_calls=parallel, deterministic=ordered)
    ds = ds.ignore_errors()
    if cfg.cache:
        ds = ds.cache()
        if training:
            ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if training and cfg.augment:

        def aug(element, draw):
            image, label, *rest = element
            image, applied = maybe_augment(image, cfg, tf.stack([draw, tf.constant(0, tf.int64)]))
            return (image, label) + extras(applied, rest)

        # one random number an image, a new sequence every epoch (each pass is a new iteration),
        # fixed by the seed: the image in the k-th place of an epoch gets the k-th number
        draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip((ds, draws)).map(aug, num_parallel_calls=parallel, deterministic=ordered)
    elif with_augment_flags:
        ds = ds.map(lambda image, label, *rest: (image, label) + extras(tf.constant(False), rest))
    ds = ds.batch(batch_size or cfg.batch_size)
    if audit is not None:

        def record(images, labels, *rest):
            def note(rows: np.ndarray, passed: np.ndarray) -> np.ndarray:
                audit.record(rows)
                return passed

            # Declared stateless although it records: TensorFlow's op determinism runs a pipeline
            # holding a stateful Python call serially and without prefetch (measured: epochs 2-3x
            # slower). The labels pass through it, so it runs for every batch that is used (a
            # control dependency on a stateless call would be optimised away).
            labels = tf.numpy_function(note, [rest[-1], labels], labels.dtype, stateful=False)
            labels = tf.ensure_shape(labels, [None, num_classes])
            return (images, labels) + tuple(rest[: None if with_rows else -1])

        ds = ds.map(record)
    return ds.prefetch(AUTOTUNE)


def decode_prefilter_image(path: tf.Tensor, size: int, resize: str, orientation: Orientation = None) -> tf.Tensor:
    """Read one image into uint8 RGB ``size x size`` for an ImageNet classifier, upright.

    ``center_crop`` (the default) follows the classifiers' own evaluation recipe: the central square
    of :data:`CENTER_CROP` of the shorter side, scaled to ``size`` (antialiased when it shrinks much,
    so a 4,000-pixel photo looks as a 300-pixel one does). ``crop_or_pad`` centre-crops or zero-pads
    without scaling, as the reference's prefilter does (``tf.image.resize_with_crop_or_pad``): right
    for its 320-pixel pictures, a keyhole view of a big photo. ``pad`` scales the whole picture to
    fit, keeping its aspect, and pads the rest. uint8 keeps batches four times smaller than float32;
    each model applies its own preprocessing.
    """
    image = read_rgb(path, orientation)
    if resize == "crop_or_pad":
        return tf.image.resize_with_crop_or_pad(image, size, size)
    if resize == "center_crop":
        shape = tf.shape(image)[:2]
        side = tf.maximum(1, tf.cast(tf.round(CENTER_CROP * tf.cast(tf.reduce_min(shape), tf.float32)), tf.int32))
        top, left = (shape[0] - side) // 2, (shape[1] - side) // 2
        square = tf.cast(image[top : top + side, left : left + side], tf.float32)
        scaled = _resize(square, (size, size))
    elif resize == "pad":
        scaled = _fit_and_pad(tf.cast(image, tf.float32), size, size)
    else:
        raise ValueError(f"prefilter.resize: expected center_crop, crop_or_pad or pad, got {resize!r}")
    return tf.cast(tf.clip_by_value(tf.round(scaled), 0.0, 255.0), tf.uint8)


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
        resize: ``center_crop``, ``crop_or_pad`` or ``pad`` (see :func:`decode_prefilter_image`).
        batch_size: images a batch.
        decode_workers: parallel decode calls; 0 lets tf.data tune it.

    Returns:
        Batches of ``(images uint8 [b, size, size, 3], rows int64 [b])`` where ``rows`` are positions
        in ``paths``. A file that cannot be read or decoded is skipped (``ignore_errors``), so the
        caller finds it as a missing row and can name it.
    """
    rows = tf.data.Dataset.range(len(paths))
    files = tf.data.Dataset.from_tensor_slices(tf.constant(list(paths), tf.string))
    turns = orientations(paths)
    turned = bool((turns != 1).any())
    ds = _gated(tf.data.Dataset.zip((files, tf.data.Dataset.from_tensor_slices(turns), rows)), paths, row_at=2)
    ds = ds.map(
        lambda path, orientation, row: (decode_prefilter_image(path, size, resize, orientation if turned else 1), row),
        num_parallel_calls=decode_workers or AUTOTUNE,
        deterministic=True,
    )
    ds = ds.ignore_errors()
    return ds.batch(batch_size).prefetch(AUTOTUNE)
