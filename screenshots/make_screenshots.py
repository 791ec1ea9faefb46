"""Regenerate ``screenshots/*.svg`` from the real dashboard (``App.save_screenshot``).

Usage: ``python screenshots/make_screenshots.py [RUN_DIR]``. With a run directory (e.g. a finished
``carclf-tui --demo --run-all`` run) the dashboard is attached to it; without one, a recorded demo run
is written to a temporary folder first (``carclf_tui.sample_run``: the events a demo run emits, no
TensorFlow needed). Each shot opens one tab at a fixed size once the replay is complete.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from carclf_core import config as config_mod  # noqa: E402
from carclf_core.runs import RunDir, open_run  # noqa: E402
from carclf_tui.app import CarclfApp  # noqa: E402
from carclf_tui.sample_run import T0, write_sample_run  # noqa: E402
from carclf_tui.screens.main import TABS  # noqa: E402

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


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        run = open_run(argv[0]) if argv else write_sample_run(Path(tmp) / "runs")
        for name, tab, size, keys in SHOTS:
            path = asyncio.run(shoot(run, name, tab, size, keys))
            print(f"wrote {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
