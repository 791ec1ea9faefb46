"""End to end: the dashboard launches the real headless runner on a tiny generated dataset."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from carclf_core import config as config_mod
from carclf_tui.app import CarclfApp
from carclf_tui.sample_run import make_run_dir
from carclf_tui.widgets.stages import StagesTable

from ..conftest import demo_subset
from .conftest import wait_until

TAIL = "2019_37_17_188_20_4_72_56_187_27_AWD_5_4_4dr"


def tiny_dataset(root: Path) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k, (make, model) in enumerate((("Audi", "A4"), ("Ford", "F-150"))):
        for i in range(6):
            pixels = rng.integers(0, 255, (24, 36, 3), dtype=np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="JPEG")
            (root / f"{make}_{model}_{TAIL}_{k}{i:03d}.jpg").write_bytes(buffer.getvalue())
    (root / f"Audi_A4_{TAIL}_broken.jpg").write_bytes(b"")
    return root


@pytest.mark.slow
async def test_index_stage_runs_for_real_from_the_dashboard(tmp_path: Path) -> None:
    data = tiny_dataset(tmp_path / "data")
    config = config_mod.from_dict({"data": {"dir": str(data)}, "run": {"root": str(tmp_path / "runs")}})
    run = make_run_dir(tmp_path / "runs", "20260101-140000-real", config)
    app = CarclfApp(run, config, poll_interval=0.05)  # the default runner: carclf-tui --resume ... --plain
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.query_one(StagesTable).row_count >= 2, timeout=30)
        assert screen.query_one(StagesTable).selected_stage == "index"
        await pilot.press("r")
        await wait_until(pilot, lambda: screen.state.stages["index"].status in ("done", "failed"), timeout=180)
        assert app.runner.process.wait(timeout=30) == 0
        stage = screen.state.stages["index"]
        assert stage.status == "done", stage.traceback
        assert stage.summary == "12 images in 2 classes, 1 rejected"
        assert any(e.file.endswith("_broken.jpg") for e in screen.state.log)
    assert (Path(run.path) / "index" / "index.csv").is_file()
    assert (Path(run.path) / "runner.log").read_text().startswith("--- carclf-tui runner: index")


# Two real training processes (TensorFlow's start and the first step's build each): about a minute
# on 2 idle cores, so it runs with the extra tests (pytest -m extra).
@pytest.mark.extra
@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_training_from_the_dashboard_stops_mid_epoch_resumes_and_is_left_running(tmp_path: Path, reap) -> None:
    """The real runner trains while the training tab fills from its events; `s` stops it mid-epoch
    (the last finished epoch kept), `u` resumes after that epoch, and quitting leaves it running."""
    import os
    import signal

    from carclf_core.eventlog import read_events
    from carclf_core.pipeline import StageContext
    from carclf_core.registry import run_stage
    from carclf_core.runs import create_run
    from carclf_tui.screens.quit import QuitScreen
    from carclf_tui.widgets.training import TrainingStats

    from .test_app import show_tab

    data = demo_subset(tmp_path / "data")
    config = config_mod.load(None, [
        f"data.dir={data}", f"run.root={tmp_path / 'runs'}", "prefilter.mode=off", "split.min_per_class=5",
        "input.height=48", "input.width=72", "input.batch_size=4", "train.backbone=mobilenetv3small",
        "train.weights=null", "train.epochs=40", "train.patience=40", "train.confusion_sample=8",
        "train.batch_events_per_second=1000", "evaluate.export_savedmodel=false"])
    run = create_run(config)
    ctx = StageContext(config=run.load_config(), run=run, emit=lambda event: None)
    assert run_stage(ctx, "index") == "done" and run_stage(ctx, "split") == "done"

    app = CarclfApp(run, run.load_config(), poll_interval=0.05)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        table = screen.query_one(StagesTable)
        await wait_until(pilot, lambda: table.row_count == 5, timeout=30)
        await pilot.press("down", "down", "down")
        await wait_until(pilot, lambda: table.selected_stage == "train")
        await pilot.press("r")
        reap.append(app.runner.process.pid)
        await show_tab(pilot, "2")
        stats = screen.query_one(TrainingStats)
        # the tab fills from the real stream: a second epoch's batches, after one finished epoch
        await wait_until(pilot, lambda: screen.state.batch.epoch >= 2 and screen.state.batch.steps, timeout=240)
        await wait_until(pilot, lambda: any("epoch 2/40" in line.plain for line in stats.lines), timeout=30)
        assert [row.epoch for row in screen.state.epoch_rows][:1] == [1]

        await pilot.press("s")  # mid-epoch: SIGINT, the runner stops at the next batch
        await wait_until(pilot, lambda: screen.state.stages["train"].status == "interrupted", timeout=120)
        assert app.runner.process.wait(timeout=60) == 130
        kept = json.loads((Path(run.path) / "train" / "state.json").read_text())["completed_epochs"]
        assert kept >= 1
        first_attempt = len(read_events(run.events_path).events)

        await pilot.press("u")  # resume: the interrupted train stage (and evaluate after it)
        await wait_until(pilot, lambda: app.runner.process is not None and app.runner.poll() is None, timeout=30)
        reap.append(app.runner.process.pid)

        def resumed() -> list[int]:
            return [e.epoch for e in read_events(run.events_path).events[first_attempt:] if e.kind == "batch_ended"]

        await wait_until(pilot, lambda: bool(resumed()), timeout=240)
        assert resumed()[0] == kept + 1  # continued after the kept epoch, not from scratch
        await wait_until(pilot, lambda: screen.state.stages["train"].status == "running"
                         and screen.state.batch.epoch == kept + 1)

        await pilot.press("q")
        await wait_until(pilot, lambda: isinstance(app.screen, QuitScreen))
        await pilot.press("l")  # leave it running
        await pilot.pause()
    pid = app.runner.process.pid
    assert app.runner.process.poll() is None, "left running"
    assert [left.stage for left in app.leaving.running] == ["train"]
    os.kill(pid, signal.SIGINT)
    assert app.runner.process.wait(timeout=60) == 130
