"""Step speed: our model's training step against a bare Keras application's, in the same process.

Ours is what the train stage builds (``model.build_model`` + ``model.compile_model``: the backbone, its
input scaling as a layer, the GAP + softmax head, Adam, categorical cross-entropy, categorical and
top-5 accuracy) trained with balanced class weights; the baseline is the plain
``keras.applications`` backbone of the same name and input (``weights=None, include_top=False``) +
GlobalAveragePooling2D + Dense softmax, compiled with the same optimizer and loss and nothing else.
Both take ``train_on_batch`` on the same numpy batches, alternating step by step after a warm-up
(the first call traces and compiles: most of the run time on a CPU), so load from other processes
hits both alike. Printed: the device, images/s of each (from the median step) and the ratio ours /
bare (1.0: our extras cost nothing; 0.97: 3 % slower), with the spread of the step-by-step ratios.

    python bench/bench_step.py                                  # ResNet50V2 at 106x160, batch 8 (CPU: ~3 min)
    python bench/bench_step.py --backbone mobilenetv3small --size 96x96 --batch 32
    KERAS_BACKEND=jax python bench/bench_step.py --size 212x320 --batch 128 --steps 20 --mixed   # a GPU
"""

from __future__ import annotations

import sys
from pathlib import Path as _Path

sys.path.insert(0, str(_Path(__file__).resolve().parent.parent))  # the repository, not only an install

import argparse
import json
import os
import statistics
import time

import keras
import numpy as np

from carclf_core import config as config_mod
from carclf_core import model as model_mod


def device() -> str:
    """The device Keras trains on, in words, with the backend."""
    backend = keras.backend.backend()
    where = f"CPU, {os.cpu_count()} cores"
    if backend == "jax":
        import jax

        first = jax.devices()[0]
        if first.platform != "cpu":
            where = f"{first.platform.upper()}: {first.device_kind} (x{len(jax.devices())})"
    elif backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            where = f"GPU: {details.get('device_name', gpus[0].name)} (x{len(gpus)})"
    return f"{where}; Keras {keras.__version__} on {backend}"


def ours(backbone: str, shape: tuple[int, int, int], classes: int, learning_rate: float) -> keras.Model:
    cfg = config_mod.from_dict({"train": {"backbone": backbone, "weights": "null"}}).train
    model, _ = model_mod.build_model(cfg, shape, classes)
    model_mod.compile_model(model, learning_rate)
    return model


def bare(backbone: str, shape: tuple[int, int, int], classes: int, learning_rate: float) -> keras.Model:
    spec = model_mod._apps()[backbone]  # the keras.applications function of that name
    base = spec.factory(weights=None, include_top=False, input_shape=shape, **spec.extra)
    x = keras.layers.GlobalAveragePooling2D()(base.output)
    model = keras.Model(base.input, keras.layers.Dense(classes, activation="softmax")(x))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="categorical_crossentropy")
    return model


def step_seconds(
    model: keras.Model, batch: tuple[np.ndarray, np.ndarray], class_weight: dict | None
) -> tuple[float, float]:
    """One ``train_on_batch`` until its loss is on the host (so an asynchronous device has finished):
    (wall seconds, CPU seconds of this process's threads)."""
    started, cpu = time.perf_counter(), time.process_time()
    loss = model.train_on_batch(*batch, class_weight=class_weight)
    float(np.ravel(np.asarray(loss))[0])
    return time.perf_counter() - started, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50v2", choices=model_mod.BACKBONE_NAMES)
    parser.add_argument("--size", default="106x160", help="HEIGHTxWIDTH of the input (default 106x160)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--classes", type=int, default=300, help="output classes (default 300, the full data's)")
    parser.add_argument("--steps", type=int, default=12, help="timed train_on_batch calls a model (default 12)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls a model first (tracing, compiling)")
    parser.add_argument("--mixed", action="store_true", help="mixed_bfloat16 for both (what a recent GPU trains in)")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.lower().split("x"))
    shape = (height, width, 3)
    if args.mixed:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, args.classes, size=(4, args.batch))
    batches = [
        (rng.uniform(0, 255, (args.batch, *shape)).astype(np.float32), np.eye(args.classes, dtype=np.float32)[row])
        for row in labels
    ]
    weights = model_mod.balanced_class_weights(labels.ravel(), args.classes)
    models = {
        "ours": (ours(args.backbone, shape, args.classes, 1e-4), weights),
        "bare": (bare(args.backbone, shape, args.classes, 1e-4), None),
    }
    print(f"device: {device()}")
    print(
        f"{args.backbone} at {height}x{width}, batch {args.batch}, {args.classes} classes: "
        f"{models['ours'][0].count_params():,} / {models['bare'][0].count_params():,} parameters (ours / bare)"
    )
    for model, class_weight in models.values():
        for i in range(args.warmup):
            step_seconds(model, batches[i % len(batches)], class_weight)
    # step by step, alternating which goes first: load from other processes hits both alike
    seconds: dict[str, list[float]] = {name: [] for name in models}
    cpu: dict[str, list[float]] = {name: [] for name in models}
    for i in range(args.steps):
        for name in list(models) if i % 2 == 0 else list(reversed(models)):
            model, class_weight = models[name]
            wall, used = step_seconds(model, batches[i % len(batches)], class_weight)
            seconds[name].append(wall)
            cpu[name].append(used)
    rate = {name: args.batch / statistics.median(values) for name, values in seconds.items()}
    pairs = [b / o for o, b in zip(seconds["ours"], seconds["bare"], strict=True)]
    cpu_ratio = statistics.median(cpu["bare"]) / statistics.median(cpu["ours"])
    print(
        f"train_on_batch: ours {rate['ours']:.2f} images/s, bare keras.applications {rate['bare']:.2f} images/s "
        f"(medians of {args.steps} steps each, after {args.warmup} warm-up): ratio {rate['ours'] / rate['bare']:.3f}; "
        f"step by step: median {statistics.median(pairs):.3f}, quartiles "
        f"{np.percentile(pairs, 25):.3f}-{np.percentile(pairs, 75):.3f}; CPU seconds a step (steadier when "
        f"other work shares the cores): ratio {cpu_ratio:.3f}"
    )
    print(
        json.dumps(
            {
                "device": device(),
                "backbone": args.backbone,
                "size": [height, width],
                "batch": args.batch,
                "mixed": args.mixed,
                "step_s": {k: [round(v, 4) for v in vs] for k, vs in seconds.items()},
                "cpu_s": {k: [round(v, 4) for v in vs] for k, vs in cpu.items()},
                "cpu_ratio": round(cpu_ratio, 4),
                "images_s": {k: round(v, 3) for k, v in rate.items()},
                "ratio": round(rate["ours"] / rate["bare"], 4),
            }
        )
    )


if __name__ == "__main__":
    main()
