"""Training images/s with our tf.data pipeline against a reference-style baseline.

Baseline, as the reference's ``construct_ds``: file names shuffled in a buffer of 32, decode and
augment mapped sequentially (no ``num_parallel_calls``), batch, ``prefetch(10)``. Ours:
``inputs.make_dataset`` (whole-split shuffle of names, parallel decode/augment, AUTOTUNE prefetch).
Same model (MobileNetV3Small, random init), same demo images, same input size, same process; fits
are interleaved after a warm-up fit, medians compared.

    python bench/bench_input.py [--height 106 --width 160] [--repeats 2]
"""

from __future__ import annotations

import sys
from pathlib import Path as _Path

sys.path.insert(0, str(_Path(__file__).resolve().parent.parent))  # the repository, not only an install

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from carclf_core import config as config_mod
from carclf_core import dataset, demo, inputs
from carclf_core import model as model_mod


def reference_dataset(paths, labels, num_classes, cfg):
    """The reference's pipeline shape: sequential map, shuffle buffer 32, prefetch 10."""
    ds = tf.data.Dataset.from_tensor_slices((list(paths), np.asarray(labels, np.int32)))
    ds = ds.shuffle(32)
    # orientation 1: the reference ignored EXIF (and the demo's pictures are upright), so no per-image read
    ds = ds.map(lambda p, l: (inputs.decode_image(p, cfg.height, cfg.width, cfg.resize, 1),
                              tf.one_hot(l, num_classes)))

    def augment(image, label):
        # a stateful draw per image, as the reference augmented (the pipeline draws statelessly)
        return inputs.maybe_augment(image, cfg, tf.random.uniform([2], 0, 2**31 - 1, dtype=tf.int64))[0], label

    ds = ds.map(augment)
    return ds.batch(cfg.batch_size).prefetch(10)


def demo_training_files(data: Path | None, height: int, width: int):
    """The demo's usable photos (or ``data``'s) as a training split would list them, with a config for a
    small MobileNetV3 at ``height`` x ``width``: ``(config, classes, paths, labels)``."""
    data = data or demo.ensure_demo_data()
    config = config_mod.from_dict({"data": {"dir": str(data)}, "input": {"height": height, "width": width},
                                   "train": {"backbone": "mobilenetv3small", "weights": "null"}})
    index = dataset.build_index(config.data)
    ok = index[index["status"] == dataset.OK]
    classes = sorted(ok["label"].unique())
    paths = [str(Path(data) / p) for p in ok["path"]]
    return config, classes, paths, [classes.index(label) for label in ok["label"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=106)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--data", type=Path, help="image folder (default: the demo data)")
    args = parser.parse_args()

    config, classes, paths, labels = demo_training_files(args.data, args.height, args.width)
    model, _ = model_mod.build_model(config.train, (args.height, args.width, 3), len(classes))
    model_mod.compile_model(model, 1e-3)
    ours = inputs.make_dataset(paths, labels, len(classes), config.input, training=True, seed=0)
    ref = reference_dataset(paths, labels, len(classes), config.input)
    model.fit(ours, epochs=1, verbose=0)  # graph building, not measured
    model.fit(ref, epochs=1, verbose=0)
    rates = {"reference": [], "ours": []}
    for _ in range(args.repeats):
        for name, ds in (("reference", ref), ("ours", ours)):
            t0 = time.perf_counter()
            model.fit(ds, epochs=1, verbose=0)
            rates[name].append(len(paths) / (time.perf_counter() - t0))
    r, o = statistics.median(rates["reference"]), statistics.median(rates["ours"])
    print(json.dumps({"images": len(paths), "input": f"{args.height}x{args.width}", "cpus": len(tf.config.list_physical_devices("CPU")),
                      "reference_img_s": round(r, 1), "ours_img_s": round(o, 1), "ratio": round(o / r, 3),
                      "runs": {k: [round(v, 1) for v in vs] for k, vs in rates.items()}}))
    print(f"training images/s: ours {o:.1f} vs reference-style {r:.1f}: ratio {o / r:.2f}x")


if __name__ == "__main__":
    main()
