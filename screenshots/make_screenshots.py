"""Regenerate ``screenshots/*.svg`` from the real dashboard (``App.save_screenshot``).

Usage: ``python screenshots/make_screenshots.py [RUN_DIR] [--only NAME ...]``. With a run directory
(e.g. a finished ``carclf-tui --demo --run-all`` run) the dashboard is attached to it; without one, a
recorded demo run is written to a temporary folder first (``carclf_tui.sample_run``: the events a demo
run emits, no TensorFlow needed). Each shot opens one tab at a fixed size once the replay is complete.

Two more shots work on a copy of the run, never the run itself: ``stale`` saves a new prefilter
threshold (``w``, confirmed) so the later stages turn stale, and ``picker`` opens the run picker over
the copy and a few made-up runs beside it (a new one, a failed one, a damaged one). ``teach`` labels
12 photos of the prefilter's queue in teach mode (answered from the demo's known kinds), on another
copy: it needs a real demo run, whose prefilter stored its probabilities.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from carclf_core import config as config_mod  # noqa: E402
from carclf_core.runs import RunDir, open_run  # noqa: E402
from carclf_tui.app import CarclfApp  # noqa: E402
from carclf_tui.sample_run import CLASSES, T0, make_run_dir, record_provenance, write_sample_run  # noqa: E402
from carclf_tui.screens.confirm import ConfirmScreen  # noqa: E402
from carclf_tui.screens.main import TABS  # noqa: E402
from carclf_tui.screens.picker import RunPicker  # noqa: E402

HERE = Path(__file__).resolve().parent
SHOTS = (  # file name, tab, terminal size, keys pressed on the tab
    ("stages", "stages", (100, 28), ()),
    ("training", "training", (140, 40), ()),
    ("training-80x24", "training", (80, 24), ()),
    ("confusion", "confusion", (110, 32), ()),
    ("most-confused", "confusion", (110, 32), ("v",)),
    ("prefilter", "prefilter", (110, 32), ()),
    ("log", "log", (110, 24), ()),
)


async def shoot(run: RunDir, name: str, tab: str, size: tuple[int, int], keys: tuple[str, ...]) -> Path:
    app = CarclfApp(run, config_mod.Config(), clock=lambda: T0 + 100.0, poll_interval=0.05)
    async with app.run_test(size=size) as pilot:
        screen = app.screen
        while screen.state.run_status in ("pending", "running") or screen.state.revision < 10:
            await pilot.pause(0.05)
        await pilot.press(str(TABS.index(tab) + 1))
        while screen.query_one("#tabs").active != tab:
            await pilot.pause(0.05)
        await pilot.pause(0.3)
        for key in keys:
            await pilot.press(key)
        await pilot.pause(0.5)
        app.clear_notifications()
        await pilot.pause(0.1)
        path = HERE / f"{name}.svg"
        app.save_screenshot(filename=path.name, path=str(HERE))
    return path


async def replayed(pilot) -> None:
    screen = pilot.app.screen
    while screen.state.run_status in ("pending", "running") or screen.state.revision < 10:
        await pilot.pause(0.05)


def save(app: CarclfApp, name: str) -> Path:
    app.clear_notifications()
    path = HERE / f"{name}.svg"
    app.save_screenshot(filename=path.name, path=str(HERE))
    return path


async def shoot_stale(run: RunDir, size: tuple[int, int] = (100, 28)) -> Path:
    """The stages tab after a new threshold was saved in the same dashboard: split, train and evaluate stale."""
    app = CarclfApp(run, config_mod.Config(), clock=lambda: T0 + 100.0, poll_interval=0.05)
    async with app.run_test(size=size) as pilot:
        await replayed(pilot)
        screen = app.screen
        await pilot.press("4", "plus")
        pane = screen.panes["prefilter"]
        while pane.trial is None or pane.trial_pending:
            await pilot.pause(0.05)
        await pilot.press("w")
        while not isinstance(app.screen, ConfirmScreen):
            await pilot.pause(0.05)
        await pilot.press("y")
        while screen.state.stages["evaluate"].status != "stale":
            await pilot.pause(0.05)
        await pilot.press("1", "down", "down")  # split: why it is stale
        await pilot.pause(0.5)
        return save(app, "stale")


async def shoot_picker(run: RunDir, size: tuple[int, int] = (100, 28)) -> Path:
    """The run picker over ``run``'s folder."""
    app = CarclfApp(run, config_mod.Config(), clock=lambda: T0 + 3 * 86400, poll_interval=0.05)
    async with app.run_test(size=size) as pilot:
        await replayed(pilot)
        await pilot.press("o")
        while not isinstance(app.screen, RunPicker) or not app.screen.listed:
            await pilot.pause(0.05)
        picker = app.screen
        while len(picker.summaries) < len(picker.runs):
            await pilot.pause(0.05)
        await pilot.pause(0.3)
        return save(app, "picker")


async def shoot_teach(run: RunDir, size: tuple[int, int] = (110, 32), labels: int = 12) -> Path | None:
    """The prefilter tab in teach mode after ``labels`` photos of the queue were labelled (answered from
    the demo's known kinds): only on a demo run whose prefilter stored its probabilities."""
    from carclf_core import demo

    if not (run.prefilter_dir / "probs.npy").is_file():
        print("teach: skipped (needs a demo run whose prefilter kept probs.npy: carclf-tui --demo --run-all)")
        return None
    app = CarclfApp(run, config_mod.Config(), clock=lambda: T0 + 100.0, poll_interval=0.05)
    async with app.run_test(size=size) as pilot:
        await replayed(pilot)
        screen = app.screen
        await pilot.press("4")
        pane = screen.panes["prefilter"]
        while pane.threshold is None:
            await pilot.pause(0.05)
        await pilot.press("t")
        for done in range(labels + 1):
            while pane._teaching or pane._jobs or pane.teach_view is None or pane.notice:
                if pane.notice:
                    print(f"teach: skipped ({pane.notice})")
                    return None
                await pilot.pause(0.05)
            if done == labels:
                break
            first = pane.teach_view.queue[0].path
            kind = demo.known_kinds([first]).get(first)
            if kind is None:
                print("teach: skipped (not the demo's pictures)")
                return None
            await pilot.press("y" if kind == "car" else "n")
            while pane.teach_view.labelled_car + pane.teach_view.labelled_not < done + 1:
                await pilot.pause(0.05)
        await pilot.pause(1.0)  # the pictures
        return save(app, "teach")


def beside(run: RunDir) -> None:
    """A few made-up runs in ``run``'s folder for the picker: new, failed, damaged."""
    root = Path(run.path).parent
    make_run_dir(root, "20260102-090000-carclf")
    failed = make_run_dir(root, "20260101-180000-resnet50")
    record_provenance(failed, ("index", "prefilter", "split"), duration_s=40.0)
    failed.update_stage_state("train", status="failed", summary="train.backbone: unknown")
    damaged = make_run_dir(root, "20260101-150000-carclf")
    damaged.state_path.write_text("{torn")
    os.utime(damaged.path, (T0 + 3 * 3600, T0 + 3 * 3600))  # its age comes from the folder


def recorded_results(run: RunDir) -> None:
    """What a real run's split, train and evaluate leave for the picker, matching the recorded events."""
    for folder in ("split", "train", "evaluate"):
        (Path(run.path) / folder).mkdir(exist_ok=True)
    run.classes_json.write_text(json.dumps(list(CLASSES)))
    run.train_summary.write_text(json.dumps({"val_accuracy": 0.864, "best_epoch": 8}))
    (run.evaluate_dir / "metrics.json").write_text(json.dumps({"accuracy": 0.871, "top5": 0.99}))


def main(argv: list[str]) -> int:
    only = set(argv[argv.index("--only") + 1:]) if "--only" in argv else None
    argv = argv[:argv.index("--only")] if "--only" in argv else argv
    with tempfile.TemporaryDirectory() as tmp:
        run = open_run(argv[0]) if argv else write_sample_run(Path(tmp) / "runs")
        for name, tab, size, keys in SHOTS:
            if only is None or name in only:
                path = asyncio.run(shoot(run, name, tab, size, keys))
                print(f"wrote {path.relative_to(HERE.parent)}")
        copy = RunDir(Path(tmp) / "copy" / Path(run.path).name)
        shutil.copytree(run.path, copy.path, ignore=shutil.ignore_patterns(".lock"))
        if not any(entry.get("made") for entry in copy.read_state().get("stages", {}).values()):
            record_provenance(copy)  # a recorded run: what a real runner would have recorded
            recorded_results(copy)
        for name, shot in (("stale", shoot_stale), ("picker", shoot_picker)):
            if only is None or name in only:
                if name == "picker":
                    beside(copy)
                print(f"wrote {asyncio.run(shot(copy)).relative_to(HERE.parent)}")
        if only is None or "teach" in only:
            taught = RunDir(Path(tmp) / "teach" / Path(run.path).name)  # labels.csv goes to a copy
            shutil.copytree(run.path, taught.path, ignore=shutil.ignore_patterns(".lock", "labels.csv"))
            if (path := asyncio.run(shoot_teach(taught))) is not None:
                print(f"wrote {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
