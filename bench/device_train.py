"""Training throughput of the real recipe on an accelerator: ResNet50V2 at 212x320, float32 against
mixed_bfloat16, through the same builder the train stage uses (``carclf_core.model``).

Keras 3 on the JAX backend with numpy batches (no tf.data: the input pipeline is measured by
bench_input.py), random weights (speed depends on the weights' size, not their values), 300 classes.

    KERAS_BACKEND=jax python bench/device_train.py           # GPU sizes
    python bench/device_train.py --small                     # CPU smoke test, tiny sizes

``--small`` also runs on the TensorFlow backend (``KERAS_BACKEND=tensorflow``) when jax is absent.
Prints one JSON line per measurement and the bf16/fp32 ratio; writes them to
``$OUT/train_device.jsonl`` when ``$OUT`` is set.
"""

from __future__ import annotations

import sys
from pathlib import Path as _Path

sys.path.insert(0, str(_Path(__file__).resolve().parent.parent))  # the repository, not only an install

import argparse
import json
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")


def measure(policy: str, batch: int, steps: int, height: int, width: int, classes: int, backbone: str) -> dict:
    import keras
    import numpy as np

    from carclf_core import config as config_mod
    from carclf_core import model as model_mod

    keras.mixed_precision.set_global_policy(policy)
    try:
        cfg = config_mod.from_dict({"train": {"backbone": backbone, "weights": "null"}}).train
        model, _ = model_mod.build_model(cfg, (height, width, 3), classes)
        model_mod.compile_model(model, 1e-4)
        rng = np.random.default_rng(0)
        x = rng.uniform(0, 255, (batch, height, width, 3)).astype("float32")
        y = keras.utils.to_categorical(rng.integers(0, classes, batch), classes).astype("float32")
        t0 = time.perf_counter()
        model.train_on_batch(x, y)
        compile_s = time.perf_counter() - t0
        model.train_on_batch(x, y)
        t0 = time.perf_counter()
        for _ in range(steps):
            logs = model.train_on_batch(x, y)
        float(np.asarray(logs[0] if isinstance(logs, (list, tuple)) else logs))  # wait for the device
        dt = time.perf_counter() - t0
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return {"what": f"{backbone} train", "backend": keras.backend.backend(), "policy": policy,
            "input": f"{height}x{width}", "batch": batch, "steps": steps,
            "img_per_s": round(batch * steps / dt, 1), "compile_s": round(compile_s, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="CPU smoke test: tiny input and steps")
    args = parser.parse_args()
    if args.small:
        runs = [("float32", 4, 2), ("mixed_bfloat16", 4, 2)]
        size, classes = (64, 96), 10
    else:
        runs = [("float32", 32, 30), ("mixed_bfloat16", 32, 30), ("mixed_bfloat16", 128, 15)]
        size, classes = (212, 320), 300
    out = os.environ.get("OUT")
    results = []
    for policy, batch, steps in runs:
        row = measure(policy, batch, steps, *size, classes, "resnet50v2")
        results.append(row)
        print(json.dumps(row), flush=True)
        if out:
            with open(os.path.join(out, "train_device.jsonl"), "w") as handle:
                handle.writelines(json.dumps(r) + "\n" for r in results)
    fp32 = next(r for r in results if r["policy"] == "float32")
    for r in results[1:]:
        print(f"{r['policy']} batch {r['batch']}: {r['img_per_s'] / fp32['img_per_s']:.2f}x float32 batch {fp32['batch']}")


if __name__ == "__main__":
    main()
