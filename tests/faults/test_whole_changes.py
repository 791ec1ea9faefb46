"""Whole changes: a saved prefilter decision and a stage re-run cut short between every two writes.

Each case runs the real code in a forked child whose N-th write step (an ``os.fsync``, ``os.replace``,
``os.rename``, ``os.unlink`` or ``os.rmdir``: the calls that make a write of the run durable or visible)
is never made: the child ends there with ``os._exit``, as a SIGKILL would end it, or (a full disk) that
step and every later one fails with ENOSPC. N runs over every step the uninterrupted operation makes.
After each, the run must be consistent as it is (or name itself as cut short), and after the real
``--resume`` consistent and up to date: kept.csv agrees with rule.json, the config, state.json and the
event log, and no stage says done without its folder and the very files it recorded. (``--resume``
is given the stage to bring up to date, the split or the index: the run has no training, which a plain
``--resume`` would start. What a plain one would run is checked with ``pending_stages``, which it
calls: afterwards only train and evaluate, every stage before them fresh.)

The prefilter is real but never loads a model: its score chunks are written beforehand (synthetic
ImageNet probabilities for the index's real JPEGs), and the stage reuses them as it reuses the
chunks of an interrupted run.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from carclf_core import catalog
from carclf_core.errors import RunError
from carclf_core.eventlog import read_events
from carclf_core.prefilter import scores as store
from carclf_core.prefilter.classifiers import model_signature
from carclf_core.provenance import LINEAGES, fingerprint, staleness
from carclf_core.registry import pending_stages
from carclf_core.runs import CHANGE_PREFIX, PENDING_PREFIX, TEMP_PREFIX, Change, RunDir, open_run
from carclf_tui.cli import main

from ..conftest import make_dataset
from .conftest import Runner, stage_status

CLASSES = {("Audi", "A4"): 12, ("BMW", "X5"): 12, ("Kia", "Rio"): 12}
OLD, NEW = 0.1, 0.5
"""The run's threshold, and the one saved."""
KILLED = 137
STEPS = ("fsync", "replace", "rename", "unlink", "rmdir")


def _cli(*args: str) -> int:
    return main(["--plain", *args])


def _write_chunks(run: RunDir) -> None:
    """Score chunks for every usable index image, as the stage would store them: the car classes'
    summed probability spread evenly over 0..1, so any threshold splits every class."""
    cfg = run.load_config().prefilter
    index = pd.read_csv(run.index_csv, dtype={"path": str}, keep_default_na=False)
    paths = index.loc[index["status"] == "ok", "path"].astype(str).tolist()
    car = np.linspace(0.02, 0.98, len(paths))[np.random.default_rng(0).permutation(len(paths))]
    probs = np.full((len(paths), 1000), 0.0, dtype=np.float64)
    probs[:, cfg.car_classes[0]] = car
    probs[:, 1] = 1 - car  # a non-car class holds the rest
    folder, _ = store.open_chunks(run, model_signature(cfg))
    store.write_chunk(store.chunk_path(folder, 0),
                      store.Chunk(np.array(paths, dtype=str), probs.astype(np.float16), np.array([""] * len(paths))))


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    """A run with index, prefilter (threshold OLD) and split done."""
    root = tmp_path_factory.mktemp("whole")
    data = make_dataset(root / "data", CLASSES)
    settings = [f"data.dir={data}", f"run.root={root / 'runs'}", f"prefilter.threshold={OLD}",
                "split.min_per_class=3", "split.train=0.5", "split.val=0.25", "split.test=0.25"]
    assert _cli("--stage", "index", *[a for s in settings for a in ("--set", s)]) == 0
    (run,) = (root / "runs").iterdir()
    _write_chunks(RunDir(run))
    assert _cli("--resume", str(run), "--stage", "prefilter", "--stage", "split") == 0
    assert all(stage_status(run, s) == "done" for s in ("index", "prefilter", "split"))
    return run


def _copy(base: Path, tmp_path: Path, name: str) -> Path:
    target = base.parent / f"{base.name}-{tmp_path.name}-{name}"
    shutil.copytree(base, target, symlinks=True)
    return target


def _cut_short(action: Callable[[], object], at: int, full_disk: bool = False) -> tuple[int, int]:
    """Run ``action`` in a forked child whose write step number ``at`` is never made (1-based).

    Returns:
        The child's exit status (KILLED when cut there; else the CLI's exit status, 0 for another
        action that ended, 1 for one that raised) and the number of steps it reached.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        seen = 0
        try:
            os.close(read_end)
            real = {name: getattr(os, name) for name in STEPS}

            def step(name: str):
                def call(*args, **kwargs):
                    nonlocal seen
                    seen += 1
                    if seen >= at:
                        if not full_disk:
                            os.write(write_end, str(seen).encode())
                            os._exit(KILLED)
                        if name in ("fsync", "replace", "rename"):
                            raise OSError(errno.ENOSPC, "No space left on device (injected)")
                    return real[name](*args, **kwargs)
                return call

            for name in STEPS:
                setattr(os, name, step(name))
            result = action()
            code = result if isinstance(result, int) else 0  # the CLI's exit status
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            os.write(write_end, str(seen).encode())
            os._exit(code)
    os.close(write_end)
    deadline = time.monotonic() + 120
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:  # polled: a child stuck anywhere fails the test
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail(f"the child cut short at step {at} did not end within 120 s")
        time.sleep(0.01)
    status = done[1]
    with os.fdopen(read_end, "rb") as handle:
        seen = int(handle.read().decode() or 0)
    return os.waitstatus_to_exitcode(status), seen


def _leftovers(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*")
                  if p.name.startswith((CHANGE_PREFIX, PENDING_PREFIX, TEMP_PREFIX)))


def _check_stages(run: Path) -> None:
    """No stage says done without its folder and the very files it recorded (a prefilter with mode
    off made none, and recorded them absent)."""
    state = json.loads((run / "state.json").read_text())["stages"]
    for name, entry in state.items():
        if entry.get("status") == "done":
            recorded = entry["made"]["fingerprint"]
            assert fingerprint(RunDir(run), LINEAGES[name].outputs) == recorded, f"{name}: not the files it made"


def _decision(run: Path) -> float:
    """Check that the prefilter's files make one decision; returns its threshold."""
    rundir = RunDir(run)
    rule = json.loads((run / "prefilter" / "rule.json").read_text())
    config = rundir.load_config().prefilter
    assert (rule["threshold"], rule["rule"]) == (config.threshold, config.rule), "rule.json and config differ"
    kept = pd.read_csv(run / "prefilter" / "kept.csv")
    rejected = pd.read_csv(run / "prefilter" / "rejected.csv")
    assert len(kept) == rule["kept"] and len(kept) + len(rejected) == rule["total"]
    assert (kept["car_prob"] > rule["threshold"]).all() and (rejected["car_prob"] <= rule["threshold"]).all()
    assert store.reapply(rundir)["kept"] == len(kept)  # the stored scores decide the same
    entry = json.loads((run / "state.json").read_text())["stages"]["prefilter"]
    assert entry["summary"].startswith(f"{len(kept):,} / "), entry["summary"]
    # what the dashboard folds from the event log says the same
    said = [e.summary for e in read_events(run / "events.jsonl").events
            if e.kind in ("stage_finished", "stage_updated") and e.stage == "prefilter"]
    assert said[-1] == entry["summary"]
    return rule["threshold"]


def _split_from_current_decision(run: Path) -> None:
    if stage_status(run, "split") != "done":
        return
    kept = set(pd.read_csv(run / "prefilter" / "kept.csv", dtype={"path": str})["path"])
    split = pd.read_csv(run / "split" / "splits.csv", dtype={"path": str})
    assert set(split["path"]) <= kept, "the split holds photos the decision rejects"


def _check_after_resume(run: Path) -> float:
    assert _leftovers(run) == []
    _check_stages(run)
    threshold = _decision(run)
    rundir = open_run(run)
    assert pending_stages(rundir) == ["train", "evaluate"] and staleness(rundir, rundir.load_config()) == {}
    _split_from_current_decision(run)
    return threshold


def _save(run: Path) -> Callable[[], object]:
    return lambda: store.reapply(run, threshold=NEW, write=True)


def test_a_decision_saved_in_full_is_consistent_and_makes_the_split_stale(base_run, tmp_path):
    run = _copy(base_run, tmp_path, "whole")
    code, steps = _cut_short(_save(run), at=10**6)
    assert code == 0 and steps > 10
    _check_stages(run)
    assert _decision(run) == NEW and _leftovers(run) == []
    assert list(staleness(open_run(run), open_run(run).load_config())) == ["split"]
    assert _cli("--resume", str(run), "--stage", "split") == 0
    assert _check_after_resume(run) == NEW


@pytest.mark.parametrize("full_disk", [False, True], ids=["killed", "disk-full"])
def test_a_save_cut_short_at_every_write_is_old_or_new_whole_and_resume_finishes_it(base_run, tmp_path, full_disk,
                                                                                    capsys):
    _, steps = _cut_short(_save(_copy(base_run, tmp_path, "count")), at=10**6)
    outcomes = set()
    for at in range(1, steps + 1):
        run = _copy(base_run, tmp_path, f"at-{at}")
        code, _ = _cut_short(_save(run), at=at, full_disk=full_disk)
        # a full disk fails the step and every later write (removing the journal, the last step, is no write)
        assert code in ((0, 1) if full_disk else (KILLED,)), f"step {at}: {code}"
        journal = [p for p in run.iterdir() if p.name.startswith(CHANGE_PREFIX)]
        summary = catalog.summarize(open_run(run))
        if journal:
            # parts of two decisions: named, never read as one
            assert summary.status == "interrupted" and "cut short" in summary.detail, summary
            with pytest.raises(RunError, match="cut short"):
                store.kept_paths(open_run(run))
        else:
            _check_stages(run)
            decided = _decision(run)
            assert decided in (OLD, NEW), f"step {at}"
            # the split made from the old decision is stale as soon as the new one is in place
            assert summary.status == ("stale" if decided == NEW else "partial"), (at, summary)
        capsys.readouterr()
        assert _cli("--resume", str(run), "--stage", "split") == 0, f"step {at}"
        said = "was cut short; finished it now from its journal" in capsys.readouterr().out
        assert said == bool(journal), f"step {at}"
        outcome = _check_after_resume(run)
        assert outcome == NEW or not journal, f"step {at}: a committed change was lost"
        outcomes.add(outcome)
        shutil.rmtree(run)
    assert outcomes == {OLD, NEW}  # cut before its journal the save is not made, after it it is


def _rerun(run: Path, stage: str) -> Callable[[], object]:
    return lambda: _cli("--resume", str(run), "--stage", stage)


@pytest.mark.parametrize("full_disk", [False, True], ids=["killed", "disk-full"])
def test_a_stage_rerun_cut_short_at_every_write_never_says_done_without_its_folder(base_run, tmp_path, full_disk):
    _, steps = _cut_short(_rerun(_copy(base_run, tmp_path, "count"), "index"), at=10**6)
    for at in range(1, steps + 1):
        run = _copy(base_run, tmp_path, f"at-{at}")
        old_index = (run / "index" / "index.csv").read_bytes()
        code, _ = _cut_short(_rerun(run, "index"), at=at, full_disk=full_disk)
        assert code in ((1, 2) if full_disk else (KILLED,)), f"step {at}: {code}"
        _check_stages(run)
        if stage_status(run, "index") != "done":  # marked: redone by --resume, the old results whole
            moved = list((run / "previous").glob("index-*/index.csv"))
            assert (moved[0] if moved else run / "index" / "index.csv").read_bytes() == old_index, f"step {at}"
            assert pending_stages(open_run(run))[0] == "index"
        assert _cli("--resume", str(run), "--stage", "index") == 0, at  # prefilter and split stay fresh: checked below
        _check_after_resume(run)
        assert stage_status(run, "index") == "done"
        shutil.rmtree(run)


def test_a_stage_whose_upstream_failed_is_not_started_and_keeps_its_folder(base_run, tmp_path):
    run = _copy(base_run, tmp_path, "upstream")
    RunDir(run).update_stage_state("index", status="failed")
    split = {p.name: p.read_bytes() for p in (run / "split").iterdir()}
    assert _cli("--resume", str(run), "--stage", "split") == 1
    assert {p.name: p.read_bytes() for p in (run / "split").iterdir()} == split
    assert stage_status(run, "split") == "done" and not (run / "previous").exists()


def test_a_rerun_on_a_full_disk_marks_the_stage_and_resume_redoes_it(tmp_path):
    """The disk fills up (a file size limit, as the training fault suite does) while a done index is
    re-run: the stage fails, says so, its earlier results stay whole under previous/; the split made
    from them refuses to start; after space is freed --resume redoes the index and what follows."""
    data = make_dataset(tmp_path / "data", {("Audi", "A4"): 150, ("BMW", "X5"): 150}, size=(16, 12))
    settings = [f"data.dir={data}", f"run.root={tmp_path / 'runs'}", "prefilter.mode=off"]
    assert _cli("--stage", "index", "--stage", "prefilter", "--stage", "split",
                *[a for s in settings for a in ("--set", s)]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    index = (run / "index" / "index.csv").read_bytes()
    limit = max(p.stat().st_size for p in run.iterdir() if p.is_file()) + 4096
    assert len(index) > limit  # the index is what no longer fits
    full = Runner(["--resume", str(run), "--stage", "index"], tmp_path, max_file_bytes=limit)
    assert full.wait(120) == 1, full.output
    assert "disk full" in full.output
    assert stage_status(run, "index") == "failed"
    (kept,) = (run / "previous").glob("index-*")
    assert (kept / "index.csv").read_bytes() == index
    _check_stages(run)
    split = Runner(["--resume", str(run), "--stage", "split"], tmp_path)
    assert split.wait(120) == 1 and "index, which is failed" in split.output
    assert stage_status(run, "split") == "done" and (run / "split" / "splits.csv").is_file()
    assert pending_stages(open_run(run))[0] == "index"  # not "up to date"
    assert _cli("--resume", str(run), "--stage", "index", "--stage", "prefilter", "--stage", "split") == 0
    _check_stages(run)
    assert all(stage_status(run, s) == "done" for s in ("index", "prefilter", "split"))
    assert (run / "index" / "index.csv").read_bytes() == index


def test_a_change_journal_that_is_not_ours_is_refused_naming_it(tmp_path, base_run):
    run = _copy(base_run, tmp_path, "journal")
    journal = run / f"{CHANGE_PREFIX}0123abcd.json"
    journal.write_text(json.dumps({"renames": [["../../elsewhere", "state.json"]], "appends": []}))
    assert _cli("--resume", str(run), "--stage", "split") == 2
    assert catalog.summarize(open_run(run)).status == "damaged"
    assert journal.is_file() and stage_status(run, "split") == "done"


def test_a_change_staged_but_never_committed_leaves_nothing(tmp_path, base_run):
    run = _copy(base_run, tmp_path, "staged")
    rundir = RunDir(run)
    before = rundir.kept_csv.read_bytes()
    change = Change(run, "test change")
    change.write_text(rundir.kept_csv, "path,car_prob\n")
    assert rundir.kept_csv.read_bytes() == before and _leftovers(run)
    with rundir.lock() as completed:
        assert completed == []
    assert _leftovers(run) == [] and rundir.kept_csv.read_bytes() == before


def test_a_save_into_a_symlinked_event_log_is_refused_before_anything_changes(tmp_path, base_run):
    run = _copy(base_run, tmp_path, "link")
    outside = tmp_path / "elsewhere.jsonl"
    outside.write_text("not the run's\n")
    (run / "events.jsonl").unlink()
    (run / "events.jsonl").symlink_to(outside)
    before = {p.name: p.read_bytes() for p in (run / "prefilter").iterdir() if p.is_file()}
    with pytest.raises(RunError, match="symbolic link"):
        store.reapply(run, threshold=NEW, write=True)
    assert {p.name: p.read_bytes() for p in (run / "prefilter").iterdir() if p.is_file()} == before
    assert outside.read_text() == "not the run's\n" and RunDir(run).load_config().prefilter.threshold == OLD
    assert _leftovers(run) == []  # what it had staged is removed with the refusal


def test_predict_on_a_run_whose_evaluate_rerun_was_cut_short_says_resume_and_where_the_old_export_is(
        tmp_path, base_run, capsys):
    """What a re-run of evaluate cut short after its mark leaves (as the re-run tests above make it for
    the index): evaluate running, its earlier results under previous/."""
    run = _copy(base_run, tmp_path, "predict")
    RunDir(run).replace_stage_state("evaluate", {"status": "running", "replacing": "previous/evaluate-20260101-000000"})
    assert main(["predict", str(run), str(tmp_path)]) == 2
    said = capsys.readouterr().err
    assert "no exported model" in said and "the evaluate stage is running" in said
    assert "previous/evaluate-20260101-000000/export" in said and f"carclf-tui --resume {run} runs it" in said
