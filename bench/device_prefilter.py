"""Prefilter model throughput on an accelerator: the reference's per-image ``model.predict`` against
batched ``predict_on_batch``, float32 and mixed_bfloat16, for Keras ResNet50V2 with its 1000-class top.

Standalone on purpose: Keras 3 on the JAX backend with numpy batches, no TensorFlow and no carclf
import, so it runs on a lent GPU machine that has only jax + keras. Random weights (the speed is the
weights' size, not their values). The model part alone: decoding is measured by bench_prefilter.py.

    KERAS_BACKEND=jax python bench/device_prefilter.py          # GPU sizes
    KERAS_BACKEND=jax python bench/device_prefilter.py --small  # CPU smoke test, tiny sizes

Prints one JSON line per measurement, then the ratios; writes them to ``$OUT/prefilter_device.jsonl``
when ``$OUT`` is set. Needs ``jax`` (``pip install jax``; ``jax[cuda12]`` on a GPU) and ``keras>=3``.
A machine without Keras can take it as wheels: ``pip download keras==3.15.1 namex optree --no-deps
--only-binary=:all: --python-version 3.12 -d .whl`` here, ``pip install --no-index --no-deps --target
/tmp/kdeps .whl/*.whl`` there, then ``PYTHONPATH=/tmp/kdeps``.

Measured on one NVIDIA H200 (jax 0.11.2, Keras 3.15.1, random weights, 224x224): per-image
``predict`` 76 img/s; ``predict_on_batch`` float32 batch 64: 3,958, batch 256: 5,503;
mixed_bfloat16 batch 64: 3,274, batch 256: 6,370 img/s, i.e. 83x the per-image loop.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

# The reference's 15 car classes (ImageNet-1k indices), summed as its is_car_acc_prob does.
CAR_CLASSES = [656, 627, 817, 511, 468, 751, 705, 757, 717, 734, 654, 675, 864, 609, 436]


def measure(policy: str, batch: int, images: int, size: int) -> dict:
    """images/s of ResNet50V2 at ``batch`` (1 = one ``predict`` call per image, as the reference)."""
    import keras
    import numpy as np

    keras.mixed_precision.set_global_policy(policy)
    try:
        model = keras.applications.ResNet50V2(weights=None, input_shape=(size, size, 3))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    rng = np.random.default_rng(0)
    # uint8 pixels through resnet_v2.preprocess_input, as the stage feeds them
    pixels = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    x = keras.applications.resnet_v2.preprocess_input(pixels.astype("float32"))
    steps = max(1, images // batch)
    if batch == 1:
        model.predict(x, verbose=0)  # compile
        started = time.perf_counter()
        for _ in range(steps):
            probs = model.predict(x, verbose=0)
        how = "predict() per image"
    else:
        model.predict_on_batch(x)  # compile
        started = time.perf_counter()
        for _ in range(steps):
            probs = model.predict_on_batch(x)
        how = "predict_on_batch"
    car = np.asarray(probs, dtype=np.float32)[:, CAR_CLASSES].sum(axis=1)  # forces the result to host
    seconds = time.perf_counter() - started
    return {"what": "ResNet50V2 1000-class inference", "how": how, "policy": policy, "batch": batch,
            "input": f"{size}x{size}", "images": steps * batch, "img_per_s": round(steps * batch / seconds, 1),
            "car_prob_mean": round(float(car.mean()), 4), "backend": keras.backend.backend()}


def main() -> None:
    parser = argparse.ArgumentParser(description="Prefilter model throughput, per image vs batched")
    parser.add_argument("--small", action="store_true", help="CPU smoke test: tiny sizes")
    args = parser.parse_args()
    if args.small:
        size, plan = 64, [("float32", 1, 4), ("float32", 4, 8), ("mixed_bfloat16", 4, 8)]
    else:
        size, plan = 224, [("float32", 1, 200), ("float32", 64, 2048), ("float32", 256, 4096),
                           ("mixed_bfloat16", 64, 2048), ("mixed_bfloat16", 256, 8192)]
    import jax

    print(json.dumps({"devices": [str(d) for d in jax.devices()]}), flush=True)
    rows = []
    out = os.environ.get("OUT")
    for policy, batch, images in plan:
        row = measure(policy, batch, images, size)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if out:
            with open(os.path.join(out, "prefilter_device.jsonl"), "w") as handle:
                handle.writelines(json.dumps(r) + "\n" for r in rows)
    base = rows[0]["img_per_s"]
    for row in rows[1:]:
        print(f"{row['policy']:15} batch {row['batch']:4d}: {row['img_per_s']:9.1f} img/s "
              f"= {row['img_per_s'] / base:6.1f}x the per-image loop ({base:.1f} img/s)")


if __name__ == "__main__":
    main()
