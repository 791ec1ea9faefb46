"""What the dashboard costs: cells repainted per event, bytes a real terminal receives when nothing
changes, and what the first frame loads. Rates and times are measured by bench/bench_tui.py (a live
run at the trainer's rate in a real pty); these tests pin the mechanisms, never a time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from textual.widgets._footer import FooterKey

from carclf_core import events as ev
from carclf_core import runstate as rs
from carclf_tui.sample_run import T0, make_run_dir, run_events, write_events, write_scores
from carclf_tui.widgets import plots
from carclf_tui.widgets.footer import KeysFooter
from carclf_tui.widgets.training import TrainingStats

from .conftest import make_app, wait_until, wait_until_still
from .test_app import show_tab

REPO = Path(__file__).resolve().parents[2]


def cells(regions) -> int:
    return sum(r.width * r.height for r in regions)


def batch(step: int) -> ev.BatchEnded:
    t = T0 + 60 + 3 + (step - 1) * 0.1
    return ev.BatchEnded(t=t, epoch=6, step=step, steps=400, loss=0.5 - step / 2000, accuracy=0.7 + step / 4000,
                         images_per_s=32 * step / (t - T0 - 60), eta_s=None)


async def test_a_batch_event_repaints_a_few_cells_not_the_tab(tmp_path) -> None:
    """A new batch event of the running epoch: the header and the curves change in a few cells (the
    step, the speed, the ETAs, the batch curve's end), so only those are sent to the terminal."""
    run = make_run_dir(tmp_path / "runs", "20260101-120000-demo")
    write_events(run, run_events(epochs=5, steps=40, planned=12, finished=False, scores=write_scores(run)))
    write_events(run, [ev.EpochStarted(t=T0 + 60, epoch=6, epochs=12, steps=400), *map(batch, range(5, 200, 5))])
    app = make_app(run, clock=lambda: batch(195).t)
    with run.lock():
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            await wait_until(pilot, lambda: screen.state.batch.last_step == 195)
            await show_tab(pilot, "2")
            widgets = [screen.query_one(TrainingStats), *screen.query(plots.CurvePlot)]
            for widget in widgets:
                widget.pacer.base = widget.pacer.interval = 0.0  # draw every change: count them all
            before = [widget.lines for widget in widgets]
            state = rs.apply(screen.state, batch(260))  # 65 steps more: a few dots further
            for widget in widgets:
                widget.show(state)
            changed = [plots.changed_regions(old, widget.lines, 80)
                       for old, widget in zip(before, widgets, strict=True)]
            assert all(regions is not None for regions in changed)  # no line more or less: no layout
            header, *curves = map(cells, changed)
            assert 0 < header <= 30, changed[0]
            assert all(0 < c <= 20 for c in curves), changed[1:]  # of about 40 x 9 cells each


async def test_the_lines_over_the_plots_keep_their_height(finished_run) -> None:
    """A shorter text (a phase that ends) would move the plots up, and a moved widget is sent whole:
    the header keeps the most lines it had since the last resize."""
    app = make_app(finished_run)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.state.run_status == "done")
        await show_tab(pilot, "2")
        stats = screen.query_one(TrainingStats)
        tall = rs.fold(screen.state, [ev.PatienceChanged(epoch=12, wait=1, patience=40, best=0.45, best_epoch=9,
                                                         monitor="a_rather_long_monitored_value_name" * 2)])
        stats.show(tall)
        lines = len(stats.lines)
        stats.show(screen.state)
        assert len(stats.lines) == lines and not stats.lines[-1].plain.strip()


async def test_the_footer_is_built_again_only_when_its_keys_change(finished_run) -> None:
    """Textual's footer makes a widget for every key each time the bindings may have changed (nine
    times in the first frame); the dashboard's keeps them while the keys shown stay the same."""
    app = make_app(finished_run)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.state.run_status == "done")
        await wait_until_still(pilot)
        footer = screen.query_one(KeysFooter)
        keys = list(footer.query(FooterKey))
        assert keys
        screen.refresh_bindings()  # as a focus change or a new state does: nothing to show differently
        await wait_until_still(pilot)
        assert list(footer.query(FooterKey)) == keys
        await show_tab(pilot, "5")  # the log tab has keys of its own
        await wait_until(pilot, lambda: "Filter" in [key.description for key in footer.query(FooterKey)])


def test_the_first_frame_loads_no_plotting_library_nvml_or_psutil(tmp_path) -> None:
    """The hidden tabs' panes are mounted, and the device sampler (NVML, psutil) loads, when the training
    tab is first shown; plotext and textual-image (numpy, Pillow) load in a thread after the first frame
    (the warm-up, run here at once by hand): none of it is in the first frame's way."""
    script = textwrap.dedent("""
        import asyncio, json, sys, time
        from carclf_core import config as config_mod
        from carclf_tui.app import CarclfApp
        from carclf_tui.sample_run import write_sample_run
        from carclf_tui.screens.main import MainScreen

        MainScreen.warm_up_s = None  # called below, once the first frame has been looked at

        async def main():
            app = CarclfApp(write_sample_run(sys.argv[1]), config_mod.Config())
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.pause()
                first = sorted(m for m in sys.modules if m.split(".")[0] in (
                    "plotext", "textual_plotext", "pynvml", "psutil", "matplotlib", "textual_image", "PIL", "numpy"))
                mounted = sorted(pane.TAB for pane in app.screen.panes.values() if pane.is_mounted)
                app.screen.warm_up()
                deadline = time.monotonic() + 60
                while "textual_image.widget" not in sys.modules and time.monotonic() < deadline:
                    await pilot.pause(0.05)
                warmed = sorted(pane.TAB for pane in app.screen.panes.values() if pane.is_mounted)
                await pilot.press("2")
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 90  # the sampler's thread imports them: slow on a busy machine
                while loop.time() < deadline and not any(m.split(".")[0] in ("pynvml", "psutil")
                                                         for m in sys.modules):
                    await pilot.pause(0.1)
                later = sorted({m.split(".")[0] for m in sys.modules} & {"pynvml", "psutil", "plotext"})
            print(json.dumps({"first": first, "later": later, "mounted": mounted, "warmed": warmed}))

        asyncio.run(main())
    """)
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "runs")], capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["first"] == []
    assert result["mounted"] == ["log", "stages"]  # the first tab, and the log (it collects while hidden)
    assert result["warmed"] == ["log", "stages"]  # plotext and textual-image loaded, no pane mounted for them
    assert "psutil" in result["later"] or "pynvml" in result["later"]  # the sampler did start on the tab
    assert "plotext" in result["later"]  # and plotext drew the curves


def test_a_dashboard_with_nothing_changing_sends_nothing(tmp_path) -> None:
    """In a real pseudo-terminal, on a finished run's training tab, the once-a-second tick draws
    nothing new, so (almost) no byte reaches the terminal: a monitor left open all day costs nothing."""
    import fcntl
    import pty
    import struct
    import termios

    from carclf_tui.sample_run import write_sample_run

    run = write_sample_run(tmp_path / "runs")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {**os.environ, "TERM": "xterm", "NO_COLOR": "1"}
    process = subprocess.Popen([sys.executable, "-m", "carclf_tui.cli", "--attach", str(run.path)], stdin=slave,
                               stdout=slave, stderr=slave, env=env, cwd=REPO, start_new_session=True)
    os.close(slave)
    received = bytearray()

    def read_for(seconds: float) -> int:
        import select

        count, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    break
                received.extend(data)
                count += len(data)
        return count

    try:
        deadline = time.monotonic() + 60
        while b"Training" not in received and time.monotonic() < deadline:
            read_for(0.2)
        os.write(master, b"2")
        deadline = time.monotonic() + 60
        while b"patience" not in received and time.monotonic() < deadline:
            read_for(0.2)  # the training tab drawn (slowly on a busy machine)
        assert b"patience" in received
        deadline = time.monotonic() + 30
        while read_for(1.5) > 100 and time.monotonic() < deadline:
            pass  # the replay settled
        quiet = read_for(4.0)
        assert quiet < 100, quiet  # four ticks of the clock: nothing to redraw on a finished run
    finally:
        process.terminate()
        process.wait(timeout=20)
        os.close(master)
