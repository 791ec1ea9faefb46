"""A recorded run directory made of synthetic but well-formed events, without running anything.

Used by the dashboard's tests, the screenshot script and the benchmark, so they can replay a full
run (index, prefilter, split, train with batches, patience and confusion, evaluate) deterministically
and without TensorFlow. Events are built as the real stages build them and written with
``events.to_json``; timestamps start at a fixed time so drawings do not depend on the clock.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from pathlib import Path

from carclf_core import config as config_mod
from carclf_core import events as ev
from carclf_core.runs import RunDir, mark_as_run, write_json_atomic, write_text_atomic

T0 = 1_767_268_800.0  # 2026-01-01 12:00 UTC: fixed, so recorded durations and times never change
CLASSES = ("Audi A4", "Ford F-150", "Land Rover Range Rover", "Volkswagen Golf", "Chevrolet Corvette",
           "Mercedes-Benz Sprinter", "Volvo V90", "BMW 4 Series")


class _Clock:
    def __init__(self, start: float = T0):
        self.t = start

    def __call__(self, step: float = 0.0) -> float:
        self.t += step
        return self.t


def make_run_dir(root: Path, name: str = "20260101-120000-demo", config: config_mod.Config | None = None) -> RunDir:
    """A run folder with a resolved ``config.yaml`` and an empty ``state.json``, at a fixed name."""
    path = Path(root) / name
    path.mkdir(parents=True, exist_ok=True)
    run = RunDir(path)
    mark_as_run(path)
    write_text_atomic(run.config_path, config_mod.dump(config or config_mod.Config()))
    write_json_atomic(run.state_path, {"stages": {}, "created": T0})
    return run


def training_events(clock: _Clock, epochs: int, steps: int, planned: int | None = None, patience: int = 4,
                    classes: tuple[str, ...] = CLASSES, batch_size: int = 32,
                    seed: int = 0) -> Iterator[ev.Event]:
    """The events of a train stage of ``epochs`` epochs of ``steps`` batches each."""
    rng = random.Random(seed)
    planned = planned or epochs
    best, best_epoch, wait = None, None, 0
    n = len(classes)
    for epoch in range(1, epochs + 1):
        yield ev.EpochStarted(t=clock(0.01), epoch=epoch, epochs=planned, steps=steps,
                              phase="warmup" if epoch == 1 else "finetune")
        for step in range(1, steps + 1):
            progress = epoch - 1 + step / steps
            loss = 2.0 * math.exp(-progress / 3) + 0.1 + rng.random() * 0.08
            acc = min(0.99, 1 - loss / 2.2)
            yield ev.BatchEnded(t=clock(0.05), epoch=epoch, step=step, steps=steps, loss=loss, accuracy=acc,
                                images_per_s=640.0 + rng.random() * 20, eta_s=(steps - step) * 0.05)
        loss = 2.0 * math.exp(-epoch / 3) + 0.12
        val_loss = 2.0 * math.exp(-epoch / 3.5) + 0.25 + (0.05 * (epoch - 8) if epoch > 8 else 0.0)
        metrics = {"loss": loss, "categorical_accuracy": min(0.99, 1 - loss / 2.2),
                   "top5": min(0.999, 1 - loss / 6), "val_loss": val_loss,
                   "val_categorical_accuracy": min(0.98, 1 - val_loss / 2.2), "val_top5": min(0.995, 1 - val_loss / 6)}
        yield ev.EpochEnded(t=clock(0.5), epoch=epoch, epochs=planned, metrics=metrics,
                            learning_rate=1e-3 if epoch == 1 else 1e-4, duration_s=steps * 0.05 + 0.5,
                            images_per_s=640.0, eta_s=(planned - epoch) * (steps * 0.05 + 0.5))
        if best is None or val_loss < best:
            best, best_epoch, wait = val_loss, epoch, 0
        else:
            wait += 1
        yield ev.PatienceChanged(t=clock(), epoch=epoch, wait=wait, patience=patience, best=best,
                                 best_epoch=best_epoch, monitor="val_loss")
        # A confusion matrix that sharpens as training goes on.
        strength = min(0.95, 0.3 + 0.08 * epoch)
        matrix = tuple(tuple(int(round(40 * strength)) if i == j else int(round(40 * (1 - strength) / (n - 1)
                                                                                 * (2 if j == (i + 1) % n else 0.5)))
                             for j in range(n)) for i in range(n))
        yield ev.ConfusionReady(t=clock(), epoch=epoch, classes=classes, matrix=matrix, split="val",
                                sample=sum(map(sum, matrix)))


def write_scores(run: RunDir, count: int = 400, seed: int = 1) -> list[float]:
    """A ``prefilter/scores.csv`` in the format ``carclf_core.prefilter.scores.load_scores`` reads."""
    rng = random.Random(seed)
    folder = Path(run.path) / "prefilter"
    folder.mkdir(parents=True, exist_ok=True)
    header = "path,status,reason,car_prob,top5," + ",".join(f"k{i}" for i in range(1, 11))
    lines, probs = [header], []
    for i in range(count):
        # Mostly confident cars, a tail of interiors and close-ups near zero.
        prob = round(min(1.0, max(0.0, rng.betavariate(5, 1) if i % 6 else rng.betavariate(1, 6))), 6)
        probs.append(prob)
        top = [656 if prob > 0.5 else 500 + (i % 7)] + [800 + k for k in range(9)]
        lines.append(f"img_{i:04d}.jpg,scored,,{prob},{'|'.join(map(str, top[:5]))},{','.join(map(str, top))}")
    (folder / "scores.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return probs


def run_events(epochs: int = 12, steps: int = 40, planned: int | None = None, finished: bool = True,
               scores: list[float] | None = None, threshold: float = 0.1) -> Iterator[ev.Event]:
    """The whole event stream of a run; with ``finished=False`` it stops inside training."""
    clock = _Clock()
    names = ("index", "prefilter", "split", "train", "evaluate")
    yield ev.RunStarted(t=clock(), run_dir="runs/20260101-120000-demo", stages=names, pid=4242)
    yield ev.StageStarted(t=clock(0.01), stage="index")
    for done in (200, 400, 596):
        yield ev.StageProgress(t=clock(0.15), stage="index", done=done, total=596, rate=1350.0, eta_s=0.1)
    for file, reason in (("Audi_A4_e00.jpg", "empty file"), ("Audi_A4_t00.jpg", "truncated image"),
                         ("Audi_A4_2019_only-four-fields.jpg", "file name: expected 17 fields, found 4")):
        yield ev.LogLine(t=clock(0.01), level="warning", message=f"rejected: {reason}", stage="index", file=file)
    yield ev.StageFinished(t=clock(0.01), stage="index", duration_s=0.5,
                           summary="592 images in 8 classes, 4 rejected")
    yield ev.StageStarted(t=clock(0.01), stage="prefilter", total=592)
    probs = scores or [0.9] * 500 + [0.02] * 92
    kept = sum(p > threshold for p in probs)
    for done in (200, 400, len(probs)):
        part = probs[:done]
        yield ev.StageProgress(t=clock(1.0), stage="prefilter", done=done, total=len(probs), rate=200.0,
                               eta_s=(len(probs) - done) / 200, info={"kept": sum(p > threshold for p in part),
                                                                       "scored": done})
    edges = tuple(i / 20 for i in range(21))
    counts = tuple(sum(1 for p in probs if edges[i] <= p < edges[i + 1] or (i == 19 and p == 1.0))
                   for i in range(20))
    yield ev.PrefilterHistogram(t=clock(), edges=edges, counts=counts, threshold=threshold, kept=kept,
                                scored=len(probs))
    above = sorted((p, i) for i, p in enumerate(probs) if p > threshold)[:4]
    below = sorted(((p, i) for i, p in enumerate(probs) if p <= threshold), reverse=True)[:4]
    yield ev.PrefilterExamples(t=clock(), kept=tuple((f"img_{i:04d}.jpg", p) for p, i in above),
                               rejected=tuple((f"img_{i:04d}.jpg", p) for p, i in below))
    yield ev.LogLine(t=clock(), level="info", message=f"{len(probs) - kept} pictures rejected as not a car",
                     stage="prefilter")
    yield ev.StageFinished(t=clock(0.01), stage="prefilter", duration_s=3.0,
                           summary=f"{kept:,} / {len(probs):,} kept")
    yield ev.StageStarted(t=clock(0.01), stage="split")
    yield ev.StageFinished(t=clock(0.05), stage="split", duration_s=0.05,
                           summary="8 classes: 416 train / 88 val / 88 test")
    yield ev.StageStarted(t=clock(0.01), stage="train", total=planned or epochs)
    yield from training_events(clock, epochs, steps, planned)
    if not finished:
        return
    yield ev.StageFinished(t=clock(0.1), stage="train", duration_s=clock.t - T0 - 4.0,
                           summary=f"{epochs} epochs, best val_loss at epoch {min(epochs, 8)}")
    yield ev.StageStarted(t=clock(0.01), stage="evaluate")
    yield ev.StageFinished(t=clock(2.0), stage="evaluate", duration_s=2.0, summary="test accuracy 0.871, top-5 0.990")
    yield ev.RunFinished(t=clock(), status="done")


def write_events(run: RunDir, events: Iterator[ev.Event] | list[ev.Event]) -> int:
    """Append ``events`` to the run's ``events.jsonl``; returns how many."""
    count = 0
    with open(run.events_path, "a", encoding="utf-8") as handle:
        for event in events:
            handle.write(ev.to_json(event) + "\n")
            count += 1
    return count


def write_sample_run(root: Path, name: str = "20260101-120000-demo", epochs: int = 12, steps: int = 40,
                     planned: int | None = None, finished: bool = True) -> RunDir:
    """A complete recorded run (with stored prefilter scores) under ``root``."""
    run = make_run_dir(root, name)
    probs = write_scores(run)
    write_events(run, run_events(epochs, steps, planned, finished, scores=probs))
    return run


def record_provenance(run: RunDir, names: tuple[str, ...] = ("index", "prefilter", "split", "train", "evaluate"),
                      duration_s: float = 1.0) -> None:
    """Record ``names`` as done in ``state.json`` with their provenance, as the real runner does when
    each stage finishes (the recorded events alone say nothing of what each stage was made from, so
    without this a saved threshold stales nothing)."""
    from carclf_core import provenance

    config = run.load_config()
    for name in names:
        run.update_stage_state(name, status="done", duration_s=duration_s, summary=f"{name} done")
        provenance.record(run, name, config, f"{name} as recorded")


def write_picture_run(root: Path, name: str = "20260101-140000-pictures", classes: int = 300, per_class: int = 2,
                      threshold: float = 0.1, seed: int = 2) -> RunDir:
    """A finished recorded run whose files are real pictures, for the views that show them.

    Beside the run folder, ``<name>-data/`` holds ``classes x per_class`` small JPEGs with 17-field names
    (:mod:`carclf_core.synthetic`'s pictures; the first is stored sideways with an EXIF orientation,
    as cameras do), and the run's config names that folder as ``data.dir``. The run has the index's
    ``index.csv`` (labels), the prefilter's ``scores.csv`` over every file, the evaluate stage's
    ``predictions.csv`` (every file a test image: mostly right, every third class's first picture
    taken for the next class) and its events: a test confusion matrix and the evaluate result with
    accuracy, balanced accuracy and the baselines.
    """
    import dataclasses
    import io

    from PIL import Image

    from carclf_core import metrics, synthetic
    from carclf_core.prefilter import rule

    data = Path(root) / f"{name}-data"
    data.mkdir(parents=True, exist_ok=True)
    base = config_mod.Config()
    config = dataclasses.replace(base, data=dataclasses.replace(base.data, dir=str(data.resolve())))
    run = make_run_dir(Path(root), name, config)
    labels = [f"{make}_{model}" for make, model in map(synthetic.class_name, range(classes))]
    files = [(synthetic.file_name(c * per_class + k, c), c) for c in range(classes) for k in range(per_class)]
    for i, (file, c) in enumerate(files):
        picture = synthetic.picture(i, c)
        if i == 0:  # stored rotated a quarter turn, upright only with its EXIF orientation (6) applied
            image = Image.open(io.BytesIO(picture)).transpose(Image.Transpose.ROTATE_90)
            exif = Image.Exif()
            exif[0x0112] = 6
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=85, exif=exif)
            picture = buffer.getvalue()
        (data / file).write_bytes(picture)
    Path(run.index_csv).parent.mkdir(parents=True, exist_ok=True)
    Path(run.index_csv).write_text("path,label,status\n" + "".join(f"{f},{labels[c]},ok\n" for f, c in files),
                                   encoding="utf-8")
    rng = random.Random(seed)
    probs = [round(rng.betavariate(5, 1) if i % 5 else rng.betavariate(1, 6), 6) for i in range(len(files))]
    folder = Path(run.path) / "prefilter"
    folder.mkdir(parents=True, exist_ok=True)
    top = ",".join(str(k) for k in range(656, 666))
    (folder / "scores.csv").write_text(
        "path,status,reason,car_prob,top5," + ",".join(f"k{i}" for i in range(1, 11)) + "\n"
        + "".join(f"{f},scored,,{p},656,{top}\n" for (f, _), p in zip(files, probs, strict=True)), encoding="utf-8")
    predicted = [(c + 1) % classes if k == 0 and c % 3 == 0 else c
                 for c in range(classes) for k in range(per_class)]
    true = [c for _, c in files]
    evaluate_dir = Path(run.path) / "evaluate"
    evaluate_dir.mkdir(parents=True, exist_ok=True)
    lines = ["path,label,predicted,probability,true_probability,correct,top5"]
    losses = random.Random(seed + 1)  # its own: the probabilities stay those of the recorded screenshots
    for (file, c), p in zip(files, predicted, strict=True):
        top5 = " | ".join(labels[(p + j) % classes] for j in range(5))
        probability = 0.55 + 0.4 * rng.random()
        true_probability = probability if c == p else (1 - probability) * losses.random()
        lines.append(f"{file},{labels[c]},{labels[p]},{probability:.4f},{true_probability:.4f},{c == p},{top5}")
    (evaluate_dir / "predictions.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    # the first batch, as the evaluate stage writes it (every 20th file: some right, some wrong)
    (evaluate_dir / "batch_predictions.csv").write_text("\n".join([lines[0], *lines[1::20][:32]]) + "\n",
                                                        encoding="utf-8")

    import numpy as np

    matrix = metrics.confusion_matrix(np.array(true), np.array(predicted), classes)
    result = {**metrics.summary_metrics(matrix), "top5": 0.99, "images": len(files), "classes": classes,
              "photos": len(files), "files": len(files), **metrics.baselines(np.array(true), classes, 5)}
    result.update(metrics.with_intervals(result, matrix, len(files)))
    result["sinks"] = metrics.sink_classes(matrix, labels)
    clock = _Clock()
    stages = ("index", "prefilter", "split", "train", "evaluate")
    events: list[ev.Event] = [ev.RunStarted(t=clock(), run_dir=str(run.path), stages=stages, pid=4242)]
    for stage, summary in (("index", f"{len(files):,} images in {classes} classes, 0 rejected"),
                           ("prefilter", ""), ("split", "as recorded")):
        events.append(ev.StageStarted(t=clock(0.01), stage=stage))
        if stage == "prefilter":
            kept = sum(p > threshold for p in probs)
            edges, counts = rule.histogram(np.array(probs))
            above, below = rule.examples([f for f, _ in files], np.array(probs), threshold)
            events += [ev.PrefilterHistogram(t=clock(), edges=tuple(map(float, edges)), counts=tuple(map(int, counts)),
                                             threshold=threshold, kept=kept, scored=len(files)),
                       ev.PrefilterExamples(t=clock(), kept=tuple(above), rejected=tuple(below))]
            summary = f"{kept:,} / {len(files):,} kept"
        events.append(ev.StageFinished(t=clock(0.5), stage=stage, duration_s=0.5, summary=summary))
    events.append(ev.StageStarted(t=clock(0.01), stage="train", total=2))
    # the train stage's validation matrices left out: at 300 classes each is a 300x300 event
    events += [e for e in training_events(clock, 2, 4) if not isinstance(e, ev.ConfusionReady)]
    events += [ev.StageFinished(t=clock(0.1), stage="train", duration_s=5.0, summary="2 epochs"),
               ev.StageStarted(t=clock(0.01), stage="evaluate"),
               ev.ConfusionReady.of(matrix, t=clock(), epoch=2, classes=tuple(labels), split="test",
                                    sample=len(files)),
               ev.StageFinished(t=clock(2.0), stage="evaluate", duration_s=2.0, result=result,
                                summary=f"test accuracy {result['accuracy']:.3f}"),
               ev.RunFinished(t=clock(), status="done")]
    write_events(run, events)
    return run
