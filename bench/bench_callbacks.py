"""Overhead of the streaming callbacks: the same ``fit`` with and without them.

A tiny model (MobileNetV3Small minimalistic, 32x48, random init) on in-memory batches, where the
per-batch cost of a callback shows most: a real backbone spends far longer per step. Runs are
interleaved (none, streaming, none, streaming, ...) after a warm-up fit that builds the graph, and
the medians are compared.

"streaming" = StopOnCancel + EventCallback (BatchEnded throttled to ``--rate`` a second) +
EarlyStopping + PatienceReporter: the per-batch feed. The per-epoch extras (validation confusion
sample, checkpoint) are timed separately and reported as a share of the epoch.

    python bench/bench_callbacks.py [--epochs 3] [--repeats 3]
"""

from __future__ import annotations

import sys
from pathlib import Path as _Path

sys.path.insert(0, str(_Path(__file__).resolve().parent.parent))  # the repository, not only an install

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import keras
import numpy as np

from carclf_core import callbacks as cb
from carclf_core import config as config_mod
from carclf_core import model as model_mod


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rate", type=float, default=4.0, help="BatchEnded events a second")
    args = parser.parse_args()

    import tensorflow as tf

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    classes = 8
    x = rng.uniform(0, 255, (args.images, 32, 48, 3)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, classes, args.images), classes).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(args.batch).cache().prefetch(tf.data.AUTOTUNE)
    val = tf.data.Dataset.from_tensor_slices((x[:256], y[:256])).batch(64).cache()
    cfg = config_mod.from_dict({"train": {"backbone": "mobilenetv3small_minimalistic", "weights": "null"}}).train
    model, _ = model_mod.build_model(cfg, (32, 48, 3), classes)
    model_mod.compile_model(model, 1e-3)
    model.fit(ds, epochs=1, validation_data=val, verbose=0)  # graph building, not measured

    events: list = []
    steps = -(-args.images // args.batch)

    def streaming():
        stop = cb.StopOnCancel(threading.Event())
        es = cb.ResumableEarlyStopping(monitor="val_loss", patience=100, restore_best_weights=False)
        return [stop, cb.EventCallback(events.append, args.batch, steps, args.images, args.rate,
                                       total_epochs=args.epochs), es, cb.PatienceReporter(events.append, es)]

    times = {"none": [], "streaming": []}
    for _ in range(args.repeats):
        for name in ("none", "streaming"):
            callbacks = streaming() if name == "streaming" else []
            t0 = time.perf_counter()
            model.fit(ds, epochs=args.epochs, validation_data=val, callbacks=callbacks, verbose=0)
            times[name].append(time.perf_counter() - t0)
    base, with_cb = statistics.median(times["none"]), statistics.median(times["streaming"])
    epoch_s = base / args.epochs
    print(f"fit {args.epochs} epochs x {steps} steps, batch {args.batch}, 32x48, {args.repeats} interleaved repeats")
    print(f"  without callbacks: median {base:.3f}s  {times['none']}")
    print(f"  with streaming:    median {with_cb:.3f}s  {times['streaming']}")
    print(f"  overhead ratio: {with_cb / base:.4f} ({(with_cb / base - 1) * 100:+.2f} %, target < 3 %)")
    batch_events = sum(1 for e in events if e.kind == "batch_ended")
    print(f"  BatchEnded events: {batch_events} over {args.repeats * args.epochs * steps} batches")

    # the per-epoch extras, as a share of one (tiny) epoch
    sample = tf.data.Dataset.from_tensor_slices((x[:500], y[:500])).batch(64).cache()
    confusion = cb.ConfusionCallback(events.append, sample, y[:500].argmax(1), [str(i) for i in range(classes)])
    confusion.set_model(model)
    confusion.on_epoch_end(0)  # traces predict once
    for epoch in range(1, 4):
        confusion.on_epoch_end(epoch)
    conf_s = statistics.median(confusion.durations[1:])
    with tempfile.TemporaryDirectory() as tmp:
        es = cb.ResumableEarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
        es.set_model(model)
        es.on_train_begin()
        es.on_epoch_end(0, {"val_loss": 1.0})
        ck = cb.CheckpointCallback(Path(tmp), model, es, "finetune", [])
        ck.set_model(model)
        for epoch in range(3):
            ck.on_epoch_end(0, {"val_loss": 1.0})
        ck_s = statistics.median(ck.durations)
    print(f"  confusion sample (500 images): {conf_s:.3f}s = {conf_s / epoch_s:.1%} of this tiny epoch "
          f"({epoch_s:.2f}s)")
    print(f"  checkpoint (weights + optimizer state + state.json): {ck_s:.3f}s = {ck_s / epoch_s:.1%} of this tiny epoch")


if __name__ == "__main__":
    main()
