"""The dashboard process never imports TensorFlow (or Keras), even after visiting every panel, nor
scikit-learn before its first frame."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""
    import asyncio, json, sys, time
    started = time.perf_counter()
    from carclf_core import config as config_mod
    from carclf_tui import cli  # the console script's module
    from carclf_tui.app import CarclfApp
    from carclf_tui.sample_run import write_sample_run

    run = write_sample_run(sys.argv[1])

    async def main():
        app = CarclfApp(run, config_mod.Config(), poll_interval=0.05)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            first = time.perf_counter() - started
            # scikit-learn (the learned prefilter rule) is imported only when a rule is fitted
            assert not [m for m in sys.modules if m.split(".")[0] == "sklearn"], "sklearn at the first frame"
            screen = app.screen
            while screen.state.run_status != "done":
                await pilot.pause(0.05)
            for key in "123456":
                await pilot.press(key)
                await pilot.pause(0.1)
            await pilot.press("4", "plus")  # prefilter re-apply: carclf_core.prefilter
            await pilot.pause(1.0)
            await pilot.press("3", "v")  # confusion: carclf_core.heatmap
            await pilot.pause(0.2)
        return first

    first = asyncio.run(main())
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras", "jax", "torch"))
    print(json.dumps({"heavy": heavy, "first_frame_s": first}))
""")


def test_dashboard_never_imports_tensorflow(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "runs")], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
