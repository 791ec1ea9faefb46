"""Scale: the stages whose cost grows with files and classes, on 300,000 synthetic images in 3,000 classes.

The data set is ``carclf_core.synthetic``'s (64x48 JPEGs in the 17-field name format, imbalanced
classes, 2 % byte-identical copies, a tenth of them under another class), generated once into the
cache. Each step runs in a process of its own, so the peak memory it reports (``ru_maxrss``) is its
own; its time is measured inside, after the imports, whose resident memory is reported beside the peak.

Steps (targets on 2 cores):

- index: the index stage (scan, parse, read + hash + check every file, duplicate groups).
  Target >= 2,000 files/s and < 1 GB peak.
- split: the split stage with split.top_n = classes (group-aware, stratified). Target < 1 GB peak.
- scores: a prefilter score store for every image as the stage writes it (chunk files, scores.csv,
  rule_inputs.npz, probs.npy), from synthetic probabilities (the model's part is bench_prefilter's).
- rethreshold: ``reapply(threshold=...)`` as the dashboard's +/- keys call it (nothing written).
  Target < 2 s. Beside it the old way (every probability column loaded into the scores table),
  measured in the same run, as the baseline of the ratio.
- save: ``reapply(..., write=True)``: kept.csv, rejected.csv, rule.json, the config and the events.
- top_k: ``reapply(rule="top_k")``: k 5 from the stored top-10, k 20 from probs.npy a slice at a time.
- heatmap: ``heatmap.render`` of a classes x classes confusion matrix at three terminal sizes; the
  confusion tab's most-confused pairs and per-class table.
- dashboard: the app's first frame on a recorded run of that many classes (a fresh process, as
  bench_tui measures it; target < 1 s), and its replay until the run shows done and the confusion
  tab is drawn.

Timings on a shared machine move with the load (printed before and after): the index's CPU
milliseconds a file are the steadier figure.

    python bench/bench_scale.py                  # 300,000 images in 3,000 classes (generated once: ~10 min, 1.2 GB)
    python bench/bench_scale.py --small          # 20,000 images in 200 classes
    python bench/bench_scale.py --images 50000 --classes 500 --steps index,split --keep runs-scale
"""

from __future__ import annotations

import sys
from pathlib import Path as _Path

sys.path.insert(0, str(_Path(__file__).resolve().parent.parent))  # the repository, not only an install

import argparse
import asyncio
import dataclasses
import json
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

from carclf_core import config as config_mod
from carclf_core import events as ev
from carclf_core import synthetic
from carclf_core.eventlog import JsonlSink
from carclf_core.pipeline import StageContext
from carclf_core.prefilter import rule as rule_mod
from carclf_core.prefilter import scores as store
from carclf_core.runs import RunDir, create_run, open_run

STEPS = ("index", "split", "scores", "rethreshold", "save", "top_k", "heatmap", "dashboard")
TARGET_INDEX_FILES_S = 2_000
TARGET_PEAK_MB = 1_024
TARGET_RETHRESHOLD_S = 2.0
TARGET_FIRST_FRAME_S = 1.0
DASHBOARD_EPOCHS = 12
CONFUSION_SAMPLE = 2_000
"""Validation images in each epoch's confusion matrix (``train.confusion_sample``'s default)."""


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# --- the steps, each run in a child process -------------------------------------------------------


def _stage(run: RunDir, name: str) -> dict:
    """Run one real stage on ``run`` with the headless runner's event log as its sink."""
    from carclf_core.registry import run_stage

    sink = JsonlSink(run.events_path)
    try:
        ctx = StageContext(config=run.load_config(), run=run, emit=sink)
        started, cpu = time.perf_counter(), time.process_time()
        status = run_stage(ctx, name)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        sink.close()
    state = run.read_state()["stages"][name]
    if status != "done":
        raise SystemExit(f"{name} stage {status}: {state.get('summary')}")
    return {"seconds": seconds, "cpu_s": cpu, "summary": state["summary"], "result": state.get("result", {})}


def step_index(run: RunDir) -> dict:
    out = _stage(run, "index")
    out["files"] = int(out["result"]["files"])
    return out


def step_split(run: RunDir) -> dict:
    return _stage(run, "split")


def synthetic_probabilities(rows: int, seed: int, car_classes: list[int]) -> np.ndarray:
    """Peaked float16 rows over the 1000 ImageNet classes; about 85 % of them car pictures (their mass
    on the car classes), the rest interiors and close-ups (little car mass)."""
    rng = np.random.default_rng(seed)
    logits = rng.standard_exponential((rows, rule_mod.NUM_CLASSES), dtype=np.float32) ** 4
    cars = rng.random(rows) < 0.85
    logits[np.ix_(cars, car_classes)] *= rng.uniform(5, 400, size=(int(cars.sum()), 1)).astype(np.float32)
    return (logits / logits.sum(axis=1, keepdims=True)).astype(np.float16)


def step_scores(run: RunDir) -> dict:
    """The prefilter stage's storing part at full size: chunk files, then the scores table and decision."""
    from carclf_core.prefilter.classifiers import imagenet_labels
    from carclf_core.stages.index import load_index

    cfg = run.load_config().prefilter
    index = load_index(run)
    paths = index.loc[index["status"] == "ok", "path"].astype(str).tolist()
    del index
    labels = imagenet_labels()
    started = time.perf_counter()
    folder, _ = store.open_chunks(run, {"model": "synthetic probabilities", "seed": 0})
    chunks, probability_s = [], 0.0
    for number, start in enumerate(range(0, len(paths), cfg.chunk_size)):
        part = paths[start : start + cfg.chunk_size]
        t = time.perf_counter()
        probs = synthetic_probabilities(len(part), number, list(cfg.car_classes))
        probability_s += time.perf_counter() - t
        chunk = store.Chunk(np.array(part, dtype=str), probs, np.full(len(part), "", dtype=str))
        store.write_chunk(store.chunk_path(folder, number), chunk)
        chunks.append(chunk)  # as the stage's tally holds them
    chunks_s = time.perf_counter() - started - probability_s
    t = time.perf_counter()
    scores = store.write_scores(run, chunks, cfg.car_classes, labels, store_probs=cfg.store_probs)
    write_s = time.perf_counter() - t
    t = time.perf_counter()
    result = store.decide(run, scores, store.config_rule(cfg))
    decide_s = time.perf_counter() - t
    return {
        "seconds": chunks_s + write_s + decide_s,
        "rows": len(scores),
        "chunks_s": chunks_s,
        "write_scores_s": write_s,
        "decide_s": decide_s,
        "kept": result["kept"],
        "probs_mb": (run.prefilter_dir / store.PROBS).stat().st_size / 1e6 if cfg.store_probs else 0.0,
        "rule_inputs_mb": (run.prefilter_dir / store.RULE_INPUTS).stat().st_size / 1e6,
        "scores_csv_mb": (run.prefilter_dir / "scores.csv").stat().st_size / 1e6,
    }


def old_reapply(run: RunDir, threshold: float) -> int:
    """Round one's re-threshold, the baseline: every probability column loaded into the scores table
    (its ``load_scores``), the rule applied to it, and the kept and rejected tables built."""
    scores = store.load_scores(run)
    probs = np.load(run.prefilter_dir / store.PROBS, mmap_mode="r")
    scores = pd.concat([scores, pd.DataFrame(np.asarray(probs), columns=list(rule_mod.PROB_COLUMNS))], axis=1)
    classes = list(store.current_rule(run)["car_classes"])
    is_car = rule_mod.apply_rule(scores, "prob_sum", threshold, 5, classes)
    car_prob = scores[[f"p{c}" for c in classes]].to_numpy(dtype=np.float64).sum(axis=1)
    car_prob[scores["status"].to_numpy() == rule_mod.BROKEN] = np.nan
    car_prob = np.round(car_prob, 6)
    rejected = car_prob[~is_car]
    pd.DataFrame({"path": scores["path"].to_numpy()[is_car], "car_prob": car_prob[is_car]})
    reasons = [f"car probability {p:.3f} <= threshold {threshold:g}" for p in rejected]
    pd.DataFrame({"path": scores["path"].to_numpy()[~is_car], "car_prob": rejected, "reason": reasons})
    return int(is_car.sum())


def _timed_calls(calls) -> tuple[list[float], list]:
    times, results = [], []
    for call in calls:
        t = time.perf_counter()
        results.append(call())
        times.append(time.perf_counter() - t)
    return times, results


def step_rethreshold(run: RunDir) -> dict:
    thresholds = (0.2, 0.25, 0.3)
    times, results = _timed_calls([lambda t=t: store.reapply(run, threshold=t) for t in thresholds])
    return {"seconds": statistics.median(times), "times": times, "kept": [r["kept"] for r in results]}


def step_rethreshold_old(run: RunDir) -> dict:
    times, kept = _timed_calls([lambda t=t: old_reapply(run, t) for t in (0.2, 0.25, 0.3)])
    return {"seconds": statistics.median(times), "times": times, "kept": kept}


def step_save(run: RunDir) -> dict:
    times, results = _timed_calls([lambda: store.reapply(run, threshold=0.2, write=True)])
    return {"seconds": times[0], "kept": results[0]["kept"]}


def step_top_k(run: RunDir) -> dict:
    times, results = _timed_calls(
        [lambda: store.reapply(run, rule="top_k", top_k=5), lambda: store.reapply(run, rule="top_k", top_k=20)]
    )
    return {"seconds": times[1], "k5_s": times[0], "k20_s": times[1], "kept": [r["kept"] for r in results]}


def confusion_matrix(classes: int, sample: int, seed: int = 0) -> np.ndarray:
    """A validation confusion matrix of ``sample`` images over ``classes`` classes: 60 % right, the
    rest spread over neighbouring classes (as look-alike models of one make would be)."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, classes, sample)
    wrong = rng.random(sample) >= 0.6
    pred = np.where(wrong, (true + rng.integers(1, 30, sample)) % classes, true)
    return np.bincount(true * classes + pred, minlength=classes * classes).reshape(classes, classes)


def class_names(classes: int) -> list[str]:
    return ["_".join(synthetic.class_name(c)) for c in range(classes)]


def step_heatmap(run: RunDir) -> dict:
    from carclf_core import heatmap, metrics

    classes = int(run.load_config().split.top_n)
    names = class_names(classes)
    # a full evaluation's matrix: every test image counted (about 15 a class)
    matrix = confusion_matrix(classes, 15 * classes)
    sizes = ((200, 60), (120, 40), (80, 24))
    out = {}
    for width, height in sizes:
        times, lines = _timed_calls([lambda w=width, h=height: heatmap.render(matrix, names, w, h)] * 3)
        out[f"render_{width}x{height}_s"] = statistics.median(times)
        assert lines[0] and all(len(line) <= width for line in lines[0])
    times, _ = _timed_calls([lambda: metrics.most_confused(matrix, names, k=20)])
    out["most_confused_s"] = times[0]
    times, _ = _timed_calls([lambda: metrics.per_class_metrics(matrix, names)])
    out["per_class_s"] = times[0]
    out["seconds"] = max(v for k, v in out.items() if k.startswith("render"))
    out["classes"] = classes
    return out


def dashboard_path(run: RunDir, confusion: bool = True) -> Path:
    classes = int(run.load_config().split.top_n)
    return run.path.parent / (f"dashboard-{classes}" if confusion else f"dashboard-{classes}-no-confusion")


def step_dashboard_run(run: RunDir) -> dict:
    """Record a finished run of ``split.top_n`` classes for the dashboard, as the real stages write it:
    sample_run's stream with each epoch's confusion matrix over every class (as ConfusionCallback
    emits it); and the same run without the confusion events, to tell their cost from the rest."""
    from carclf_tui.sample_run import make_run_dir, run_events

    classes = int(run.load_config().split.top_n)
    names = tuple(class_names(classes))
    matrix = confusion_matrix(classes, CONFUSION_SAMPLE)
    dash = make_run_dir(dashboard_path(run).parent, dashboard_path(run).name)
    lean = make_run_dir(dashboard_path(run).parent, dashboard_path(run, confusion=False).name)
    started = time.perf_counter()
    lines, longest = 0, 0
    with open(dash.events_path, "a", encoding="utf-8") as full, open(lean.events_path, "a", encoding="utf-8") as other:
        for event in run_events(epochs=DASHBOARD_EPOCHS, steps=40):
            if isinstance(event, ev.ConfusionReady):
                fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event) if f.name != "cells"}
                fields.update(classes=names, sample=CONFUSION_SAMPLE, matrix=())
                event = ev.ConfusionReady.of(matrix, **fields)  # as ConfusionCallback sends it
            else:
                other.write(ev.to_json(event) + "\n")
            line = ev.to_json(event)
            longest = max(longest, len(line))
            full.write(line + "\n")
            lines += 1
    return {
        "seconds": time.perf_counter() - started,
        "path": str(dash.path),
        "lean_path": str(lean.path),
        "events": lines,
        "log_mb": dash.events_path.stat().st_size / 1e6,
        "confusion_line_mb": longest / 1e6,
    }


def step_dashboard_replay(run: RunDir, confusion: bool = True) -> dict:
    """The app on the recorded run: from start until every event is folded and the run shows done,
    then the confusion tab drawn."""
    from carclf_tui.app import CarclfApp

    dash = open_run(dashboard_path(run, confusion))

    async def replay() -> dict:
        app = CarclfApp(dash, config_mod.Config(), poll_interval=0.02)
        started = time.perf_counter()
        async with app.run_test(size=(120, 36)) as pilot:
            while app.screen.state.run_status != "done" and time.perf_counter() - started < 120:
                await pilot.pause(0.01)
            done = time.perf_counter() - started
            await pilot.press("3")
            await pilot.pause()
            state = app.screen.state
            return {
                "seconds": time.perf_counter() - started,
                "folded_s": done,
                "status": state.run_status,
                "epochs": len(state.epoch_rows),
                "bad_lines": state.bad_lines,
                "confusion_classes": len(state.confusion.classes) if state.confusion else 0,
            }

    return asyncio.run(replay())


CHILD_STEPS = {
    "index": step_index,
    "split": step_split,
    "scores": step_scores,
    "rethreshold": step_rethreshold,
    "rethreshold_old": step_rethreshold_old,
    "save": step_save,
    "top_k": step_top_k,
    "heatmap": step_heatmap,
    "dashboard_run": step_dashboard_run,
    "dashboard_replay": step_dashboard_replay,
    "dashboard_replay_lean": lambda run: step_dashboard_replay(run, confusion=False),
}


def child(step: str, run_path: Path) -> None:
    run = open_run(run_path)
    imported_mb = psutil.Process().memory_info().rss / 2**20
    out = CHILD_STEPS[step](run)
    out.update(peak_mb=_peak_mb(), imported_mb=imported_mb)
    print(json.dumps(out))


def in_child(step: str, run: RunDir) -> dict:
    """Run ``step`` in a fresh interpreter; its last output line is the step's JSON."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", step, "--run", str(run.path)], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"step {step} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the report -----------------------------------------------------------------------------------


def _memory(out: dict, target_mb: float | None = None) -> str:
    text = f"peak RSS {out['peak_mb']:,.0f} MB (after imports {out['imported_mb']:,.0f} MB)"
    if target_mb:
        verdict = "meets" if out["peak_mb"] < target_mb else "MISSES"
        text += f", target < {target_mb:,.0f} MB: {out['peak_mb'] / target_mb:.2f}x, {verdict}"
    return text


def _faster(seconds: float, target: float) -> str:
    return f"target < {target:g} s: {seconds / target:.2f}x, {'meets' if seconds < target else 'MISSES'}"


def report(step: str, out: dict, extra: dict) -> str:
    if step == "index":
        rate = out["files"] / out["seconds"]
        verdict = "meets" if rate >= TARGET_INDEX_FILES_S else "MISSES"
        return (
            f"index: {out['files']:,} files in {out['seconds']:.1f} s = {rate:,.0f} files/s (target >= "
            f"{TARGET_INDEX_FILES_S:,}: {rate / TARGET_INDEX_FILES_S:.2f}x, {verdict}); "
            f"{1000 * out['cpu_s'] / out['files']:.2f} CPU ms a file; {_memory(out, TARGET_PEAK_MB)}\n"
            f"       {out['summary']}"
        )
    if step == "split":
        return f"split: {out['seconds']:.1f} s; {_memory(out, TARGET_PEAK_MB)}\n       {out['summary']}"
    if step == "scores":
        return (
            f"scores: {out['rows']:,} rows stored in {out['seconds']:.1f} s (chunk files {out['chunks_s']:.1f} s, "
            f"scores.csv + rule_inputs.npz + probs.npy {out['write_scores_s']:.1f} s, "
            f"decision {out['decide_s']:.1f} s); "
            f"probs.npy {out['probs_mb']:,.0f} MB, rule_inputs.npz {out['rule_inputs_mb']:,.1f} MB, scores.csv "
            f"{out['scores_csv_mb']:,.0f} MB; {_memory(out)}"
        )
    if step == "rethreshold":
        text = (
            f"re-threshold (reapply, nothing written): median {out['seconds']:.2f} s over "
            f"{', '.join(f'{t:.2f}' for t in out['times'])} ({_faster(out['seconds'], TARGET_RETHRESHOLD_S)}); "
            f"{_memory(out)}"
        )
        old = extra.get("rethreshold_old")
        if old:
            same = "same kept counts" if old["kept"] == out["kept"] else f"KEPT DIFFERS {old['kept']} vs {out['kept']}"
            text += (
                f"\n       the old way (every probability column in the table): median {old['seconds']:.2f} s, "
                f"{_memory(old)}; ratio {old['seconds'] / out['seconds']:.1f}x faster, "
                f"{old['peak_mb'] / out['peak_mb']:.1f}x less memory; {same}"
            )
        return text
    if step == "save":
        return f"save (reapply write=True): {out['seconds']:.2f} s; {_memory(out)}"
    if step == "top_k":
        return (
            f"top_k: k 5 (stored top-10) {out['k5_s']:.2f} s, k 20 (probs.npy a slice at a time) {out['k20_s']:.2f} s; "
            f"kept {out['kept'][0]:,} / {out['kept'][1]:,}; {_memory(out)}"
        )
    if step == "heatmap":
        renders = ", ".join(f"{k[7:-2]} {1000 * v:.0f} ms" for k, v in out.items() if k.startswith("render_"))
        return (
            f"heatmap of {out['classes']:,} classes: {renders}; most_confused {1000 * out['most_confused_s']:.0f} ms, "
            f"per-class table {1000 * out['per_class_s']:.0f} ms; {_memory(out)}"
        )
    if step == "dashboard":
        made, replay = extra["dashboard_run"], out
        frame = extra["first_frame"]
        verdict = "meets" if frame[0] < TARGET_FIRST_FRAME_S else "MISSES"
        confusion = (
            f"confusion tab shows {replay['confusion_classes']:,} classes"
            if replay["confusion_classes"]
            else f"confusion tab EMPTY: each epoch's confusion line is {made['confusion_line_mb']:.1f} MB, over "
            f"the reader's 1 MiB cap, so {replay['bad_lines']} lines were skipped"
        )
        lean, lean_frame = extra["replay_lean"], extra["first_frame_lean"]
        lean_verdict = "meets" if lean_frame[0] < TARGET_FIRST_FRAME_S else "MISSES"
        return (
            f"dashboard, {made['events']:,} events ({made['log_mb']:,.0f} MB) of a {DASHBOARD_EPOCHS}-epoch run of "
            f"{extra['classes']:,} classes: first frame {frame[0]:.2f} s after the first import ({frame[1]:.2f} s with "
            f"the interpreter; target < {TARGET_FIRST_FRAME_S:g} s: {frame[0] / TARGET_FIRST_FRAME_S:.2f}x, {verdict}; "
            f"tensorflow imported: {frame[2]}); replay until shown done {replay['folded_s']:.2f} s, confusion tab "
            f"drawn at {replay['seconds']:.2f} s; {_memory(replay)}\n       {confusion}\n"
            f"       the same run without its confusion events: first frame {lean_frame[0]:.2f} s ({lean_verdict}), "
            f"replay {lean['folded_s']:.2f} s; {_memory(lean)}"
        )
    raise KeyError(step)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=synthetic.FULL_IMAGES)
    parser.add_argument("--classes", type=int, default=synthetic.FULL_CLASSES)
    parser.add_argument("--small", action="store_true", help="20,000 images in 200 classes")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated, of {', '.join(STEPS)}")
    parser.add_argument("--no-baseline", action="store_true", help="skip the old re-threshold (1-2 GB at full size)")
    parser.add_argument("--keep", type=Path, help="keep the run folders here (default: a temporary folder)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--run", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.run)
    images, classes = (synthetic.SMALL_IMAGES, synthetic.SMALL_CLASSES) if args.small else (args.images, args.classes)
    steps = [s for s in args.steps.split(",") if s]
    unknown = set(steps) - set(STEPS)
    if unknown:
        parser.error(f"--steps: unknown {', '.join(sorted(unknown))}; known: {', '.join(STEPS)}")

    last = [0.0]

    def progress(done: int, total: int) -> None:
        if time.monotonic() - last[0] > 10 or done == total:
            last[0] = time.monotonic()
            print(f"  generating the data set: {done:,} / {total:,} files", flush=True)

    started = time.perf_counter()
    data = synthetic.ensure_synthetic(images, classes, progress=progress)
    made = json.loads((data / "synthetic.json").read_text())
    print(
        f"data: {data} ({made['images']:,} images in {made['classes']:,} classes, {made['copies']:,} copies, "
        f"{made['cross_class_copies']:,} under another class; ready in {time.perf_counter() - started:.1f} s)"
    )
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start")
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    config = config_mod.from_dict(
        {
            "data": {"dir": str(data)},
            "prefilter": {"mode": "score"},  # scored and stored, every image stays (split needs no model)
            "split": {"top_n": classes},
            "run": {"root": str(root), "name": f"scale-{images}"},
        }
    )
    run = create_run(config)
    results: dict[str, dict] = {}
    try:
        for step in STEPS:
            if step not in steps:
                continue
            extra: dict = {"classes": classes}
            if step == "rethreshold" and not args.no_baseline:
                extra["rethreshold_old"] = in_child("rethreshold_old", run)
            if step == "dashboard":
                from bench_tui import first_frame

                extra["dashboard_run"] = in_child("dashboard_run", run)
                extra["first_frame"] = first_frame(Path(extra["dashboard_run"]["path"]), size=(120, 36))
                extra["first_frame_lean"] = first_frame(Path(extra["dashboard_run"]["lean_path"]), size=(120, 36))
                extra["replay_lean"] = in_child("dashboard_replay_lean", run)
                out = in_child("dashboard_replay", run)
            else:
                out = in_child(step, run)
            results[step] = {**out, **extra}
            print(report(step, out, extra), flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"machine: load average {os.getloadavg()[0]:.1f} at the end")
    print(json.dumps({"images": images, "classes": classes, "cpus": os.cpu_count(), "results": results}, default=str))


if __name__ == "__main__":
    main()
