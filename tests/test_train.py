"""Fine-tuning and evaluation end to end on the real demo drawings, at a tiny input size.

One shared, module-scoped training run keeps the number of (slow) Keras graph builds small: a
two-phase schedule (1 warm-up epoch with the base frozen, then fine-tuning) is cancelled after epoch
2 the way SIGINT cancels it, resumed from its checkpoint, finished, then evaluated and exported.
The tests below read what that run left behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from carclf_core import config as config_mod
from carclf_core import demo
from carclf_core.events import (BatchEnded, ConfusionReady, EpochEnded, EpochStarted, PatienceChanged,
                                StageFinished, StageInterrupted)
from carclf_core.runs import create_run
from carclf_core.pipeline import StageContext
from carclf_core.registry import run_stage

pytestmark = pytest.mark.slow

EPOCHS = 8
PATIENCE = 3
CANCEL_AFTER = 2


def tiny_config(data_dir: Path, root: Path, **train) -> config_mod.Config:
    base = demo.demo_overrides(data_dir)
    base["prefilter"] = {"mode": "off"}
    # batch 16: twice the steps an epoch, so BatchNorm statistics of a random-init backbone settle
    base["input"] = {"height": 48, "width": 72, "batch_size": 16}
    base["train"] = {**base["train"], "epochs": EPOCHS, "patience": PATIENCE, "warmup_epochs": 1,
                     "confusion_sample": 40, "batch_events_per_second": 1000.0, **train}
    base["run"] = {"root": str(root), "name": "t"}
    return config_mod.from_dict(base)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    data = demo.ensure_demo_data(tmp / "demo")
    config = tiny_config(data, tmp / "runs")
    run = create_run(config)
    setup: list = []
    ctx = StageContext(config=config, run=run, emit=setup.append)
    assert run_stage(ctx, "index") == "done" and run_stage(ctx, "split") == "done"

    first: list = []
    cancel = threading.Event()

    def cancelling_sink(event):
        first.append(event)
        if isinstance(event, EpochEnded) and event.epoch == CANCEL_AFTER:
            cancel.set()  # what the SIGINT handler does, mid-fit

    status_first = run_stage(StageContext(config=config, run=run, emit=cancelling_sink, cancel=cancel), "train")
    state_after_cancel = json.loads((run.path / "train" / "state.json").read_text())

    second: list = []
    status_second = run_stage(StageContext(config=config, run=run, emit=second.append), "train")
    evaluation: list = []
    status_eval = run_stage(StageContext(config=config, run=run, emit=evaluation.append), "evaluate")
    return dict(run=run, config=config, first=first, second=second, evaluation=evaluation,
                status=(status_first, status_second, status_eval), state_after_cancel=state_after_cancel)


def of(events, cls):
    return [e for e in events if isinstance(e, cls)]


def test_cancel_keeps_the_last_complete_epoch_and_resume_continues_after_it(trained):
    assert trained["status"] == ("interrupted", "done", "done")
    assert of(trained["first"], StageInterrupted)
    saved = trained["state_after_cancel"]
    assert saved["completed_epochs"] == CANCEL_AFTER and saved["phase"] == "finetune"
    # the cut epoch 3 was started but never reported as finished
    assert [e.epoch for e in of(trained["first"], EpochEnded)] == [1, 2]
    resumed = of(trained["second"], EpochStarted)
    assert resumed[0].epoch == CANCEL_AFTER + 1
    history = json.loads((trained["run"].path / "train" / "history.json").read_text())
    epochs = [h["epoch"] for h in history]
    assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) > CANCEL_AFTER
    assert history[0]["phase"] == "warmup" and history[1]["phase"] == "finetune"
    # the full checkpoint's optimizer state went back into the fine-tuning model (Adam's moments kept)
    from carclf_core.events import LogLine

    assert (trained["run"].path / "train" / "last_optimizer.npz").is_file()
    assert not [e for e in trained["second"] if isinstance(e, LogLine) and "optimizer" in e.message]


def test_patience_numbers_equal_keras_early_stopping_across_the_resume(trained):
    """Replay Keras's own EarlyStopping on the recorded val_loss; the events (from both the first
    run and the resumed one) must carry exactly its wait/best/best_epoch."""
    import keras

    history = json.loads((trained["run"].path / "train" / "history.json").read_text())
    reference = keras.callbacks.EarlyStopping(monitor="val_loss", patience=PATIENCE)
    reference.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))  # it sets stop_training
    reference.on_train_begin()
    expected = []
    for h in history:
        reference.on_epoch_end(h["epoch"] - 1, {"val_loss": h["val_loss"]})
        expected.append((h["epoch"], reference.wait, pytest.approx(reference.best, rel=1e-6),
                         reference.best_epoch + 1))
    events = of(trained["first"], PatienceChanged) + of(trained["second"], PatienceChanged)
    got = [(e.epoch, e.wait, e.best, e.best_epoch) for e in events]
    assert got == expected
    assert all(e.patience == PATIENCE and e.monitor == "val_loss" for e in events)


def test_event_sequence_of_each_epoch(trained):
    events = [e for e in trained["first"] + trained["second"]
              if isinstance(e, (EpochStarted, BatchEnded, EpochEnded, PatienceChanged, ConfusionReady))]
    finished = [e.epoch for e in of(events, EpochEnded)]
    for epoch in finished:
        mine = [e for e in events if e.epoch == epoch]
        kinds = [type(e).__name__ for e in mine]
        # a complete epoch: started, batches, ended, patience, confusion, in that order
        assert kinds[0] == "EpochStarted" and kinds[-3:] == ["EpochEnded", "PatienceChanged", "ConfusionReady"]
        batches = [e for e in mine if isinstance(e, BatchEnded)]
        assert batches and [b.step for b in batches] == sorted(b.step for b in batches)
        ended = next(e for e in mine if isinstance(e, EpochEnded))
        assert {"loss", "categorical_accuracy", "top5", "val_loss", "val_categorical_accuracy",
                "val_top5"} <= set(ended.metrics)
        assert ended.learning_rate == pytest.approx(2e-3) and ended.images_per_s > 0
        assert ended.epochs == EPOCHS and ended.eta_s is not None
        confusion = next(e for e in mine if isinstance(e, ConfusionReady))
        assert confusion.counts().sum() == confusion.sample == 40
    phases = {e.epoch: e.phase for e in of(events, EpochStarted)}
    assert phases[1] == "warmup" and phases[2] == "finetune"


def test_tiny_backbone_learns_clearly_above_chance(trained):
    metrics = json.loads((trained["run"].path / "evaluate" / "metrics.json").read_text())
    chance = metrics["chance"]
    assert chance == pytest.approx(1 / 8)
    # 8 balanced-ish classes: chance is 12.5 %; a model that learned nothing stays near it
    assert metrics["accuracy"] >= chance + 0.25, metrics
    assert metrics["top5"] >= metrics["accuracy"]


def test_results_state_their_baselines_and_the_copy_leak(trained):
    folder = trained["run"].path
    metrics = json.loads((folder / "evaluate" / "metrics.json").read_text())
    labels = pd.read_csv(folder / "evaluate" / "predictions.csv")["label"]
    assert metrics["majority_baseline"] == pytest.approx(labels.value_counts().iloc[0] / len(labels))
    assert metrics["top5_chance"] == pytest.approx(5 / 8)
    assert metrics["test_with_train_copy"] == 0  # copies grouped by default
    finished = of(trained["evaluation"], StageFinished)[0]
    assert f"majority {metrics['majority_baseline']:.3f}" in finished.summary
    assert finished.summary.endswith("; none with a copy in train")
    assert finished.result["top5_chance"] == metrics["top5_chance"]
    splits = pd.read_csv(folder / "split" / "splits.csv")
    val = splits.loc[splits["split"] == "val", "label"]
    summary = json.loads((folder / "train" / "summary.json").read_text())
    assert summary["majority_baseline"] == pytest.approx(val.value_counts().iloc[0] / len(val))
    assert summary["chance"] == pytest.approx(1 / 8) and summary["top5_chance"] == pytest.approx(5 / 8)


def test_results_count_photos_and_give_each_figure_its_interval(trained):
    from carclf_core import metrics as metrics_mod

    folder = trained["run"].path
    metrics = json.loads((folder / "evaluate" / "metrics.json").read_text())
    predictions = pd.read_csv(folder / "evaluate" / "predictions.csv")
    # one file a test photo (split.copies_in_eval: one): photos = files = what was scored
    assert metrics["photos"] == metrics["files"] == len(predictions) == predictions["counted"].sum()
    n = metrics["photos"]
    assert metrics["accuracy_ci"] == pytest.approx(list(metrics_mod.wilson_interval(metrics["accuracy"] * n, n)))
    assert metrics["top5_ci"] == pytest.approx(list(metrics_mod.wilson_interval(metrics["top5"] * n, n)))
    low, high = metrics["balanced_accuracy_ci"]
    assert low <= metrics["balanced_accuracy"] <= high and high - low > 0.01
    assert metrics["clears_majority"] == (metrics["accuracy_ci"][0] > metrics["majority_baseline"])
    assert isinstance(metrics["sinks"], list)
    per_class = pd.read_csv(folder / "evaluate" / "per_class.csv")
    assert ((per_class["recall_low"] <= per_class["recall"]) & (per_class["recall"] <= per_class["recall_high"])).all()
    finished = of(trained["evaluation"], StageFinished)[0]
    ci = metrics["accuracy_ci"]
    assert f"test accuracy {metrics['accuracy']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" in finished.summary
    assert ("cleared" if metrics["clears_majority"] else "not cleared by the interval") in finished.summary
    assert f" on {n} photos ({n} files)" in finished.summary
    # the headless console prints that line, and its summary table keeps it
    import io

    from carclf_tui.console import ConsoleRenderer

    out = io.StringIO()
    console = ConsoleRenderer(stream=out, interactive=False)
    for event in trained["evaluation"]:
        console(event)
    console.close()
    printed = " ".join(out.getvalue().split())
    assert f"test accuracy {metrics['accuracy']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" in printed
    # validation: train's summary.json, the best epoch's figures with theirs
    summary = json.loads((folder / "train" / "summary.json").read_text())
    splits = pd.read_csv(folder / "split" / "splits.csv")
    assert summary["val_photos"] == summary["val_files"] == (splits["split"] == "val").sum()
    v = summary["val_photos"]
    expected = metrics_mod.wilson_interval(summary["val_accuracy"] * v, v)
    assert summary["val_accuracy_ci"] == pytest.approx(list(expected))
    assert summary["val_top5_ci"][0] <= summary["val_top5"] <= summary["val_top5_ci"][1]
    assert isinstance(summary["val_clears_majority"], bool)
    if "val_balanced_accuracy_ci" in summary:  # the best epoch ran after the resume
        assert len(summary["val_recall"]) == 8 and summary["val_confusion_sample"] == 40


def test_evaluation_files_and_final_confusion(trained):
    folder = trained["run"].path / "evaluate"
    per_class = pd.read_csv(folder / "per_class.csv")
    classes = json.loads((folder / "export" / "classes.json").read_text())
    assert list(per_class["class"]) == classes and per_class["support"].sum() == len(
        pd.read_csv(folder / "predictions.csv"))
    matrix = np.load(folder / "confusion.npy")
    final = of(trained["evaluation"], ConfusionReady)
    assert len(final) == 1 and final[0].split == "test" and np.array_equal(final[0].counts(), matrix)
    batch = pd.read_csv(folder / "batch_predictions.csv")
    assert len(batch) == 16 and {"path", "label", "predicted", "probability"} <= set(batch.columns)
    assert of(trained["evaluation"], StageFinished)[0].result["images"] == matrix.sum()


def test_exported_model_gives_the_same_predictions(trained):
    import tensorflow as tf

    from carclf_core import inputs
    from carclf_core.model import load_model

    run, config = trained["run"], trained["config"]
    folder = run.path / "evaluate"
    predictions = pd.read_csv(folder / "predictions.csv", keep_default_na=False)
    classes = json.loads((folder / "export" / "classes.json").read_text())
    paths = [str(Path(config.data.dir) / p) for p in predictions["path"][:16]]
    labels = [classes.index(c) for c in predictions["label"][:16]]
    images = np.concatenate([x for x, _ in inputs.make_dataset(paths, labels, len(classes), config.input,
                                                               training=False).as_numpy_iterator()])
    exported = load_model(folder / "export" / "model.keras")  # safe mode: no Lambda layers
    probs = exported.predict(images, verbose=0)
    assert [classes[i] for i in probs.argmax(1)] == list(predictions["predicted"][:16])
    # the true class's probability, what the dashboard's worst-photos list sorts by
    np.testing.assert_allclose(predictions["true_probability"][:16], probs[np.arange(16), labels], atol=1e-4)
    np.testing.assert_allclose(probs.max(1), predictions["probability"][:16], rtol=1e-4, atol=1e-5)
    served = tf.saved_model.load(str(folder / "export" / "savedmodel"))
    serving = served.signatures["serving_default"]  # what TF Serving calls: raw pixels named "image"
    np.testing.assert_allclose(serving(image=tf.constant(images))["probabilities"].numpy(), probs, rtol=1e-4,
                               atol=1e-5)


# 53 s of training on two logical CPUs: over the default suite's 10-minute budget on 2 cores (pytest -m extra)
@pytest.mark.extra
def test_mirrored_strategy_on_two_logical_cpus(trained, tmp_path):
    """train.distribute=mirrored on two logical CPU devices, in a fresh process (the logical device
    split must happen before TensorFlow initialises)."""
    source = trained["run"]
    config = tiny_config(Path(trained["config"].data.dir), tmp_path / "runs", epochs=1, warmup_epochs=0,
                         distribute="mirrored", confusion_sample=0)
    run = create_run(config)
    for name in ("splits.csv", "classes.json"):
        (run.path / "split").mkdir(exist_ok=True)
        (run.path / "split" / name).write_bytes((source.path / "split" / name).read_bytes())
    script = textwrap.dedent(f"""
        import json, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from carclf_core.runs import open_run
        from carclf_core.pipeline import StageContext
        from carclf_core.registry import run_stage
        run = open_run({str(run.path)!r})
        events = []
        status = run_stage(StageContext(config=run.load_config(), run=run, emit=events.append), "train")
        print("RESULT", json.dumps({{"status": status, "errors": [getattr(e, "error", "") for e in events
                                                               if e.kind == "stage_failed"]}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT")), None)
    assert line, done.stdout[-2000:] + done.stderr[-3000:]
    assert json.loads(line[7:]) == {"status": "done", "errors": []}
    summary = json.loads((run.path / "train" / "summary.json").read_text())
    assert summary["replicas"] == 2 and summary["epochs_run"] == 1


def test_a_diverging_training_fails_naming_the_step_and_keeps_the_last_good_epoch(tmp_path):
    """Learning rate 1e15 (the fast, in-process form of the extra test in faults/test_hostile.py): the
    warm-up epoch (base frozen) stays finite, fine-tuning's first steps overflow the backbone and the
    loss becomes NaN or inf. The stage fails saying where and what to lower; the checkpoint and the best
    weights stay epoch 1's, finite; the diverged epoch is never reported as ended."""
    import re

    from carclf_core.events import StageFailed

    from .conftest import make_dataset

    data = make_dataset(tmp_path / "data", {("Audi", "A4"): 12, ("BMW", "X5"): 12, ("Kia", "Rio"): 12})
    config = config_mod.load(None, [f"data.dir={data}", f"run.root={tmp_path / 'runs'}", "prefilter.mode=off",
                                    "split.min_per_class=5", "input.height=32", "input.width=32",
                                    "input.batch_size=8", "train.backbone=mobilenetv3small", "train.weights=null",
                                    "train.confusion_sample=0", "train.batch_events_per_second=1000",
                                    "train.tensorboard=false", "train.epochs=2", "train.warmup_epochs=1",
                                    "train.learning_rate=1e15"])
    run = create_run(config)
    events: list = []
    ctx = StageContext(config=config, run=run, emit=events.append)
    assert run_stage(ctx, "index") == "done" and run_stage(ctx, "split") == "done"
    assert run_stage(ctx, "train") == "failed"
    (failed,) = of(events, StageFailed)
    assert re.search(r"loss became (NaN|inf) at epoch 2, step \d+: lower train.learning_rate \(now 1e\+15\)"
                     r"\W+the checkpoint of epoch 1 is kept", failed.error), failed.error
    checkpoint = json.loads((run.train_dir / "state.json").read_text())
    assert checkpoint["completed_epochs"] == 1 and checkpoint["phase"] == "warmup"
    assert [h["epoch"] for h in checkpoint["history"]] == [1]
    assert checkpoint["early_stopping"]["best_epoch"] == 0  # 0-based: epoch 1, the last finite best
    for name in ("last_weights.npz", "best_weights.npz"):
        with np.load(run.train_dir / name) as weights:
            assert all(np.isfinite(weights[key]).all() for key in weights.files), f"{name} holds NaN"
    assert [e.epoch for e in of(events, EpochEnded)] == [1]  # the diverged epoch never ended
    assert any(e.epoch == 2 and not np.isfinite(e.loss) for e in of(events, BatchEnded))


@pytest.mark.parametrize("files, machines, batch", [(10, 2, 2), (11, 2, 4), (13, 4, 1), (7, 3, 2)])
def test_each_machine_trains_on_its_own_share_and_the_shares_cover_the_split(files, machines, batch):
    """Every machine of a multi-worker run decodes only its share of the training files: the shares
    of all machines are disjoint, together they are the whole split, and each is topped up (with its
    own files) to the same whole number of global batches, so all machines step together."""
    from carclf_core.cluster import Cluster
    from carclf_core.stages.train import _even_share

    paths = [f"class{i % 3}/img{i:02d}.jpg" for i in range(files)]
    labels = np.arange(files) % 3
    workers = tuple(f"host{rank}:2222" for rank in range(machines))
    global_batch = batch * machines
    shares = [_even_share(paths, labels, Cluster(workers=workers, rank=rank), global_batch)
              for rank in range(machines)]
    own = [set(share) for share, _ in shares]
    assert set().union(*own) == set(paths)
    assert sum(len(files_of) for files_of in own) == len(paths), "two machines share files"
    lengths = {len(share) for share, _ in shares}
    assert len(lengths) == 1 and lengths.pop() % global_batch == 0
    for share, share_labels in shares:
        assert [labels[paths.index(p)] for p in share] == list(share_labels)  # labels stay with their files


def test_the_confusion_sample_is_a_fixed_sorted_sample_spread_over_the_split():
    """The validation split lists its files class by class: the epoch confusion matrix's sample is drawn
    over the whole split (not its first rows), sorted, without repeats, the same for the same seed; a
    split no larger than the sample is taken whole."""
    from carclf_core.stages.train import _confusion_sample

    assert _confusion_sample(5, 5, seed=1).tolist() == [0, 1, 2, 3, 4]
    assert _confusion_sample(3, 8, seed=1).tolist() == [0, 1, 2]
    sample = _confusion_sample(1000, 50, seed=7)
    assert len(sample) == len(set(sample.tolist())) == 50 and sample.tolist() == sorted(sample.tolist())
    assert sample.min() >= 0 and sample.max() < 1000 and sample.max() > 500  # not the first 50
    assert _confusion_sample(1000, 50, seed=7).tolist() == sample.tolist()
    assert _confusion_sample(1000, 50, seed=8).tolist() != sample.tolist()


def test_over_the_run_a_file_dropped_is_named_once_and_one_that_came_early_never():
    """A machine's share repeats, so its pipeline prefetches the next pass before an epoch ends: the
    training audit keeps what came in any epoch (an audit reset at each epoch would name the rows that
    came early, here 0 and 1); a row that never comes is still named, once."""
    import keras

    from carclf_core.callbacks import DroppedImagesReporter
    from carclf_core.inputs import RowAudit
    from carclf_core.stages.train import _OverTheRun

    audit = RowAudit(6)
    reports: list = []
    reporter = DroppedImagesReporter({"train": _OverTheRun(audit)}, lambda split, rows: reports.append((split, rows)))
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.stop_training = False
    reporter.set_model(model)
    reporter.on_epoch_begin(0)
    audit.record(np.array([0, 1, 2, 3, 5, 0, 1]))  # row 4 fails to decode; 0 and 1 of the next pass came early
    reporter.on_epoch_end(0)
    reporter.on_epoch_begin(1)
    audit.record(np.array([2, 3, 5]))
    reporter.on_epoch_end(1)
    assert reports == [("train", [4])]


def test_the_same_seed_repeats_the_history_bit_for_bit(tmp_path):
    """Two trainings of copies of one run (the same split, config and seed; train.deterministic on,
    the default) log the same history, every number equal: the same shuffles, augmentation, initial
    weights and arithmetic. The summary records every seed used."""
    import shutil

    from carclf_core.runs import open_run

    from .conftest import demo_subset

    data = demo_subset(tmp_path / "data")
    # two epochs: the second must follow the seed's sequence of shuffles too; no TensorBoard and
    # weights-only checkpoints keep the two fits short
    config = tiny_config(data, tmp_path / "runs", epochs=2, warmup_epochs=0, confusion_sample=12,
                         tensorboard=False, checkpoint="weights")
    assert config.train.deterministic and config.input.augment
    first = create_run(config)
    ctx = StageContext(config=config, run=first, emit=lambda event: None)
    assert run_stage(ctx, "index") == "done" and run_stage(ctx, "split") == "done"
    second = open_run(shutil.copytree(first.path, tmp_path / "copy"))
    histories, summaries = [], []
    for run in (first, second):
        assert run_stage(StageContext(config=config, run=run, emit=lambda event: None), "train") == "done"
        histories.append(json.loads((run.path / "train" / "history.json").read_text()))
        summaries.append(json.loads((run.path / "train" / "summary.json").read_text()))
    assert len(histories[0]) == 2 and histories[0][0]["loss"] != histories[0][1]["loss"]
    assert histories[0] == histories[1]
    seed = config.split.seed
    assert summaries[0]["seeds"] == dict.fromkeys(("split", "weights", "shuffle", "augment", "confusion_sample"), seed)
    assert summaries[0]["deterministic"] is True


def test_images_that_stop_decoding_are_left_out_and_named(tmp_path):
    """Files broken after the split (one each of train, val and test): training and evaluation go on
    without them, name each with its reason and count them; evaluate does not send the user back
    to the index stage, which would not bring them back."""
    from carclf_core.events import LogLine

    from .conftest import make_dataset

    data = make_dataset(tmp_path / "data", {("Audi", "A4"): 12, ("Ford", "F-150"): 12, ("Kia", "Rio"): 12})
    config = tiny_config(data, tmp_path / "runs", epochs=1, warmup_epochs=0, confusion_sample=0)
    run = create_run(config)
    events: list = []
    ctx = StageContext(config=config, run=run, emit=events.append)
    assert run_stage(ctx, "index") == "done" and run_stage(ctx, "split") == "done"
    splits = pd.read_csv(run.path / "split" / "splits.csv")
    broken = {split: splits.loc[splits["split"] == split, "path"].iloc[0] for split in ("train", "val", "test")}
    for name in broken.values():
        whole = (data / name).read_bytes()
        (data / name).write_bytes(whole[: len(whole) // 2])  # cut in half, as a failed copy leaves it

    assert run_stage(ctx, "train") == "done"
    assert run_stage(ctx, "evaluate") == "done"
    warnings = {e.file: e.message for e in events if isinstance(e, LogLine) and e.level == "warning"}
    assert warnings[broken["train"]] == "train image left out of training: truncated image"
    assert warnings[broken["val"]] == "val image left out of training: truncated image"
    assert warnings[broken["test"]] == "test image left out of the evaluation: truncated image"
    trained = [e for e in events if isinstance(e, StageFinished) and e.stage == "train"][0]
    assert trained.result["dropped"] == {"train": 1, "val": 1} and "2 images that no longer decode" in trained.summary
    evaluated = [e for e in events if isinstance(e, StageFinished) and e.stage == "evaluate"][0]
    assert evaluated.result["dropped"] == 1 and "index" not in evaluated.summary
    predictions = pd.read_csv(run.path / "evaluate" / "predictions.csv")
    test_images = (splits["split"] == "test").sum()
    assert len(predictions) == test_images - 1 and broken["test"] not in set(predictions["path"])
    assert json.loads((run.path / "evaluate" / "metrics.json").read_text())["images"] == test_images - 1
