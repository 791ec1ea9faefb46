"""The run picker (``o``): every run of the folder with its status and results, a damaged one among
them; enter shows the chosen run, escape closes."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from carclf_core import events as ev
from carclf_core.runs import RunDir
from carclf_tui.sample_run import make_run_dir, record_provenance, write_events, write_sample_run
from carclf_tui.screens.main import MainScreen
from carclf_tui.screens.picker import RunPicker
from carclf_tui.widgets.stages import StagesTable

from .conftest import STAGES, cell, frozen_clock, make_app, wait_until


def results(run: RunDir, val: float, test: float, classes: int) -> None:
    """The result files the picker reads, as train, evaluate and split write them."""
    for folder in ("split", "train", "evaluate"):
        (Path(run.path) / folder).mkdir(exist_ok=True)
    run.classes_json.write_text(json.dumps([f"class {i}" for i in range(classes)]))
    run.train_summary.write_text(json.dumps({"val_accuracy": val, "best_epoch": 9}))
    (run.evaluate_dir / "metrics.json").write_text(json.dumps({"accuracy": test, "top5": 0.99}))


def runs_folder(root: Path) -> dict[str, RunDir]:
    """Six runs, oldest first: done, stale, failed, damaged, new, and one holding a FIFO; plus a folder
    that is not a run (no marker), which the picker leaves out."""
    done = write_sample_run(root, "20260101-100000-done")
    record_provenance(done)
    results(done, val=0.912, test=0.871, classes=8)
    stale = make_run_dir(root, "20260101-110000-stale")
    record_provenance(stale, STAGES[:3])
    config = stale.load_config()
    stale.update_config(dataclasses.replace(config, split=dataclasses.replace(config.split, top_n=20)), source="test")
    failed = make_run_dir(root, "20260101-120000-failed")
    record_provenance(failed, STAGES[:3])
    failed.update_stage_state("train", status="failed", summary="out of memory")
    damaged = make_run_dir(root, "20260101-130000-damaged")
    damaged.state_path.write_text("{this is not json")
    fifo = make_run_dir(root, "20260101-133000-fifo")
    fifo.train_dir.mkdir()
    os.mkfifo(fifo.train_summary)  # reading it would hang a careless reader
    new = make_run_dir(root, "20260101-140000-new")
    write_events(new, [ev.StageStarted(stage="index", t=1.0),
                       ev.StageFinished(stage="index", duration_s=1.0, summary="12 images in 2 classes", t=2.0)])
    (root / "notes").mkdir()
    (root / "notes" / "config.yaml").write_text("run:\n  name: x\n")
    return {"done": done, "stale": stale, "failed": failed, "damaged": damaged, "fifo": fifo, "new": new}


async def open_picker(pilot) -> RunPicker:
    app = pilot.app
    await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))
    await pilot.press("o")
    await wait_until(pilot, lambda: isinstance(app.screen, RunPicker))
    picker = app.screen
    await wait_until(pilot, lambda: picker.listed and len(picker.summaries) == len(picker.runs))
    await pilot.pause()
    return picker


async def test_the_picker_lists_every_run_a_damaged_one_included(tmp_path) -> None:
    runs = runs_folder(tmp_path / "runs")
    app = make_app(runs["done"], clock=frozen_clock)
    async with app.run_test(size=(120, 36)) as pilot:
        picker = await open_picker(pilot)
        table = picker.query_one("#runs")
        keys = {name: key for name, run in runs.items() for key, listed in picker.runs.items() if listed == run}
        assert len(keys) == len(runs)
        assert table.row_count == 6  # the folder without a run marker is not listed
        assert [cell(table, keys[name], "run").strip() for name in ("new", "fifo", "damaged")] == \
            ["20260101-140000-new", "20260101-133000-fifo", "20260101-130000-damaged"]  # newest first
        assert cell(table, keys["done"], "run") == "● 20260101-100000-done"  # the run shown now
        assert cell(table, keys["done"], "status") == "✓ done"
        assert [cell(table, keys["done"], c) for c in ("classes", "val acc", "test acc", "time")] == \
            ["8", "0.912", "0.871", "5.0s"]
        assert cell(table, keys["stale"], "status") == "↻ stale"
        assert cell(table, keys["failed"], "status") == "✗ failed train"
        assert cell(table, keys["damaged"], "status") == "! damaged"
        assert cell(table, keys["fifo"], "status") == "! damaged"
        assert cell(table, keys["new"], "status") == "· new"
        assert picker.summaries[keys["damaged"]].detail == "state.json: not valid JSON"
        assert picker.summaries[keys["fifo"]].detail == "summary.json: not a regular file"
        assert picker.summaries[keys["stale"]].detail == "split"
        # the highlighted run's path and what is wrong with it show under the table
        table.move_cursor(row=table.get_row_index(keys["damaged"]))
        await pilot.pause()
        detail = str(picker.query_one("#run-detail").render())
        assert keys["damaged"] in detail and "damaged: state.json: not valid JSON" in detail


async def test_enter_shows_the_chosen_run_and_escape_closes(tmp_path) -> None:
    runs = runs_folder(tmp_path / "runs")
    app = make_app(runs["done"])
    async with app.run_test(size=(120, 36)) as pilot:
        picker = await open_picker(pilot)
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))
        assert app.run_dir == runs["done"]
        picker = await open_picker(pilot)
        table = picker.query_one("#runs")
        assert picker.runs[str(table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value)] == runs["done"]
        table.move_cursor(row=0)  # the newest: the new run
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen) and app.run_dir == runs["new"])
        screen = app.screen
        await wait_until(pilot, lambda: screen.state.stages["index"].status == "done")
        assert screen.state.stages["index"].summary == "12 images in 2 classes"
        assert screen.state.stages["train"].status == "pending"
        assert str(screen.query_one(StagesTable).get_cell("index", "result")) == "12 images in 2 classes"
        # the damaged run opens too: the dashboard shows what its events say (nothing), never dies
        picker = await open_picker(pilot)
        table = picker.query_one("#runs")
        table.move_cursor(row=table.get_row_index(str(runs["damaged"].path)))
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen) and app.run_dir == runs["damaged"])
        await pilot.pause(0.3)
        assert app.screen.state.run_status == "pending"


async def test_the_picker_opens_on_start_when_asked(tmp_path) -> None:
    runs = runs_folder(tmp_path / "runs")
    app = make_app(runs["new"], pick_run=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, RunPicker))
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))
        assert app.run_dir == runs["new"]
