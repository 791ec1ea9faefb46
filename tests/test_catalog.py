"""Run summaries for the run picker: status from state.json and the lock, results from the small result
files, and every kind of damage summarised as ``damaged`` with the reason instead of raised."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from carclf_core import catalog
from carclf_core import config as config_mod
from carclf_core.provenance import record
from carclf_core.runs import LOCK_FILE, RunDir, create_run

STAGES = ("index", "prefilter", "split", "train", "evaluate")


@pytest.fixture
def run(tmp_path: Path) -> RunDir:
    return create_run(config_mod.from_dict({"run": {"root": str(tmp_path / "runs")}}))


def finish(run: RunDir, names=STAGES) -> None:
    config = run.load_config()
    for name in names:
        run.update_stage_state(name, status="done", duration_s=2.5)
        record(run, name, config, f"{name} made")


def test_a_finished_run_with_its_results(run):
    finish(run)
    run.split_dir.mkdir()
    run.classes_json.write_text(json.dumps(["a", "b", "c"]))
    run.train_dir.mkdir()
    run.train_summary.write_text(json.dumps({"val_accuracy": 0.75}))
    run.evaluate_dir.mkdir()
    (run.evaluate_dir / "metrics.json").write_text(json.dumps({"accuracy": 0.5}))
    summary = catalog.summarize(run)
    assert (summary.status, summary.detail, summary.classes) == ("done", "", 3)
    assert (summary.val_accuracy, summary.test_accuracy, summary.duration_s) == (0.75, 0.5, 12.5)
    assert summary.created == pytest.approx(run.read_state()["created"])


def test_status_from_the_stages_and_the_lock(run):
    assert catalog.summarize(run).status == "new"
    finish(run, STAGES[:2])
    assert (catalog.summarize(run).status, catalog.summarize(run).detail) == ("partial", "2/5 done")
    run.update_stage_state("split", status="running")
    # state.json says running but no runner holds the lock: its runner was killed mid-stage
    assert (catalog.summarize(run).status, catalog.summarize(run).detail) == ("interrupted", "split")
    with run.lock():
        assert (catalog.summarize(run).status, catalog.summarize(run).detail) == ("running", "split")
    run.update_stage_state("split", status="failed")
    assert (catalog.summarize(run).status, catalog.summarize(run).detail) == ("failed", "split")


def test_a_stale_run_names_its_stale_stages(run):
    finish(run)
    config = run.load_config()
    run.update_config(config_mod.from_dict({**config.to_dict(), "split": {"top_n": 7}}), source="test")
    summary = catalog.summarize(run)
    assert (summary.status, summary.detail) == ("stale", "split, train, evaluate")


def test_summarizing_creates_no_lock_file(run):
    catalog.summarize(run)
    assert not (Path(run.path) / LOCK_FILE).exists()


@pytest.mark.parametrize("damage,reason", [
    (lambda run: run.state_path.write_text("{not json"), "state.json: not valid JSON"),
    (lambda run: run.state_path.write_bytes(b'{"stages": {"index": "\xff"}}'), "state.json: not valid JSON"),
    (lambda run: run.state_path.write_text('{"stages": ["index"]}'), "state.json: not a run state (no stages)"),
    (lambda run: run.state_path.write_text('{"stages": {"index": 3}}'), "state.json: not a run state (no stages)"),
    (lambda run: run.state_path.write_text("[" * 100_000), "state.json: not valid JSON"),
    (lambda run: run.state_path.write_bytes(b" " * (catalog.MAX_JSON_BYTES + 1)),
     f"state.json: {catalog.MAX_JSON_BYTES + 1:,} bytes, larger than a run keeps it"),
    (lambda run: (run.state_path.unlink(), run.state_path.mkdir()), "state.json: not a regular file"),
    (lambda run: (run.split_dir.mkdir(), run.classes_json.write_text("[1, 2")), "classes.json: not valid JSON"),
    (lambda run: run.config_path.write_text("split: {top_n: many}\n"), "config.yaml: split.top_n"),
    (lambda run: run.update_stage_state("split", made={"t": "yesterday", "fingerprint": 1}),
     "state.json: stage records unreadable (TypeError)"),
])
def test_damage_is_summarised_never_raised(run, damage, reason):
    finish(run)
    damage(run)
    summary = catalog.summarize(run)
    assert summary.status == "damaged" and summary.detail.startswith(reason), summary.detail


def test_results_of_the_wrong_type_or_not_finite_show_as_unknown(run):
    finish(run)
    run.train_dir.mkdir()
    run.train_summary.write_text('{"val_accuracy": NaN}')
    run.evaluate_dir.mkdir()
    (run.evaluate_dir / "metrics.json").write_text('{"accuracy": "high"}')
    run.split_dir.mkdir()
    run.classes_json.write_text('{"a": 1}')
    summary = catalog.summarize(run)
    assert summary.status == "done"
    assert (summary.val_accuracy, summary.test_accuracy, summary.classes) == (None, None, None)


def test_a_run_that_vanishes_while_listed(run):
    shutil.rmtree(run.path)
    assert catalog.summarize(run).status in ("damaged", "new")  # never an exception


def test_summaries_lists_newest_first_and_only_runs(tmp_path):
    root = tmp_path / "runs"
    first = create_run(config_mod.from_dict({"run": {"root": str(root), "name": "first"}}))
    second = create_run(config_mod.from_dict({"run": {"root": str(root), "name": "second"}}))
    (root / "not-a-run").mkdir()
    assert [s.run.name for s in catalog.summaries(root)] == [second.name, first.name]
    assert list(catalog.summaries(tmp_path / "nowhere")) == []
