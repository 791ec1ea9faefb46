"""The learned prefilter rule against the number of labels, on data with known answers.

The demo data's interiors and close-ups are known non-cars (``carclf_core.demo.known_kinds`` names
them), so every decision can be checked. The run is the real thing: the demo indexed and scored by the
real EfficientNet-Lite0 (the ``demo`` extra), ``probs.npy`` kept. Then, from the stored scores only:

- **queue**: labels picked one at a time by uncertainty sampling (the dashboard's queue, refitted
  after each label, as ``t`` / ``y`` / ``n`` do), answered from the known kinds;
- **random**: the same number of photos picked at random (several seeds; median and range);
- for 5 .. 60 labels, the learned rule's precision and recall for whole cars over every photo, and
  its cross-validated estimate on the labels alone (what the tab shows);
- both feature sets: ``probs`` (the 1000 log-probabilities) and ``car_probs`` (``rule_inputs.npz``'s car
  classes only);
- the threshold rule on the same photos: the default 0.1 and the best threshold.

No real car-photo collection is on this machine: these are the demo's drawings, on which a threshold
already separates well, so the figures say how fast the rule learns, not that it beats a threshold on
real photos.

    python bench/bench_teach.py                 # scores the demo first (about 20 s), in a scratch folder
    python bench/bench_teach.py --run RUN       # a run of the demo whose prefilter kept probs.npy
    python bench/bench_teach.py --resize pad    # scores blurred by padding: a threshold does worse
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

COUNTS = (5, 10, 15, 20, 30, 40, 60)
SEEDS = 5


def scored_demo(folder: Path, resize: str) -> Path:
    """A new demo run through index and prefilter (the real EfficientNet-Lite0, ``prefilter.resize``)."""
    result = subprocess.run(
        [sys.executable, "-m", "carclf_tui.cli", "--demo", "--stage", "index", "--stage", "prefilter", "--plain",
         "--set", f"run.root={folder}", "--set", f"prefilter.resize={resize}"],
        capture_output=True, text=True, cwd=folder, check=False,
    )
    if result.returncode != 0:
        sys.exit(f"scoring the demo failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    (run,) = [p for p in folder.iterdir() if p.is_dir()]
    return run


def quality(decided: np.ndarray, cars: np.ndarray) -> tuple[float, float]:
    hits = int((decided & cars).sum())
    return (hits / int(decided.sum()) if decided.any() else float("nan"), hits / int(cars.sum()))


def best_threshold(car_prob: np.ndarray, cars: np.ndarray, recall: float) -> tuple[float, float, float]:
    """(threshold, precision, recall) of the threshold with the best precision at >= ``recall``."""
    best = (float("nan"), 0.0, 0.0)
    for t in np.unique(car_prob[~np.isnan(car_prob)]):
        precision, got = quality(car_prob >= t, cars)
        if got >= recall and precision > best[1]:
            best = (float(t), precision, got)
    return best


def learn_curve(teacher, cars: np.ndarray, truth: list[bool], pick: str, seed: int, threshold: float) -> dict:
    """Precision/recall over every photo and the estimate, at each of :data:`COUNTS` labels."""
    from carclf_core.prefilter import learned

    teacher.labels = learned.empty_labels()
    teacher.y = np.full(len(truth), np.nan)
    teacher.model = teacher.odds = None
    order = np.random.default_rng(seed).permutation(np.flatnonzero(teacher.usable))
    order = learned.first_per_photo(order, teacher.shas)
    curve = {}
    for n in range(1, max(COUNTS) + 1):
        if pick == "queue":
            row = int(teacher.queue(threshold, 1)[0])
        else:
            row = int(order[n - 1])
        teacher.y[row] = 1.0 if truth[row] else 0.0  # as Teacher.label, without writing a labels file
        if n not in COUNTS:
            if pick == "queue" and learned.can_fit(teacher.y):
                rows, x, y = teacher.labelled()
                teacher.model = learned.fit(x, y, teacher.features)
                teacher.odds = teacher._all_odds(teacher.model)
            continue
        if not learned.can_fit(teacher.y):
            curve[n] = None
            continue
        rows, x, y = teacher.labelled()
        teacher.model = learned.fit(x, y, teacher.features)
        teacher.odds = teacher._all_odds(teacher.model)
        precision, recall = quality(teacher.odds > 0, cars)
        estimate = learned.estimate(x, y, teacher.features)
        curve[n] = {"precision": precision, "recall": recall,
                    "cv_precision": estimate["precision"] if estimate else None,
                    "cv_recall": estimate["recall"] if estimate else None,
                    "cars_labelled": int(y.sum())}
    return curve


def summarise(curves: list[dict], key: str, n: int) -> str:
    values = [c[n][key] for c in curves if c.get(n) is not None and c[n][key] is not None]
    if not values:
        return "  -  "
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.median(values):.3f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a demo run whose prefilter stored probs.npy")
    parser.add_argument("--resize", default="center_crop", choices=("center_crop", "crop_or_pad", "pad"),
                        help="prefilter.resize of the scoring (pad: a harder case, the scores blur)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    from carclf_core import demo
    from carclf_core.prefilter import scores as store
    from carclf_core.runs import open_run

    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        run = open_run(args.run or scored_demo(Path(scratch), args.resize))
        scoring_s = time.perf_counter() - started
        threshold = run.load_config().prefilter.threshold
        base = store.Teacher.open(run, str(Path(scratch) / "labels.csv"))
        kinds = demo.known_kinds([str(p) for p in base.paths])
        missing = [str(p) for p in base.paths if str(p) not in kinds]
        if missing:
            sys.exit(f"not demo pictures: {missing[:3]} ...; run on the demo data")
        truth = [kinds[str(p)] == "car" for p in base.paths]
        cars = np.array(truth) & base.usable
        car_prob = base.car_prob
        default = quality(car_prob > threshold, cars)
        results: dict = {
            "run": str(run.path), "resize": run.load_config().prefilter.resize,
            "photos": int(base.usable.sum()), "cars": int(cars.sum()),
            "not_cars": int((~cars & base.usable).sum()), "scoring_s": round(scoring_s, 1),
            "threshold_default": {"threshold": threshold, "precision": default[0], "recall": default[1]},
            "threshold_best": {str(r): best_threshold(car_prob, cars, r) for r in (0.95, 0.97, 1.0)},
            "curves": {},
        }
        started = time.perf_counter()
        for features in ("probs", "car_probs"):
            teacher = dataclasses.replace(base, features=features)
            queue = [learn_curve(teacher, cars, truth, "queue", 0, threshold)]
            randoms = [learn_curve(teacher, cars, truth, "random", seed, threshold) for seed in range(SEEDS)]
            results["curves"][features] = {"queue": queue, "random": randoms}
        results["learning_s"] = round(time.perf_counter() - started, 1)

    print(f"demo run {results['run']}: {results['photos']} photos, {results['cars']} whole cars, "
          f"{results['not_cars']} interiors and close-ups (known by name)"
          + (f"; scored in {results['scoring_s']} s" if not args.run else ""))
    print(f"prefilter.resize {results['resize']}; threshold {threshold}: precision {default[0]:.3f} "
          f"recall {default[1]:.3f}")
    for r, (t, p, got) in results["threshold_best"].items():
        print(f"best threshold at recall >= {r}: {t:.4f}, precision {p:.3f} recall {got:.3f}")
    for features, both in results["curves"].items():
        print(f"\nlearned rule on {features}: precision / recall over every photo (random: median of {SEEDS} "
              "seeds, range); cv: the estimate the tab shows")
        print(f"{'labels':>6}  {'queue prec':>10} {'queue rec':>9} {'cv prec':>7} {'cv rec':>6}   "
              f"{'random prec':>24} {'random rec':>24}")
        for n in COUNTS:
            q = both["queue"]
            print(f"{n:>6}  {summarise(q, 'precision', n):>10} {summarise(q, 'recall', n):>9} "
                  f"{summarise(q, 'cv_precision', n):>7} {summarise(q, 'cv_recall', n):>6}   "
                  f"{summarise(both['random'], 'precision', n):>24} {summarise(both['random'], 'recall', n):>24}")
    print(f"\nlearning (every count, both feature sets, queue and {SEEDS} random orders): {results['learning_s']} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
