"""Run picker benchmark: how soon the picker shows over a folder of many runs, against reading them all.

Run: ``python bench/bench_picker.py [RUNS]`` (default 300 runs; a few seconds on 2 cores). Makes RUNS
finished runs with provenance and result files (every tenth one damaged), then measures in the same
process:

1. baseline: summarising every run synchronously (``carclf_core.catalog.summaries``): what the picker's
   first frame would wait for if it read the runs before drawing.
2. the real app (headless): from pressing ``o`` to the picker on screen, to every run listed (a row
   each, summaries pending), and to every summary shown.

Prints the figures and the ratios of (2) to (1); nothing is asserted (timings depend on the machine).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from carclf_core import catalog  # noqa: E402
from carclf_core import config as config_mod  # noqa: E402
from carclf_core.provenance import record  # noqa: E402
from carclf_tui.app import CarclfApp  # noqa: E402
from carclf_tui.sample_run import make_run_dir, write_sample_run  # noqa: E402
from carclf_tui.screens.picker import RunPicker  # noqa: E402

STAGES = ("index", "prefilter", "split", "train", "evaluate")


def make_runs(root: Path, count: int) -> None:
    config = config_mod.Config()
    for i in range(count):
        run = make_run_dir(root, f"20260101-{i:06d}-bench")
        if i % 10 == 9:
            run.state_path.write_text("{damaged")
            continue
        for name in STAGES:
            run.update_stage_state(name, status="done", duration_s=12.5)
            record(run, name, config, f"{name} made")
        for folder in ("split", "train", "evaluate"):
            (run.path / folder).mkdir(exist_ok=True)
        run.classes_json.write_text(json.dumps([f"class {k}" for k in range(300)]))
        run.train_summary.write_text(json.dumps({"val_accuracy": 0.9, "best_epoch": 12}))
        (run.evaluate_dir / "metrics.json").write_text(json.dumps({"accuracy": 0.88}))


async def time_picker(root: Path, count: int) -> tuple[float, float, float]:
    shown = write_sample_run(root, "20991231-235959-shown")  # the newest run, with a replayable event log
    app = CarclfApp(shown, config_mod.Config(), poll_interval=0.05)
    async with app.run_test(size=(120, 40)) as pilot:
        while app.screen.state.run_status != "done":
            await pilot.pause(0.05)
        start = time.perf_counter()
        app.action_open_run()
        while not isinstance(app.screen, RunPicker) or not app.screen.is_mounted:
            await asyncio.sleep(0.001)
        picker = app.screen
        on_screen = time.perf_counter() - start
        while not picker.listed:
            await asyncio.sleep(0.001)
        listed = time.perf_counter() - start
        while len(picker.summaries) < count + 1:
            await asyncio.sleep(0.005)
        filled = time.perf_counter() - start
    return on_screen, listed, filled


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "runs"
        make_runs(root, count)
        start = time.perf_counter()
        summaries = list(catalog.summaries(root))
        baseline = time.perf_counter() - start
        damaged = sum(s.status == catalog.DAMAGED for s in summaries)
        print(f"baseline: summarising {len(summaries)} runs ({damaged} damaged) synchronously: {baseline:.3f} s "
              f"({1000 * baseline / len(summaries):.2f} ms a run)")
        on_screen, listed, filled = asyncio.run(time_picker(root, count))
        print(f"picker: on screen after {1000 * on_screen:.0f} ms ({on_screen / baseline:.3f}x the baseline), "
              f"every run listed after {1000 * listed:.0f} ms ({listed / baseline:.2f}x), "
              f"every summary shown after {filled:.3f} s ({filled / baseline:.2f}x)")


if __name__ == "__main__":
    main()
