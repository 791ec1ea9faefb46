"""End to end: the dashboard launches the real headless runner on a tiny generated dataset."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from carclf_core import config as config_mod
from carclf_tui.app import CarclfApp
from carclf_tui.sample_run import make_run_dir
from carclf_tui.widgets.stages import StagesTable

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
