"""Train photos: every copy, or one? (`split.copies_in_train`)

Builds the demo's photos into a collection shaped like the issue's real one (about 30 % of the photos
with 1 to 3 extra byte-identical copies), then runs index, split, train and evaluate once per
setting with the same split seed: val and test hold the same photos both times, so the settings are
compared on the same test photos. Prints, per setting, the training files and photos, seconds an
epoch and the test accuracy with its 95 % interval. Each run is a `carclf-tui` process of its own.

    python bench/bench_copies.py [--seeds 1 2] [--size 64x96] [--epochs 8]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from carclf_core import demo, splitting


def copied_collection(source: Path, target: Path, seed: int = 0) -> tuple[int, int]:
    """The demo photos with extra copies of 30 % of them; (photos, files)."""
    rng = np.random.default_rng(seed)
    photos = sorted(p for p in source.rglob("*.jpg"))
    target.mkdir(parents=True)
    files = 0
    for path in photos:
        shutil.copyfile(path, target / path.name)
        files += 1
        if rng.random() < 0.3:
            stem = path.stem
            for k in range(int(rng.integers(1, 4))):
                shutil.copyfile(path, target / f"{stem}c{k}{path.suffix}")  # the ID field gets a suffix
                files += 1
    return len(photos), files


def one_run(data: Path, root: Path, setting: str, seed: int, size: tuple[int, int], epochs: int) -> dict:
    overrides = demo.demo_overrides(data)
    sets = [
        f"data.dir={data}",
        f"run.root={root}",
        f"run.name=copies-{setting}-{seed}",
        "prefilter.mode=off",
        f"split.copies_in_train={setting}",
        f"split.seed={seed}",
        f"input.height={size[0]}",
        f"input.width={size[1]}",
        f"train.backbone={overrides['train']['backbone']}",
        "train.weights=null",
        f"train.epochs={epochs}",
        "train.patience=4",
        f"train.learning_rate={overrides['train']['learning_rate']}",
        "train.tensorboard=false",
        "evaluate.export_savedmodel=false",
    ]
    args = [sys.executable, "-m", "carclf_tui.cli", "--run-all", "--plain"]
    for s in sets:
        args += ["--set", s]
    done = subprocess.run(args, capture_output=True, text=True, cwd=root)
    if done.returncode != 0:
        raise SystemExit(done.stdout[-3000:] + done.stderr[-3000:])
    (run,) = [p for p in root.iterdir() if p.name.endswith(f"copies-{setting}-{seed}")]
    splits = pd.read_csv(run / "split" / "splits.csv", dtype=str, keep_default_na=False)
    train = splitting.split_sizes(splits)["train"]
    metrics = json.loads((run / "evaluate" / "metrics.json").read_text())
    summary = json.loads((run / "train" / "summary.json").read_text())
    return {
        "setting": setting,
        "seed": seed,
        "train_photos": train["photos"],
        "train_files": train["files"],
        "epochs": summary["epochs_run"],
        "s_per_epoch": round(summary["fit_s"] / max(summary["epochs_run"], 1), 1),
        "val_accuracy": summary["val_accuracy"],
        "test_accuracy": metrics["accuracy"],
        "test_accuracy_ci": [round(v, 3) for v in metrics["accuracy_ci"]],
        "test_photos": metrics["photos"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--size", default="64x96")
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "copies"
        photos, files = copied_collection(demo.ensure_demo_data(), data)
        print(json.dumps({"photos": photos, "files": files}), flush=True)
        for seed in args.seeds:
            for setting in ("all", "one"):
                result = one_run(data, Path(tmp), setting, seed, (size[0], size[1]), args.epochs)
                print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
