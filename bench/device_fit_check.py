"""The real training code on an accelerator: our model builder and every streaming callback in a
short ``fit`` of ResNet50V2 (300 classes, 212x320, mixed bfloat16), then a resume from the checkpoint.

Keras 3 on the JAX backend with numpy batches (the device has no TensorFlow), random weights and data:
this checks that the model, callback and checkpoint code runs unchanged on a GPU backend, and what
the per-epoch checkpoint and confusion matrix cost there.

    KERAS_BACKEND=jax python bench/device_fit_check.py            # GPU sizes
    python bench/device_fit_check.py --small                      # CPU smoke test
"""

from __future__ import annotations

import sys
from pathlib import Path as _Path

sys.path.insert(0, str(_Path(__file__).resolve().parent.parent))  # the repository, not only an install

import argparse
import collections
import json
import os
import tempfile
import threading
import time

os.environ.setdefault("KERAS_BACKEND", "jax")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="CPU smoke test: tiny sizes")
    args = parser.parse_args()
    import keras
    import numpy as np

    from carclf_core import callbacks as cb
    from carclf_core import checkpoint
    from carclf_core import config as config_mod
    from carclf_core import model as model_mod

    if args.small:
        n, batch, (h, w), classes, policy, backbone = 64, 16, (32, 48), 5, "float32", "mobilenetv3small"
    else:
        n, batch, (h, w), classes, policy, backbone = 2048, 128, (212, 320), 300, "mixed_bfloat16", "resnet50v2"
    keras.mixed_precision.set_global_policy(policy)
    cfg = config_mod.from_dict({"train": {"backbone": backbone, "weights": "null", "patience": 2}}).train
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (n, h, w, 3)).astype("float32")
    labels = rng.integers(0, classes, n)
    y = keras.utils.to_categorical(labels, classes).astype("float32")
    x_val, y_val, val_labels = x[: n // 4], y[: n // 4], labels[: n // 4]
    events: list = []
    out = _Path(tempfile.mkdtemp(prefix="carclf-device-"))
    class_names = [f"c{i}" for i in range(classes)]
    results = {"backend": keras.backend.backend(), "policy": policy, "backbone": backbone, "input": f"{h}x{w}",
               "batch": batch}

    def fit(epochs: int, initial_epoch: int, model, es, history) -> dict:
        stop = cb.StopOnCancel(threading.Event())
        steps = n // batch
        callbacks = [stop, cb.EventCallback(events.append, batch, steps, n, 4.0, total_epochs=epochs),
                     es, cb.PatienceReporter(events.append, es),
                     cb.ConfusionCallback(events.append, x_val, val_labels, class_names),
                     cb.CheckpointCallback(out, model, es, "finetune", history)]
        started = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=epochs, initial_epoch=initial_epoch, validation_data=(x_val, y_val),
                  callbacks=callbacks, verbose=0)
        return {"wall_s": round(time.perf_counter() - started, 1),
                "confusion_s": [round(d, 2) for d in callbacks[4].durations],
                "checkpoint_s": [round(d, 2) for d in callbacks[5].durations]}

    model, _ = model_mod.build_model(cfg, (h, w, 3), classes)
    model_mod.compile_model(model, cfg.learning_rate)
    history: list = []
    es = cb.ResumableEarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=True)
    results["first_fit"] = fit(3, 0, model, es, history)
    state = checkpoint.read_state(out)
    results["epochs_per_s"] = [round(e.images_per_s or 0, 1) for e in events if e.kind == "epoch_ended"]

    # resume as the train stage does: full checkpoint, early-stopping state restored
    resumed, _ = model_mod.build_model(cfg, (h, w, 3), classes)
    model_mod.compile_model(resumed, cfg.learning_rate)
    resumed.set_weights(checkpoint.load_weights(out / "last_weights.npz"))
    results["optimizer_restored"] = model_mod.restore_optimizer_state(
        resumed, checkpoint.load_weights(out / "last_optimizer.npz")) or "yes"
    initial = dict(state["early_stopping"], best_weights=checkpoint.load_weights(out / "best_weights.npz"))
    es2 = cb.ResumableEarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=True,
                                    initial_state=initial)
    results["resume"] = fit(4, state["completed_epochs"], resumed, es2, list(state["history"]))
    results["resumed_from_epoch"] = state["completed_epochs"]
    results["event_kinds"] = dict(collections.Counter(e.kind for e in events))
    results["last_epoch"] = max(e.epoch for e in events if e.kind == "epoch_ended")
    results["patience"] = [(e.epoch, e.wait, e.best_epoch) for e in events if e.kind == "patience"]
    saved = sum((out / name).stat().st_size for name in ("last_weights.npz", "last_optimizer.npz"))
    results["checkpoint_mb"] = round(saved / 2**20, 1)
    print(json.dumps(results), flush=True)
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "fit_check.json"), "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
