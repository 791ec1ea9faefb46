"""What each stage was made from, in process and without running a stage: fingerprints, records and
the staleness they give (the same story through the real CLI is in ``test_resume.py``)."""

from __future__ import annotations

import json
import re
import time

import pytest

from carclf_core import config as config_mod
from carclf_core.provenance import LINEAGES, Lineage, fingerprint, record, staleness
from carclf_core.runs import create_run


@pytest.fixture
def run(tmp_path):
    return create_run(config_mod.load(None, [f"run.root={tmp_path / 'runs'}", f"data.dir={tmp_path}"]))


def _write(run, name: str, text: str) -> None:
    path = run.path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _finish(run, stage: str, config, note: str) -> None:
    """What the registry does when ``stage`` finishes: its status, then its record."""
    run.update_stage_state(stage, status="done")
    record(run, stage, config, note)


def _set(config, key: str, value) -> config_mod.Config:
    tree = config.to_dict()
    section, name = key.split(".")
    tree[section][name] = value
    return config_mod.from_dict(tree)


def test_a_fingerprint_follows_the_names_and_bytes_of_the_files(run):
    _write(run, "a.txt", "one")
    _write(run, "b.txt", "two")
    first = fingerprint(run, ["a.txt", "b.txt"])
    assert re.fullmatch(r"[0-9a-f]{24}", first) and fingerprint(run, ["a.txt", "b.txt"]) == first
    assert fingerprint(run, ["b.txt", "a.txt"]) != first  # the order of the outputs counts
    assert fingerprint(run, ["a.txt"]) != first
    _write(run, "b.txt", "TWO")
    assert fingerprint(run, ["a.txt", "b.txt"]) != first
    # a missing file is not an empty one, and names are separated (a + bc is not ab + c)
    _write(run, "empty.txt", "")
    assert fingerprint(run, ["missing.txt"]) != fingerprint(run, ["empty.txt"])
    _write(run, "ab", "c")
    _write(run, "a", "bc")
    assert fingerprint(run, ["ab"]) != fingerprint(run, ["a"])


def test_a_lineage_reads_its_sections_and_keys_less_what_it_ignores():
    config = config_mod.Config()
    train = LINEAGES["train"].config_values(config)
    assert "train.learning_rate" in train and "input.height" in train and "split.seed" not in train
    assert "train.confusion_sample" not in train and "input.cache" not in train  # speed, not results
    evaluate = LINEAGES["evaluate"].config_values(config)
    assert {k for k in evaluate if k.startswith("input.")} == {"input.height", "input.width", "input.resize"}
    # a key named exactly, not every key that starts with its letters
    assert Lineage(("input.height",)).config_values({"input.height": 1, "input.heightx": 2}) == {"input.height": 1}


def test_a_recorded_stage_is_fresh_until_its_config_or_an_upstream_output_changes(run):
    config = run.load_config()
    _write(run, "index/index.csv", "path\na.jpg\n")
    _finish(run, "index", config, "1 image")
    _write(run, "split/splits.csv", "path,split\na.jpg,train\n")
    _write(run, "split/classes.json", "[]")
    _finish(run, "split", config, "1 train")
    assert staleness(run, config) == {}
    entry = run.read_state()["stages"]["split"]
    assert entry["inputs"]["config"] == LINEAGES["split"].config_values(config)
    assert entry["inputs"]["upstream"]["index"]["note"] == "1 image"
    assert entry["made"]["fingerprint"] == fingerprint(run, LINEAGES["split"].outputs)

    # a key the stage ignores changes nothing; one it reads makes it stale, saying from what to what
    assert staleness(run, _set(config, "data.workers", 3)) == {}
    seed = config.split.seed
    assert staleness(run, _set(config, "split.seed", seed + 1)) == {"split": f"split.seed {seed} -> {seed + 1}"}
    assert staleness(run, _set(config, "data.extensions", ["png"]))["index"] == (
        f"data.extensions {json.dumps(list(config.data.extensions))} -> [\"png\"]")

    # the index made again with other rows: the split is stale, naming when and what changed
    _write(run, "index/index.csv", "path\na.jpg\nb.jpg\n")
    _finish(run, "index", config, "2 images")
    made = run.read_state()["stages"]["index"]["made"]["t"]
    when = time.strftime("%H:%M", time.localtime(made))
    assert staleness(run, config) == {"split": f"index changed {when}: 1 image -> 2 images"}


def test_staleness_runs_down_the_stages_and_skips_what_is_not_done_or_not_recorded(run):
    config = run.load_config()
    for stage, note in (("index", "i"), ("prefilter", "p"), ("split", "s"), ("train", "t"), ("evaluate", "e")):
        for name in LINEAGES[stage].outputs:
            _write(run, name, stage)
        _finish(run, stage, config, note)
    assert staleness(run, config) == {}
    changed = _set(config, "prefilter.threshold", 0.5)
    assert staleness(run, changed) == {
        "prefilter": f"prefilter.threshold {config.prefilter.threshold} -> 0.5",
        "split": "prefilter is stale",
        "train": "split is stale",
        "evaluate": "split is stale; train is stale",  # every reason, in order
    }
    # a text value is shown as it is, a list as JSON
    resized = staleness(run, _set(config, "input.resize", "stretch"))
    assert resized["train"] == f"input.resize {config.input.resize} -> stretch"
    assert resized["evaluate"] == f"train is stale; input.resize {config.input.resize} -> stretch"
    # a stage that is not done, or was finished before provenance was recorded, is never stale
    run.update_stage_state("evaluate", status="failed")
    run.update_stage_state("train", status="failed")
    assert "train" not in staleness(run, changed)
    run.update_stage_state("train", status="done", inputs=None)
    assert "train" not in staleness(run, changed)
    # an upstream stage that was never made: the note says so
    state = run.read_state()["stages"]
    assert state["split"]["inputs"]["upstream"]["index"]["note"] == "i"
    _write(run, "index/index.csv", "other")
    run.update_stage_state("index", made={})
    assert staleness(run, config)["prefilter"] == "index changed since: i -> not made"
