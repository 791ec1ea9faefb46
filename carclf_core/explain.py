"""Why the model said what it said: occlusion sensitivity and Grad-CAM maps, saved as PNG overlays.

Occlusion sensitivity covers the photo with a grey patch at each place of a grid and measures how
much the predicted class's probability drops: forward passes only, so it works on any Keras
backend. Grad-CAM weighs the last convolutional feature map by the gradient of the class score
(TensorFlow's gradient tape). Both are computed on the image as the model sees it (the contract's
size and resize mode, EXIF orientation applied) and drawn over it, then saved at a size a person can
read (:data:`SAVED_SIDE`), beside a panel of the photo, both maps and their colour scale.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import ModelError, RunError
from .export import Contract
from .imagegate import refuse_oversized
from .runs import atomic_path

METHODS = ("occlusion", "gradcam")
SAVED_SIDE = 480
"""Longest side in pixels of a saved overlay: a 106x160 model input is blown up to 318x480 (a map
at the model's own size is a thumbnail; the heat maps are smooth, so nothing is made up)."""
TITLES = {
    "photo": "the photo, as the model sees it",
    "occlusion": "occlusion: where hiding it costs",
    "gradcam": "Grad-CAM: what the last features weigh",
}


@dataclasses.dataclass(frozen=True)
class Explanation:
    """What :func:`explain` explained and wrote."""

    class_index: int
    probability: float
    """The model's probability of the explained class for the photo."""
    predicted: int
    """The class the model predicts (the explained one unless another was asked for)."""
    predicted_probability: float
    maps: dict[str, Path]
    """Each method's overlay (``<stem>-<method>.png``)."""
    panel: Path
    """The photo, every map and the colour scale side by side (``<stem>-explained.png``)."""
    pictures: dict[str, Image.Image] = dataclasses.field(default_factory=dict, repr=False)
    """The photo as the model sees it and each overlay, at :data:`SAVED_SIDE` (to draw them)."""


def prepare(contract: Contract, path: Path) -> np.ndarray:
    """The photo as the model sees it: float32 RGB 0..255 at the contract's size."""
    import tensorflow as tf

    from .inputs import decode_image

    refuse_oversized(path)  # the pixel gate: a header declaring 196 MP took 3.7 GB to decode
    return decode_image(tf.constant(str(path)), contract.height, contract.width, contract.resize).numpy()


def occlusion(model, image: np.ndarray, class_index: int, grid: int = 8, batch_size: int = 64) -> np.ndarray:
    """How much the class's probability drops when each region is hidden, per pixel (0..1 scaled).

    A patch of 1/``grid`` of the image's height and width slides at half its size, so each pixel is
    covered by up to four placements; the drop is averaged over them.
    """
    h, w = image.shape[:2]
    ph, pw = max(1, -(-h // grid)), max(1, -(-w // grid))
    sy, sx = max(1, ph // 2), max(1, pw // 2)
    boxes = [(y, x) for y in range(0, max(h - ph, 0) + 1, sy) for x in range(0, max(w - pw, 0) + 1, sx)]
    fill = float(image.mean())
    base = float(np.asarray(model.predict_on_batch(image[None]))[0, class_index])
    drop = np.zeros((h, w), dtype=np.float64)
    count = np.zeros((h, w), dtype=np.float64)
    for start in range(0, len(boxes), batch_size):
        part = boxes[start : start + batch_size]
        batch = np.repeat(image[None], len(part), axis=0)
        for i, (y, x) in enumerate(part):
            batch[i, y : y + ph, x : x + pw] = fill
        probs = np.asarray(model.predict_on_batch(batch))[:, class_index]
        for (y, x), p in zip(part, probs, strict=True):
            drop[y : y + ph, x : x + pw] += base - float(p)
            count[y : y + ph, x : x + pw] += 1
    heat = np.where(count > 0, drop / np.maximum(count, 1), 0.0)
    return _unit(np.clip(heat, 0.0, None))


def gradcam(model, image: np.ndarray, class_index: int) -> np.ndarray:
    """Grad-CAM of the class on the model's last 4-D feature map, at the image's size (0..1 scaled).

    Raises:
        ModelError: the model has no 4-D feature map or is not a chain of layers (the exported
            carclf models are: input, scaling, backbone, head).
    """
    import tensorflow as tf

    layers = [layer for layer in model.layers if not isinstance(layer, _input_layer_type())]
    ranks = [len(layer.output.shape) for layer in layers]
    features_at = max((i for i, rank in enumerate(ranks) if rank == 4), default=None)
    if features_at is None:
        raise ModelError("explain: Grad-CAM needs a convolutional feature map; this model has none")
    x = tf.constant(image[None], dtype=tf.float32)
    with tf.GradientTape() as tape:
        h = x
        features = None
        for i, layer in enumerate(layers):
            try:
                h = layer(h, training=False)
            except (TypeError, ValueError) as exc:
                raise ModelError(f"explain: Grad-CAM needs a model whose layers form a chain ({exc})") from exc
            if i == features_at:
                features = h
                tape.watch(features)
        score = h[:, class_index]
    grads = tape.gradient(score, features)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))[0].numpy()
    resized = np.asarray(Image.fromarray(cam.astype(np.float32)).resize(image.shape[1::-1], Image.Resampling.BILINEAR))
    return _unit(resized)


def _input_layer_type():
    import keras

    return keras.layers.InputLayer


def _unit(heat: np.ndarray) -> np.ndarray:
    top = float(heat.max()) if heat.size else 0.0
    return (heat / top).astype(np.float32) if top > 0 else np.zeros_like(heat, dtype=np.float32)


def _colour(heat: np.ndarray) -> np.ndarray:
    """A blue-to-red ramp (dark blue, cyan, yellow, red) for a 0..1 map, as uint8 RGB."""
    stops = np.array([[0, 0, 96], [0, 192, 255], [255, 230, 0], [220, 0, 0]], dtype=np.float64)
    position = np.clip(heat, 0, 1) * (len(stops) - 1)
    low = np.floor(position).astype(int).clip(0, len(stops) - 2)
    t = (position - low)[..., None]
    return (stops[low] * (1 - t) + stops[low + 1] * t).astype(np.uint8)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """The heat map drawn over the image (both ``h x w``)."""
    base = np.clip(image, 0, 255).astype(np.float64)
    mixed = base * (1 - alpha) + _colour(heat).astype(np.float64) * alpha
    return Image.fromarray(mixed.astype(np.uint8))


def hottest(heat: np.ndarray) -> tuple[float, float]:
    """Centre of the region at half the map's maximum or more, as (row, column) shares of the height
    and width (the whole map's centre when it is flat)."""
    rows, cols = np.nonzero(heat >= 0.5 * float(heat.max()))
    return float(rows.mean() / heat.shape[0]), float(cols.mean() / heat.shape[1])


MAX_STEM_BYTES = 100
"""Longest photo stem an output name keeps, in bytes: a file system allows 255 bytes a name, and a
250-byte photo name plus ``-occlusion.png`` failed with "File name too long"."""


def output_stem(path: Path) -> str:
    """The stem the maps of ``path`` are saved under: the photo's own, or when longer than
    :data:`MAX_STEM_BYTES` its start (cut between whole letters) and a hash of the whole name, so two
    long names that start alike still get maps of their own."""
    stem = Path(path).stem
    raw = os.fsencode(stem)
    if len(raw) <= MAX_STEM_BYTES:
        return stem
    cut = MAX_STEM_BYTES - 11
    while cut > 0 and raw[cut] & 0xC0 == 0x80:  # not inside a UTF-8 letter
        cut -= 1
    return os.fsdecode(raw[:cut]) + "-" + hashlib.sha256(raw).hexdigest()[:10]


def _output_folder(out: Path) -> Path:
    """Make ``out`` and refuse it when it is a symbolic link (the maps would be written wherever it
    points), as the run's ``events.jsonl`` and ``.lock`` are refused."""
    if out.is_symlink():
        raise RunError(f"{out}: is a symbolic link; refusing to write through it", "remove it; explain makes a folder")
    out.mkdir(parents=True, exist_ok=True)
    if not stat.S_ISDIR(os.lstat(out).st_mode):
        raise RunError(f"{out}: is not a folder", "move it out of the way; explain makes a folder")
    return out


def readable(picture: Image.Image, side: int = SAVED_SIDE) -> Image.Image:
    """``picture`` scaled so its longest side is ``side`` pixels (never smaller than it is)."""
    factor = side / max(picture.size)
    if factor <= 1:
        return picture
    return picture.resize((round(picture.width * factor), round(picture.height * factor)), Image.Resampling.BICUBIC)


def colour_scale(width: int, height: int = 16) -> Image.Image:
    """The maps' colour ramp from 0 (left: hiding or weighing it changes nothing) to 1 (right: most)."""
    ramp = _colour(np.linspace(0.0, 1.0, width, dtype=np.float64)[None, :].repeat(height, axis=0))
    return Image.fromarray(ramp)


def panel(parts: dict[str, Image.Image]) -> Image.Image:
    """``parts`` (name -> picture, all one size) side by side, each under its title, over the colour
    scale with its ends named: what ``<stem>-explained.png`` holds."""
    from PIL import ImageDraw

    pictures = list(parts.values())
    w, h = pictures[0].size
    gap, title, scale_h = 12, 22, 16
    canvas = Image.new(
        "RGB", (len(pictures) * w + (len(pictures) - 1) * gap, title + h + gap + scale_h + title), (255, 255, 255)
    )
    draw = ImageDraw.Draw(canvas)
    for i, (name, picture) in enumerate(parts.items()):
        x = i * (w + gap)
        draw.text((x + 2, 4), TITLES.get(name, name), fill=(0, 0, 0))
        canvas.paste(picture, (x, title))
    top = title + h + gap
    canvas.paste(colour_scale(canvas.width, scale_h), (0, top))
    draw.text((2, top + scale_h + 4), "0: no effect", fill=(0, 0, 0))
    draw.text((canvas.width - 160, top + scale_h + 4), "1: the most in this photo", fill=(0, 0, 0))
    return canvas


def explain(
    model, contract: Contract, path: Path, out: Path, methods: tuple[str, ...] = METHODS, class_index: int | None = None
) -> Explanation:
    """Maps for one photo, saved as ``<out>/<photo stem>-<method>.png`` (each :data:`SAVED_SIDE` pixels
    on its longest side) and side by side with the photo and the colour scale in
    ``<out>/<photo stem>-explained.png``.

    Args:
        class_index: the class to explain; default the predicted one.

    Raises:
        RunError: ``out`` is a symbolic link or not a folder.
        ImageError: the photo is refused before decoding (over the pixel limit, not a regular file).
    """
    out = _output_folder(out)
    image = prepare(contract, path)
    probabilities = np.asarray(model.predict_on_batch(image[None]))[0]
    predicted = int(np.argmax(probabilities))
    if class_index is None:
        class_index = predicted
    makers = {"occlusion": occlusion, "gradcam": gradcam}
    saved = {}
    parts = {"photo": readable(Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)))}
    for method in methods:
        heat = makers[method](model, image, class_index)
        target = out / f"{output_stem(path)}-{method}.png"
        parts[method] = readable(overlay(image, heat))
        with atomic_path(target) as tmp:
            parts[method].save(tmp, format="PNG")
        saved[method] = target
    panel_path = out / f"{output_stem(path)}-explained.png"
    with atomic_path(panel_path) as tmp:
        panel(parts).save(tmp, format="PNG")
    return Explanation(
        class_index,
        float(probabilities[class_index]),
        predicted,
        float(probabilities[predicted]),
        saved,
        panel_path,
        parts,
    )
