"""The prefilter taught by example: labels by content hash, the learned rule deciding every photo from
the stored scores, and the labels applied headless with ``--set prefilter.rule=learned``.

The runs are real (demo JPEGs, the real index, prefilter and split stages); the classifier's scores are
written as the stage's own score chunk beforehand, so the stage reuses them and no classifier runs: the
scores are made so that no threshold on the car probability separates the interiors and close-ups from
the cars (as on real collections, README: Teaching the prefilter) while other classes do."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from carclf_core import config as config_mod
from carclf_core import demo
from carclf_core.errors import ConfigError
from carclf_core.eventlog import JsonlSink
from carclf_core.export import make_contract
from carclf_core.pipeline import StageContext
from carclf_core.predict import rule_keeps
from carclf_core.prefilter import learned
from carclf_core.prefilter import scores as store
from carclf_core.prefilter.classifiers import model_signature
from carclf_core.registry import pending_stages, run_all, stale_stages
from carclf_core.runs import RunDir, create_run, open_run

from .test_cli import carclf

NOT_CAR_CLASSES = (487, 479)
"""ImageNet's cellular telephone (a dashboard) and car wheel (a close-up): what the non-cars score as."""
MAKES = ("Audi_A4", "Ford_F-150", "Volkswagen_Golf")


def _probabilities(car: bool, seed: str, car_classes: tuple[int, ...]) -> np.ndarray:
    """One picture's 1000 probabilities: a car sum anywhere in 0.03-0.6 for cars and non-cars alike,
    and for a non-car 0.15-0.4 on a class of a dashboard or a wheel."""
    rng = np.random.default_rng(int(seed, 16))
    probs = np.zeros(1000)
    probs[rng.choice(car_classes, 2, replace=False)] = rng.uniform(0.03, 0.6) * rng.dirichlet([1, 1])
    if not car:
        probs[rng.choice(NOT_CAR_CLASSES)] += rng.uniform(0.15, 0.4)
    others = np.setdiff1d(np.arange(1000), [*car_classes, *NOT_CAR_CLASSES])
    probs[rng.choice(others, 20, replace=False)] += (1 - probs.sum()) * rng.dirichlet(np.ones(20))
    return probs.astype(np.float16)


def write_scores_chunk(run: RunDir, truth: dict[str, bool]) -> None:
    """The classifier's scores of every indexed photo, as the prefilter stage stores them (one chunk,
    made with the run's model signature, so the stage reuses it): a photo's scores follow its content."""
    config = run.load_config()
    index = pd.read_csv(run.index_csv, dtype=str, keep_default_na=False)
    ok = index[index["status"] == "ok"]
    assert set(ok["path"]) == set(truth)
    folder, _ = store.open_chunks(run, model_signature(config.prefilter))
    probs = np.stack([_probabilities(truth[p], sha, config.prefilter.car_classes)
                      for p, sha in zip(ok["path"], ok["sha"], strict=True)])
    store.write_chunk(store.chunk_path(folder, 0), store.Chunk(
        ok["path"].to_numpy(dtype=str), probs, np.full(len(ok), "", dtype=str)))


def make_teach_run(
    root: Path, stages: tuple[str, ...] = ("prefilter", "split"), prefilter: dict | None = None
) -> tuple[RunDir, dict[str, bool]]:
    """A run of 12 cars and 5 interiors or close-ups of each of three demo classes, one close-up twice
    (a byte copy under another name), indexed, its scores stored as the prefilter's chunk, then
    ``stages`` run (``prefilter``: more prefilter keys). Returns the run and, per indexed path, whether
    it is a whole car."""
    source = demo.ensure_demo_data()
    names = sorted(p.name for p in source.glob("*.jpg"))
    kinds = demo.known_kinds(names)
    data = root / "data"
    data.mkdir(parents=True)
    truth = {}
    for make in MAKES:
        mine = [n for n in names if n.startswith(make + "_")]
        picked = [n for n in mine if kinds.get(n) == "car"][:12] + [n for n in mine if kinds.get(n) == "unwanted"][:5]
        for name in picked:
            shutil.copy(source / name, data / name)
            truth[name] = kinds[name] == "car"
    copied = next(name for name, car in truth.items() if not car)
    copy = copied[:-4] + "c.jpg"  # another id field: another photo by name, the same by content
    shutil.copy(data / copied, data / copy)
    truth[copy] = False
    config = config_mod.from_dict({"data": {"dir": str(data)}, "run": {"root": str(root / "runs")},
                                   "split": {"min_per_class": 3}, "prefilter": prefilter or {}})
    run = create_run(config)
    config = run.load_config()
    sink = JsonlSink(run.events_path)
    try:
        ctx = StageContext(config=config, run=run, emit=sink)
        assert run_all(ctx, ["index"]) == "done"
        write_scores_chunk(run, truth)
        if stages:
            assert run_all(ctx, list(stages)) == "done"
    finally:
        sink.close()
    return run, truth


def label_by_queue(teacher: store.Teacher, truth: dict[str, bool], count: int) -> None:
    """Label ``count`` photos as the queue proposes them, refitting after each label as the dashboard does."""
    for _ in range(count):
        row = int(teacher.queue(0.1, 1)[0])
        teacher.label(row, "car" if truth[str(teacher.paths[row])] else "not")
        if learned.can_fit(teacher.y):
            teacher.learn()


def kept(run: RunDir) -> set[str]:
    return set(pd.read_csv(run.kept_csv, dtype=str, keep_default_na=False)["path"])


@pytest.fixture(scope="module")
def teach_run(tmp_path_factory) -> tuple[RunDir, dict[str, bool]]:
    """One taught run for the tests that only read it."""
    return make_teach_run(tmp_path_factory.mktemp("teach"), stages=("prefilter",))


def test_no_threshold_separates_the_test_scores_but_a_few_labels_do(teach_run, tmp_path):
    run, truth = teach_run
    scores = store.load_scores(run, ("path", "car_prob"))
    cars = np.array([truth[p] for p in scores["path"]])
    car_prob = scores["car_prob"].to_numpy()
    exact = [t for t in np.unique(car_prob) if ((car_prob >= t) == cars).all()]
    assert not exact, "the test data must not be separable by a threshold"
    teacher = store.Teacher.open(run, str(tmp_path / "labels.csv"))  # the shared run's own stays unlabelled
    label_by_queue(teacher, truth, 20)
    assert teacher.odds is not None
    decided = teacher.odds > 0
    assert decided.tolist() == cars.tolist()
    estimate = learned.estimate(*teacher.labelled()[1:], teacher.features)
    assert estimate is not None and estimate["labels"] == 20
    assert 0 <= estimate["precision_interval"][0] <= estimate["precision"] <= estimate["precision_interval"][1] <= 1


def test_copies_share_a_label_and_labels_survive_a_reindex(tmp_path):
    run, truth = make_teach_run(tmp_path, stages=("prefilter",))
    teacher = store.Teacher.open(run)
    paths = [str(p) for p in teacher.paths]
    copy = next(p for p in paths if p.endswith("c.jpg"))
    original = copy[:-5] + ".jpg"
    teacher.label(paths.index(original), "interior")
    assert teacher.y[paths.index(copy)] == 0.0 and teacher.y[paths.index(original)] == 0.0
    assert int(np.isnan(teacher.y).sum()) == len(paths) - 2
    # the queue proposes a photo once, never a copy of a labelled one
    queue = teacher.queue(0.1, len(paths))
    assert len(queue) == len(paths) - 2 and len({teacher.shas[i] for i in queue}) == len(queue)
    labels = pd.read_csv(run.prefilter_dir / "labels.csv", dtype=str, keep_default_na=False)
    assert labels.to_dict("records") == [{"path": original, "sha": teacher.shas[paths.index(original)],
                                          "label": "interior"}]
    # renamed on disk and indexed again: the label follows the photo's content
    data = Path(run.load_config().data.dir)
    renamed = original[:-4] + "r.jpg"
    (data / original).rename(data / renamed)
    truth[renamed] = truth.pop(original)
    sink = JsonlSink(run.events_path)
    try:
        ctx = StageContext(config=run.load_config(), run=run, emit=sink)
        assert run_all(ctx, ["index"]) == "done"
        write_scores_chunk(run, truth)  # the renamed photo scored again, as the stage would
        assert run_all(ctx, ["prefilter"]) == "done"
    finally:
        sink.close()
    again = store.Teacher.open(run)
    moved = [str(p) for p in again.paths]
    assert renamed in moved and original not in moved
    assert again.y[moved.index(renamed)] == 0.0 and again.y[moved.index(copy)] == 0.0


def test_a_labels_csv_applied_headless_gives_the_same_decision_without_the_classifier(tmp_path):
    """Labels made as the dashboard makes them (the queue, then ``w``: ``reapply(rule="learned")``) in
    one run, then the CSV applied to a twin run with ``--resume RUN --stage prefilter --set
    prefilter.rule=learned --set prefilter.labels=FILE``: the same kept list and the same model, the
    stored chunks reused (no classifier loaded), the split stale and re-split by ``--resume``."""
    taught, truth = make_teach_run(tmp_path / "one")
    teacher = store.Teacher.open(taught)
    label_by_queue(teacher, truth, 20)
    saved = store.reapply(taught, rule="learned", write=True)
    assert saved["rule"] == "learned" and kept(taught) == {p for p, car in truth.items() if car}
    labels_csv = tmp_path / "reviewed-labels.csv"
    shutil.copy(taught.prefilter_dir / "labels.csv", labels_csv)

    twin, _ = make_teach_run(tmp_path / "two")
    assert kept(twin) != kept(taught)  # the threshold's decision, before the labels
    chunk = store.chunk_path(twin.prefilter_dir / "chunks", 0)
    chunk_time = chunk.stat().st_mtime_ns
    result = carclf("--resume", str(twin.path), "--stage", "prefilter", "--set", "prefilter.rule=learned",
                    "--set", "prefilter.labels=reviewed-labels.csv", "--plain", cwd=tmp_path)  # relative: from cwd
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "learned from 20 labels" in result.stdout
    assert "outputs read as" not in result.stdout  # the classifier was never loaded
    assert chunk.stat().st_mtime_ns == chunk_time
    twin = open_run(twin.path)
    assert kept(twin) == kept(taught)
    rule = json.loads((twin.prefilter_dir / "rule.json").read_text())
    mine = json.loads((taught.prefilter_dir / "rule.json").read_text())
    assert rule["rule"] == "learned" and rule["learned"]["features"] == "probs"
    assert rule["labels"] == rule["learned"]["labels_file"] == str(labels_csv)
    assert rule["learned"]["labels_sha256"] == learned.file_sha256(labels_csv) == mine["learned"]["labels_sha256"]
    assert rule["learned"]["coef"] == pytest.approx(mine["learned"]["coef"])
    assert len(rule["learned"]["coef"]) == 1000
    # the exported contract carries the model: predict --prefilter decides a photo as the run did
    prefilter = make_contract(twin, twin.load_config(), [], {}).prefilter
    scores = store.load_scores(twin, ("path",))
    keeps = rule_keeps(prefilter, np.load(twin.prefilter_dir / "probs.npy"))
    assert set(scores["path"][keeps]) == kept(twin)
    assert list(stale_stages(twin, twin.load_config())) == ["split"]
    assert pending_stages(twin) == ["split", "train", "evaluate"]  # what --resume brings up to date
    resumed = carclf("--resume", str(twin.path), "--stage", "split", "--plain", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "[split] done" in resumed.stdout and stale_stages(twin, twin.load_config()) == {}
    assert set(pd.read_csv(twin.path / "split" / "splits.csv")["path"]) <= kept(twin)


def test_labels_of_one_kind_or_an_unknown_label_fail_naming_the_file_and_nothing_is_written(teach_run, tmp_path):
    run, truth = teach_run
    bad = tmp_path / "labels.csv"
    some_car = next(p for p, car in truth.items() if car)
    scores = store.load_scores(run, ("path", "status", "reason"))
    rule = {**store.current_rule(run), "rule": "learned", "labels": str(bad)}
    bad.write_text(f"path,sha,label\n{some_car},,car\nx.jpg,,maybe\n")
    with pytest.raises(ConfigError, match=rf"prefilter.labels: {bad}: line 3: unknown label 'maybe'"):
        store.decide(run, scores, rule)
    bad.write_text(f"path,sha,label\n{some_car},,car\n")
    with pytest.raises(ConfigError, match="1 car and 0 non-car photos of this run; the learned rule needs"):
        store.decide(run, scores, rule)
    assert json.loads((run.prefilter_dir / "rule.json").read_text())["rule"] == "prob_sum"  # nothing written


def test_the_cold_queue_looks_for_the_missing_kind():
    car_prob = np.array([0.5, 0.12, 0.09, 0.01, np.nan])
    unlabelled = np.full(5, np.nan)  # nearest the threshold (by ratio) first; broken never
    assert learned.queue(learned.cold_start_uncertainty(car_prob, 0.1, unlabelled), unlabelled,
                         ~np.isnan(car_prob), ["a", "b", "c", "d", "e"], 5).tolist() == [2, 1, 0, 3]
    only_cars = np.array([np.nan, 1.0, np.nan, np.nan, np.nan])
    order = learned.queue(learned.cold_start_uncertainty(car_prob, 0.1, only_cars), only_cars,
                          ~np.isnan(car_prob), ["a", "b", "c", "d", "e"], 5)
    assert order.tolist() == [3, 2, 0]  # the least car-like first: where a non-car is
    only_not = np.array([np.nan, np.nan, np.nan, 0.0, np.nan])
    order = learned.queue(learned.cold_start_uncertainty(car_prob, 0.1, only_not), only_not,
                          ~np.isnan(car_prob), ["a", "b", "c", "d", "e"], 5)
    assert order.tolist() == [0, 1, 2]


def test_without_probs_npy_the_rule_learns_from_the_car_classes(tmp_path):
    """``prefilter.store_probs: false`` keeps only ``rule_inputs.npz``: the rule learns from the 15 car
    classes' probabilities (here they cannot tell the kinds apart: the data hides the difference in
    other classes, which is why the 1000 are the default) and ``rule.json`` says so."""
    run, truth = make_teach_run(tmp_path, stages=("prefilter",), prefilter={"store_probs": False})
    assert not (run.prefilter_dir / "probs.npy").exists()
    teacher = store.Teacher.open(run)
    assert teacher.features == "car_probs"
    label_by_queue(teacher, truth, 10)
    saved = store.reapply(run, rule="learned", write=True)
    rule = json.loads((run.prefilter_dir / "rule.json").read_text())
    assert rule["learned"]["features"] == "car_probs" and len(rule["learned"]["coef"]) == 15
    assert saved["kept"] == len(kept(run))
