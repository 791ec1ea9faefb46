"""The train stage against what a user writes instead: a plain Keras script on the same split.

The baseline is the script a Keras user would write for the same job: ``keras.utils.image_dataset_from_directory``
over the split's train and val folders (the bench links the split's files into class folders), padded
to the input size as ``input.resize: pad`` does, the same augmentation (random flip, brightness 0.1,
contrast 0.2, as Keras layers on every image, where carclf augments 70 % of them), the same model (the
``keras.applications`` backbone with ``weights=None``, global average pooling, a softmax layer), the same
optimizer, loss and metrics (Adam, categorical cross-entropy, categorical and top-5 accuracy),
balanced class weights, ``model.fit`` with validation each epoch, and ``model.save`` at the end.

Ours is ``carclf-tui --resume RUN --stage train`` on the same split with its defaults (per-epoch
checkpoint with the optimizer, per-epoch validation confusion matrix, TensorBoard logs, events),
warm-up off. Each side runs in a fresh process (each pays its own start-up), alternating ours,
baseline, ours, baseline ... so that load from other processes hits both alike. Printed per side:
the whole process's wall time, the start-up (process start to the first epoch), the first epoch
(tracing), the median of the later epochs (epoch start to the next epoch's start: everything done
per epoch, checkpoint and confusion matrix included), and the ratios ours / baseline (1.0: the same;
1.05: ours 5 % slower).

    python bench/bench_keras_baseline.py                         # 4 epochs, 48x72, batch 32, 2 rounds
    python bench/bench_keras_baseline.py --rounds 3 --epochs 6
"""

from __future__ import annotations

import sys
from pathlib import Path as _Path

sys.path.insert(0, str(_Path(__file__).resolve().parent.parent))  # the repository, not only an install

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PLAIN_KERAS = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path

    import keras
    import tensorflow as tf

    args = json.loads(sys.argv[1])
    height, width, batch = args["height"], args["width"], args["batch"]
    common = dict(label_mode="categorical", image_size=(height, width), batch_size=batch, pad_to_aspect_ratio=True)
    train = keras.utils.image_dataset_from_directory(args["train"], shuffle=True, seed=args["seed"], **common)
    val = keras.utils.image_dataset_from_directory(args["val"], shuffle=False, **common)
    augment = keras.Sequential([keras.layers.RandomFlip("horizontal"),
                                keras.layers.RandomBrightness(0.1, value_range=(0, 255)),
                                keras.layers.RandomContrast(0.2)])
    train = train.map(lambda x, y: (tf.clip_by_value(augment(x, training=True), 0, 255), y),
                      num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    val = val.prefetch(tf.data.AUTOTUNE)

    counts = [len(list(Path(args["train"], name).iterdir())) for name in sorted(os.listdir(args["train"]))]
    total, classes = sum(counts), len(counts)
    class_weight = {i: total / (classes * n) for i, n in enumerate(counts)}  # scikit-learn's "balanced"

    base = keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(height, width, 3))
    x = keras.layers.GlobalAveragePooling2D()(base.output)
    model = keras.Model(base.input, keras.layers.Dense(classes, activation="softmax")(x))
    model.compile(optimizer=keras.optimizers.Adam(args["learning_rate"]), loss="categorical_crossentropy",
                  metrics=["categorical_accuracy", keras.metrics.TopKCategoricalAccuracy(5, name="top5")])
    starts = []
    model.fit(train, validation_data=val, epochs=args["epochs"], class_weight=class_weight, verbose=0,
              callbacks=[keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: starts.append(time.time()))])
    ended = time.time()
    model.save(Path(args["out"]) / "model.keras")
    print(json.dumps({"epoch_starts": starts, "fit_ended": ended}))
""").replace("import json, sys, time", "import json, os, sys, time")


def prepare(work: Path, args: argparse.Namespace) -> tuple[Path, dict]:
    """The demo data indexed and split into a run (in this process), and the split's train and val
    files linked into class folders for the baseline."""
    from carclf_core import config as config_mod
    from carclf_core import demo
    from carclf_core.pipeline import StageContext
    from carclf_core.registry import run_stage
    from carclf_core.runs import create_run
    from carclf_core.stages.split import load_splits

    data = demo.ensure_demo_data(work / "demo")
    config = config_mod.load(None, [
        f"data.dir={data}", f"run.root={work / 'runs'}", "prefilter.mode=off", "split.min_per_class=10",
        f"input.height={args.height}", f"input.width={args.width}", f"input.batch_size={args.batch}",
        "input.resize=pad", "train.backbone=mobilenetv3small", "train.weights=null", f"train.epochs={args.epochs}",
        f"train.patience={args.epochs + 1}", "train.warmup_epochs=0", f"train.learning_rate={args.learning_rate}",
        "train.mixed_precision=off", "train.distribute=none",
    ])
    run = create_run(config)
    ctx = StageContext(config=config, run=run, emit=lambda event: None)
    assert run_stage(ctx, "index") == "done" and run_stage(ctx, "split") == "done"
    splits, classes = load_splits(run)
    folders = {}
    for split in ("train", "val"):
        folder = work / "baseline" / split
        rows = splits[splits["split"] == split]
        for path, label in zip(rows["path"], rows["class_index"].astype(int), strict=True):
            target = folder / f"{label:04d}" / Path(path).name
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(Path(data) / path, target)
            except OSError:
                shutil.copyfile(Path(data) / path, target)
        folders[split] = str(folder)
    sizes = {split: int((splits["split"] == split).sum()) for split in ("train", "val")}
    print(f"data: the demo's drawings, {len(classes)} classes, {sizes['train']} train / {sizes['val']} val "
          f"images; {args.height}x{args.width}, batch {args.batch}, {args.epochs} epochs", flush=True)
    return run.path, folders


def run_ours(run: Path) -> dict:
    """``carclf-tui --resume RUN --stage train`` in a fresh process; its times from the event log."""
    from carclf_core.eventlog import read_events

    log = run / "events.jsonl"
    events_before = len(read_events(log).events) if log.is_file() else 0
    started = time.time()
    done = subprocess.run([sys.executable, "-m", "carclf_tui.cli", "--resume", str(run), "--stage", "train",
                           "--plain"], cwd=ROOT, capture_output=True, text=True)
    ended = time.time()
    if done.returncode != 0:
        raise SystemExit(f"the train stage failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    events = read_events(run / "events.jsonl").events[events_before:]
    starts = [e.t for e in events if e.kind == "epoch_started"]
    fit_ended = next(e.t for e in events if e.kind == "stage_finished")
    summary = json.loads((run / "train" / "summary.json").read_text())
    return {"started": started, "ended": ended, "epoch_starts": starts, "fit_ended": fit_ended,
            "confusion_s": summary["confusion_s"]}


def run_baseline(folders: dict, work: Path, args: argparse.Namespace) -> dict:
    out = work / "baseline-out"
    out.mkdir(exist_ok=True)
    script = work / "plain_keras.py"
    script.write_text(PLAIN_KERAS)
    settings = {**folders, "height": args.height, "width": args.width, "batch": args.batch, "epochs": args.epochs,
                "learning_rate": args.learning_rate, "seed": 42, "out": str(out)}
    started = time.time()
    done = subprocess.run([sys.executable, str(script), json.dumps(settings)], capture_output=True, text=True)
    ended = time.time()
    if done.returncode != 0:
        raise SystemExit(f"the plain Keras script failed:\n{done.stderr[-3000:]}")
    return {"started": started, "ended": ended, **json.loads(done.stdout.strip().splitlines()[-1])}


def phases(times: dict) -> dict:
    """Wall, start-up, first epoch, median later epoch and the tail, in seconds."""
    starts = times["epoch_starts"]
    later = [b - a for a, b in zip(starts[1:], starts[2:], strict=False)]
    return {
        "wall": times["ended"] - times["started"],
        "startup": starts[0] - times["started"],
        "first_epoch": starts[1] - starts[0],
        "epoch": statistics.median(later) if later else float("nan"),
        "last_epoch_and_tail": times["ended"] - starts[-1],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="pairs of runs, alternating (default 2)")
    parser.add_argument("--height", type=int, default=48)
    parser.add_argument("--width", type=int, default=72)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.epochs < 3:
        parser.error("--epochs: at least 3 (the first epoch traces; later epochs are compared)")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="carclf-keras-baseline-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("CARCLF_CACHE", str(work / "cache"))
    run, folders = prepare(work, args)
    results: dict[str, list[dict]] = {"ours": [], "baseline": []}
    for number in range(args.rounds):
        for side in ("ours", "baseline") if number % 2 == 0 else ("baseline", "ours"):
            times = run_ours(run) if side == "ours" else run_baseline(folders, work, args)
            measured = phases(times)
            if side == "ours":
                measured["confusion_s"] = times["confusion_s"] / args.epochs
            results[side].append(measured)
            shown = ", ".join(f"{k} {v:.2f}" for k, v in measured.items())
            print(f"round {number + 1} {side:<8} {shown}", flush=True)
    median = {side: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for side, rows in results.items()}
    ours, base = median["ours"], median["baseline"]
    print(f"\nmedian over {args.rounds} rounds (seconds)   ours   baseline   ours/baseline")
    for key in ("wall", "startup", "first_epoch", "epoch", "last_epoch_and_tail"):
        print(f"  {key:<34} {ours[key]:6.2f} {base[key]:8.2f}   {ours[key] / base[key]:8.3f}")
    print(f"  of ours' epoch, the confusion matrix {ours['confusion_s']:.2f} s")
    print(json.dumps({"epoch_ratio": round(ours["epoch"] / base["epoch"], 3),
                      "wall_ratio": round(ours["wall"] / base["wall"], 3),
                      "wall_difference_s": round(ours["wall"] - base["wall"], 1),
                      "load_average": round(os.getloadavg()[0], 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
