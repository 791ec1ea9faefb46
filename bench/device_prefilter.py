"""Prefilter model throughput through carclf's own classifier: the reference's per-image
``model.predict`` against the stage's batched :meth:`KerasClassifier.predict`, for Keras ResNet50V2
with its 1000-class top.

It builds :class:`carclf_core.prefilter.classifiers.KerasClassifier` (the class the prefilter stage
uses for ``prefilter.model: resnet50v2``), so the precision is the stage's own choice (bfloat16 on
Ampere and newer GPUs, float32 on a CPU) and the output goes through the same probability check.
Batches are numpy arrays of uint8 pixels, so this is the model part alone: decoding and tf.data are
not in these figures (``bench/bench_prefilter.py`` measures the whole stage on the CPU). Random
weights (``prefilter.weights: null``): the speed is the weights' size, not their values.

    KERAS_BACKEND=jax python bench/device_prefilter.py                # a GPU machine with jax
    KERAS_BACKEND=tensorflow python bench/device_prefilter.py --small # CPU smoke test, few images

Prints one JSON line per measurement, then the ratio; writes them to ``$OUT/prefilter_device.jsonl``
when ``$OUT`` is set. Needs carclf's own dependencies (numpy, pandas, pyyaml, keras) and a Keras
backend (jax or tensorflow).

Round one measured an older, standalone version of this script (Keras 3.15.1 on JAX, no carclf
code) on one NVIDIA H200: per-image ``predict`` 76 img/s, batched mixed_bfloat16 batch 256 6,370
img/s (83x); this version has not been run on a GPU yet.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runs from a checkout, installed or not


def measure(classifier, car_classes, batch: int, images: int) -> dict:
    """images/s of ``classifier`` at ``batch`` (1 = one ``model.predict`` call per image, as the reference)."""
    import keras
    import numpy as np

    from carclf_core.prefilter.rule import car_probability

    size = classifier.size
    pixels = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    steps = max(1, images // batch)
    if batch == 1:
        # the reference's loop: preprocess and Model.predict, one image a call
        x = classifier._preprocess(pixels.astype(np.float32))
        classifier.model.predict(x, verbose=0)  # compile
        started = time.perf_counter()
        for _ in range(steps):
            probs = classifier.model.predict(x, verbose=0)
        how = "Model.predict per image (the reference)"
    else:
        classifier.predict(pixels)  # compile
        started = time.perf_counter()
        for _ in range(steps):
            probs = classifier.predict(pixels)
        how = "KerasClassifier.predict (the stage)"
    car = car_probability(np.asarray(probs, dtype=np.float32), car_classes)  # forces the result to the host
    seconds = time.perf_counter() - started
    return {"what": "ResNet50V2 1000-class inference", "how": how, "policy": classifier.model.dtype_policy.name,
            "batch": batch, "input": f"{size}x{size}", "images": steps * batch,
            "img_per_s": round(steps * batch / seconds, 1), "car_prob_mean": round(float(car.mean()), 4),
            "backend": keras.backend.backend(), "input_path": "numpy uint8 batches"}


def main() -> None:
    parser = argparse.ArgumentParser(description="Prefilter model throughput, per image vs the stage's batches")
    parser.add_argument("--small", action="store_true", help="CPU smoke test: few images")
    args = parser.parse_args()
    from carclf_core import config as config_mod
    from carclf_core.keras_env import gpu_info
    from carclf_core.prefilter.classifiers import KerasClassifier

    plan = [(1, 4), (8, 16)] if args.small else [(1, 200), (64, 2048), (256, 8192)]
    cfg = config_mod.from_dict({"prefilter": {"model": "resnet50v2", "weights": "null"}}).prefilter
    classifier = KerasClassifier(cfg)
    print(json.dumps({"gpus": gpu_info()[0], "policy": classifier.model.dtype_policy.name}), flush=True)
    rows = []
    out = os.environ.get("OUT")
    for batch, images in plan:
        rows.append(measure(classifier, cfg.car_classes, batch, images))
        print(json.dumps(rows[-1]), flush=True)
        if out:
            with open(os.path.join(out, "prefilter_device.jsonl"), "w") as handle:
                handle.writelines(json.dumps(r) + "\n" for r in rows)
    base = rows[0]["img_per_s"]
    for row in rows[1:]:
        print(f"batch {row['batch']:4d} ({row['policy']}): {row['img_per_s']:9.1f} img/s "
              f"= {row['img_per_s'] / base:6.1f}x the per-image loop ({base:.1f} img/s)")


if __name__ == "__main__":
    main()
