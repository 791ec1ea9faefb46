"""Snapshot tests: the dashboard drawn at fixed sizes from recorded runs with a frozen clock.

Regenerate with ``pytest tests/tui/test_snapshots.py --snapshot-update`` after an intended change and
look at the SVGs in ``__snapshots__/`` before committing them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from carclf_core import events as ev
from carclf_tui.sample_run import T0, make_run_dir, run_events, write_events, write_sample_run, write_scores

from .conftest import frozen_clock, make_app, wait_until


def settle(tab: str, ready=lambda state: state.run_status == "done"):
    """A ``run_before`` that waits until the replay reached ``ready(state)``, then opens ``tab``."""

    async def run_before(pilot) -> None:
        screen = pilot.app.screen
        await wait_until(pilot, lambda: ready(screen.state))
        screen.action_tab(tab)
        await wait_until(pilot, lambda: screen.query_one("#tabs").active == tab)
        await pilot.pause(0.2)

    return run_before


@pytest.fixture
def recorded(tmp_path: Path):
    return write_sample_run(tmp_path / "runs")


@pytest.mark.parametrize("tab,size", [("stages", (100, 30)), ("training", (120, 36)), ("training", (80, 24)),
                                      ("prefilter", (100, 30))])
def test_finished_run(snap_compare, recorded, tab, size) -> None:
    app = make_app(recorded, clock=frozen_clock)
    assert snap_compare(app, terminal_size=size, run_before=settle(tab))


def test_training_in_progress(snap_compare, tmp_path) -> None:
    """Epoch 5 of 12 running: batch curve, patience meter, ETA; the test holds the lock like a runner."""
    run = make_run_dir(tmp_path / "runs", "20260101-120000-demo")
    write_events(run, run_events(epochs=5, steps=40, planned=12, finished=False, scores=write_scores(run)))
    # Half of epoch 6: the live batch curve.
    write_events(run, [ev.EpochStarted(t=T0 + 60, epoch=6, epochs=12, steps=40)] +
                 [ev.BatchEnded(t=T0 + 60 + s, epoch=6, step=s, steps=40, loss=0.5 - s / 200, accuracy=0.7 + s / 400,
                                images_per_s=612.0, eta_s=(40 - s) * 0.05) for s in range(1, 21)])
    app = make_app(run, clock=frozen_clock)
    with run.lock():
        assert snap_compare(app, terminal_size=(120, 36), run_before=settle(
            "training", ready=lambda state: state.batch.epoch == 6 and state.batch.last_step == 20))
