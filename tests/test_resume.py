"""A run that stays true to itself: run markers, stale stages, --resume bringing a run up to date,
--set on resume, re-running done stages, and a checkpoint never continued on another split.

The fast tests use the index and split stages (no TensorFlow) through the real CLI; one slow test
goes through prefilter, train and evaluate with a real model."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd
import pytest

from carclf_core import config as config_mod
from carclf_core.errors import RunError
from carclf_core.eventlog import read_events
from carclf_core.provenance import LINEAGES
from carclf_core.registry import STAGE_NAMES, pending_stages, stale_stages
from carclf_core.runs import MARKER_FILE, create_run, latest_run, open_run, remove_stale_temp_files

from .conftest import demo_subset, make_dataset
from .test_cli import carclf

CLASSES = {("Audi", "A4"): 12, ("BMW", "X5"): 10, ("Kia", "Rio"): 8}


def _indexed_and_split(tmp_path: Path, *extra: str) -> Path:
    data = make_dataset(tmp_path / "data", CLASSES)
    result = carclf("--stage", "index", "--stage", "split", "--set", f"data.dir={data}", "--set",
                    "split.min_per_class=5", "--set", "prefilter.mode=off", *extra, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    (run,) = (tmp_path / "runs").iterdir()
    return run


def _status(run: Path) -> dict[str, str]:
    stages = json.loads((run / "state.json").read_text())["stages"]
    return {name: entry["status"] for name, entry in stages.items()}


def test_lineages_cover_every_stage_in_order():
    assert tuple(LINEAGES) == STAGE_NAMES


def test_a_folder_without_the_run_marker_is_refused_and_left_untouched(tmp_path):
    folder = tmp_path / "my-project"
    (folder / "index").mkdir(parents=True)
    (folder / "config.yaml").write_text("split:\n  top_n: 3\n")
    (folder / "index" / ".tmp-abcd1234-index.csv").write_text("mine")
    (folder / "notes.txt").write_text("mine too")
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    result = carclf("--resume", str(folder), cwd=tmp_path)
    assert result.returncode == 2
    assert "not a carclf run: no run marker" in result.stderr and "Traceback" not in result.stderr
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    with pytest.raises(RunError, match="not a carclf run"):
        open_run(folder)


def test_the_temporary_sweep_touches_only_the_runs_own_names(tmp_path):
    run = create_run(config_mod.from_dict({"run": {"root": str(tmp_path / "runs")}}))
    ours = [run.path / "index" / ".tmp-abcd1234-index.csv", run.path / ".tmp-x1y2z3w4-state.json",
            run.path / "train" / ".tmp-k0k0k0k0-last.keras"]
    theirs = [run.path / "index" / ".tmp-my-notes.txt", run.path / "mine" / ".tmp-abcd1234-index.csv",
              run.path / "index" / "tmp-abcd1234-x"]
    for path in ours + theirs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    savedmodel = run.path / "evaluate" / "export" / ".tmp-savedmodel-ab12cd34"
    (savedmodel / "variables").mkdir(parents=True)
    link_target = tmp_path / "elsewhere"
    (link_target / "index").mkdir(parents=True)
    (link_target / "index" / ".tmp-abcd1234-index.csv").write_text("outside the run")
    (run.path / "prefilter").symlink_to(link_target / "index")
    removed = set(remove_stale_temp_files(run.path))
    assert removed == set(ours) | {savedmodel}
    assert all(p.exists() for p in theirs) and not savedmodel.exists()
    assert (link_target / "index" / ".tmp-abcd1234-index.csv").exists()


def test_a_symlinked_lock_is_refused_and_its_target_untouched(tmp_path):
    run = create_run(config_mod.from_dict({"run": {"root": str(tmp_path / "runs")}}))
    precious = tmp_path / "precious.txt"
    precious.write_text("do not truncate me")
    (run.path / ".lock").symlink_to(precious)
    with pytest.raises(RunError, match="symbolic link"):
        with run.lock():
            pass
    assert precious.read_text() == "do not truncate me"
    assert run.runner_pid() is None


def test_resume_plans_from_the_first_stage_not_done(tmp_path):
    run = open_run(_indexed_and_split(tmp_path))
    # index and split are done and fresh; the prefilter never ran, so --resume starts there
    assert stale_stages(run, run.load_config()) == {}
    assert pending_stages(run) == ["prefilter", "split", "train", "evaluate"]


def test_resume_set_changes_the_config_restales_and_reruns_only_what_it_reaches(tmp_path):
    run = _indexed_and_split(tmp_path)
    first = pd.read_csv(run / "split" / "splits.csv")
    assert set(first["label"]) == {"Audi_A4", "BMW_X5", "Kia_Rio"}
    # a change to the split section: split is stale, index is not
    result = carclf("--resume", str(run), "--stage", "split", "--set", "split.top_n=2", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    said = result.stdout + result.stderr
    assert said.count("config changed") == 1 and "config changed (--set on resume): split.top_n 300 -> 2" in said
    assert set(pd.read_csv(run / "split" / "splits.csv")["label"]) == {"Audi_A4", "BMW_X5"}
    assert open_run(run).load_config().split.top_n == 2
    history = [json.loads(line) for line in (run / "config_history.jsonl").read_text().splitlines()]
    assert history[-1]["changes"] == {"split.top_n": [300, 2]} and history[-1]["source"] == "--set on resume"
    (previous,) = (run / "previous").iterdir()
    assert previous.name.startswith("split-")
    assert pd.read_csv(previous / "splits.csv").equals(first)  # the earlier split is kept, not lost
    events = read_events(run / "events.jsonl").events
    assert any(e.kind == "config_changed" and e.changes == {"split.top_n": [300, 2]} for e in events)
    assert _status(run) == {"index": "done", "split": "done"}


def test_stale_split_after_the_data_changes_and_resume_brings_it_up_to_date(tmp_path):
    run_path = _indexed_and_split(tmp_path)
    run = open_run(run_path)
    data = Path(run.load_config().data.dir)
    make_dataset(data, {("Opel", "Astra"): 7}, size=(52, 36))  # new photos arrive (new pictures, not copies)
    result = carclf("--resume", str(run_path), "--stage", "index", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    stale = stale_stages(run, run.load_config())
    assert list(stale) == ["split"] and stale["split"].startswith("index changed")
    assert "[split] stale: index changed" in result.stdout
    # what --resume would run: from the never-run prefilter on, the stale split among them
    assert pending_stages(run) == ["prefilter", "split", "train", "evaluate"]
    again = carclf("--resume", str(run_path), "--stage", "split", cwd=tmp_path)
    assert again.returncode == 0
    assert "Opel_Astra" in set(pd.read_csv(run_path / "split" / "splits.csv")["label"])
    assert stale_stages(run, run.load_config()) == {}


def test_a_set_that_would_change_the_running_stage_is_refused(tmp_path):
    run_path = _indexed_and_split(tmp_path)
    run = open_run(run_path)
    run.update_stage_state("split", status="running")
    with run.lock():  # a runner is working on it now
        result = carclf("--resume", str(run_path), "--set", "split.top_n=2", cwd=tmp_path)
        other = carclf("--resume", str(run_path), "--set", "train.epochs=3", cwd=tmp_path)
    assert result.returncode == 2
    assert "split.top_n: cannot change it while the split stage is running" in result.stderr
    assert other.returncode == 2 and "another runner is working on this run" in other.stderr
    assert run.load_config().split.top_n == 300


def test_every_fast_stage_reruns_fresh_on_a_finished_run(tmp_path):
    run_path = _indexed_and_split(tmp_path)
    for stage in ("index", "split"):
        result = carclf("--resume", str(run_path), "--stage", stage, cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"{stage} was done: starting it fresh" in result.stdout
    assert sorted(p.name.split("-")[0] for p in (run_path / "previous").iterdir()) == ["index", "split"]
    assert _status(run_path) == {"index": "done", "split": "done"}


def test_latest_run_by_name_is_how_demo_finds_its_own_run(tmp_path):
    root = tmp_path / "runs"
    demo = create_run(config_mod.from_dict({"run": {"root": str(root), "name": "demo"}}))
    time.sleep(1.1)  # run folders are named by the second
    other = create_run(config_mod.from_dict({"run": {"root": str(root), "name": "mine"}}))
    assert latest_run(root) == other
    assert latest_run(root, name="demo") == demo
    assert latest_run(root, name="absent") is None
    os.remove(demo.path / MARKER_FILE)  # no longer a run: never offered
    assert latest_run(root, name="demo") is None


# 110 s: a whole demo run, then a resume: over the default suite's 10-minute budget on 2 cores (pytest -m extra)
@pytest.mark.extra
@pytest.mark.slow
def test_saved_threshold_makes_later_stages_stale_and_resume_reruns_them_training_fresh(tmp_path):
    """The whole story with the real prefilter model and a tiny real training: run all, save a new
    threshold, see split/train/evaluate go stale, --resume brings the run up to date (train starts
    fresh, the old train folder kept), then --resume has nothing left to do, and every stage can be
    run again on the finished run."""
    from carclf_core.prefilter.scores import load_scores, reapply

    data = demo_subset(tmp_path / "data")
    tiny = ["--set", f"data.dir={data}", "--set", "split.min_per_class=5", "--set", "input.height=48",
            "--set", "input.width=72", "--set", "input.batch_size=16", "--set", "train.epochs=1",
            "--set", "train.patience=1", "--set", "train.confusion_sample=12", "--set",
            "evaluate.export_savedmodel=false"]
    first = carclf("--demo", "--run-all", *tiny, cwd=tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    (run_path,) = (tmp_path / "runs").iterdir()
    run = open_run(run_path)
    assert _status(run_path) == dict.fromkeys(STAGE_NAMES, "done")
    nothing = carclf("--resume", str(run_path), cwd=tmp_path)
    assert nothing.returncode == 0 and "up to date (every stage done, none stale)" in nothing.stderr

    car_prob = load_scores(run)["car_prob"].dropna().sort_values().to_numpy()
    threshold = float(round(car_prob[len(car_prob) // 2], 3))  # half of the pictures fall below it
    saved = reapply(str(run_path), threshold=threshold, write=True)
    assert saved["model"] == run.load_config().prefilter.model  # rule.json keeps the model
    assert run.load_config().prefilter.threshold == threshold
    stale = stale_stages(run, run.load_config())
    assert list(stale) == ["split", "train", "evaluate"]
    assert stale["split"].startswith("prefilter changed") and f"prob_sum {threshold}" in stale["split"]
    assert stale["train"] == "split is stale"
    events = read_events(run_path / "events.jsonl").events
    assert any(e.kind == "stage_updated" and e.stage == "prefilter" for e in events)

    resumed = carclf("--resume", str(run_path), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"run {run_path}: split, train, evaluate" in resumed.stdout  # index and prefilter stayed fresh
    for stage in ("split", "train", "evaluate"):
        assert f"[{stage}] done" in resumed.stdout
    assert "train was done: starting it fresh" in resumed.stdout
    assert {p.name.split("-")[0] for p in (run_path / "previous").iterdir()} == {"split", "train", "evaluate"}
    kept = set(pd.read_csv(run_path / "prefilter" / "kept.csv")["path"])
    assert set(pd.read_csv(run_path / "split" / "splits.csv")["path"]) <= kept
    assert len(kept) == saved["kept"]
    new_events = read_events(run_path / "events.jsonl").events[len(events):]
    epochs = [e.epoch for e in new_events if e.kind == "epoch_started"]
    assert epochs[0] == 1  # fresh, not continued from the model trained on the old split
    assert stale_stages(run, run.load_config()) == {}

    # the exported model, used through predict, answers as evaluate did, image by image
    evaluated = pd.read_csv(run_path / "evaluate" / "predictions.csv")
    predicted = carclf("predict", str(run_path), *[str(data / p) for p in evaluated["path"]], "--json", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    answers = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert [Path(a["path"]).name for a in answers] == [Path(p).name for p in evaluated["path"]]
    assert [a["top"][0]["class"] for a in answers] == evaluated["predicted"].tolist()
    assert [a["top"][0]["probability"] for a in answers] == pytest.approx(evaluated["probability"].tolist(), abs=1e-5)

    again = carclf("--resume", str(run_path), "--stage", "prefilter", "--stage", "evaluate", cwd=tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert _status(run_path) == dict.fromkeys(STAGE_NAMES, "done")
    assert stale_stages(run, run.load_config()) == {}  # same scores, same decision: nothing went stale
