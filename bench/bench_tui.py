"""Dashboard benchmarks: replay speed, key latency under a full-speed event stream, memory over a long run.

Run: ``python bench/bench_tui.py`` (a few tens of seconds on 2 cores). Prints figures and ratios against
the targets of issue 5; nothing here is asserted (timings depend on the machine).

1. replay: a finished run of 100 epochs x 1,000 batch events, parsed and folded by the reducer, and
   replayed into the real app (headless) until the last epoch row is shown. Target < 1 s.
2. key latency: while a writer appends batch events as fast as it can, tab keys are pressed and the
   time until the tab is shown is measured. Target < 100 ms.
3. memory: the reducer's state after 10 and after 100 epochs of 1,000 batches (tracemalloc), and the
   dashboard process's peak RSS growth; bounded histories keep the ratio near 1.
4. first frame: a fresh Python process importing the dashboard and drawing its first frame.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from carclf_core import config as config_mod  # noqa: E402
from carclf_core import events as ev  # noqa: E402
from carclf_core import runstate as rs  # noqa: E402
from carclf_core.eventlog import parse_lines  # noqa: E402
from carclf_tui.app import CarclfApp  # noqa: E402
from carclf_tui.follow import parse_chunk  # noqa: E402
from carclf_tui.sample_run import _Clock, make_run_dir, run_events, training_events, write_events  # noqa: E402

STAGES = ("index", "prefilter", "split", "train", "evaluate")


def bench_replay(root: Path) -> None:
    run = make_run_dir(root, "bench-replay")
    count = write_events(run, run_events(epochs=100, steps=1000))
    data = run.events_path.read_bytes()
    start = time.perf_counter()
    events, bad, _ = parse_lines(data)
    parsed = time.perf_counter()
    state = rs.fold(rs.new_state(STAGES), events, bad)
    folded = time.perf_counter()
    assert len(state.epoch_rows) == 100
    print(f"replay, every line parsed: {count:,} events ({len(data) / 1e6:.1f} MB): parse {parsed - start:.3f} s + "
          f"fold {folded - parsed:.3f} s = {folded - start:.3f} s  (target < 1 s: {(folded - start):.2f}x)")
    start = time.perf_counter()
    events, bad = parse_chunk(data)
    parsed = time.perf_counter()
    fast = rs.fold(rs.new_state(STAGES), events, bad)
    folded = time.perf_counter()
    # same epochs; the running epoch's curve is thinned (at most MAX_BATCH_LINES_PER_CHUNK a read) but
    # ends on the same newest batch
    assert fast.epoch_rows == state.epoch_rows and fast.batch.last_step == state.batch.last_step
    print(f"replay, the follower's path (dead batch lines skipped): parse {parsed - start:.3f} s + fold "
          f"{folded - parsed:.3f} s = {folded - start:.3f} s  (target < 1 s: {(folded - start):.2f}x)")

    async def into_app() -> float:
        app = CarclfApp(run, config_mod.Config(), stage_order=STAGES, poll_interval=0.02)
        async with app.run_test(size=(120, 36)) as pilot:
            t0 = time.perf_counter()
            while len(app.screen.state.epoch_rows) < 100 or app.screen.state.run_status != "done":
                await pilot.pause(0.005)
            await pilot.press("2")
            await pilot.pause()
            return time.perf_counter() - t0

    took = asyncio.run(into_app())
    print(f"replay into the app (read + parse + fold + first draw of the training tab): {took:.3f} s "
          f"(target < 1 s: {took:.2f}x)")


WRITER = """
import sys, time
from carclf_core import events as ev
from carclf_tui.sample_run import _Clock, training_events
path, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
events = training_events(_Clock(), epochs=10_000, steps=1000)
written, start = 0, time.perf_counter()
with open(path, "a", encoding="utf-8") as handle:
    while time.perf_counter() - start < seconds:
        lines = [ev.to_json(next(events)) for _ in range(200)]
        handle.write("\\n".join(lines) + "\\n")
        handle.flush()
        written += len(lines)
        ahead = written / rate - (time.perf_counter() - start)
        if ahead > 0:
            time.sleep(ahead)
print(written)
"""


def bench_key_latency(root: Path, rate: float = 20_000, seconds: float = 6.0) -> None:
    """Tab keys pressed while another process appends ``rate`` events a second to the followed log."""
    run = make_run_dir(root, f"bench-stream-{int(rate)}")
    write_events(run, [ev.RunStarted(run_dir=str(run.path), stages=("train",)), ev.StageStarted(stage="train")])

    async def press_keys() -> None:
        app = CarclfApp(run, config_mod.Config(), stage_order=STAGES)
        latencies = []
        async with app.run_test(size=(120, 36)) as pilot:
            await pilot.pause(0.3)
            writer = subprocess.Popen([sys.executable, "-c", WRITER, str(run.events_path), str(rate), str(seconds)],
                                      stdout=subprocess.PIPE, text=True)
            tabs = app.screen.query_one("#tabs")
            await pilot.pause(0.5)
            end = time.perf_counter() + seconds - 1.0
            names = {"1": "stages", "2": "training", "5": "log"}
            while time.perf_counter() < end:
                for key in ("2", "1", "5"):
                    # Not pilot.press: it also waits for the CPU to go idle, which a stream never lets happen.
                    t0 = time.perf_counter()
                    app.simulate_key(key)
                    while tabs.active != names[key]:
                        await asyncio.sleep(0.001)
                    await asyncio.sleep(0)  # let the switch's own refresh run once
                    latencies.append(time.perf_counter() - t0)
                    await asyncio.sleep(0.1)
            written = int(writer.communicate()[0].strip() or 0)
            await pilot.pause(0.5)
            folded = app.screen.state.revision
        print(f"key latency while streaming ({written / seconds:,.0f} events/s written by another process, "
              f"{folded:,} folded): median {1000 * statistics.median(latencies):.1f} ms, "
              f"max {1000 * max(latencies):.1f} ms over {len(latencies)} presses "
              f"(target < 100 ms: median {statistics.median(latencies) / 0.1:.2f}x)")

    asyncio.run(press_keys())


def _state_bytes(epochs: int, steps: int) -> tuple[int, rs.RunState]:
    tracemalloc.start()
    state = rs.new_state(STAGES)
    chunk: list[ev.Event] = []
    for event in training_events(_Clock(), epochs=epochs, steps=steps):
        chunk.append(event)
        if len(chunk) == 2000:
            state = rs.fold(state, chunk)
            chunk = []
    state = rs.fold(state, chunk)
    chunk = []
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return size, state


def bench_memory() -> None:
    small, _ = _state_bytes(100, 100)
    large, state = _state_bytes(100, 1000)
    print(f"memory: state after 100 epochs x 100 batches {small / 1e3:,.0f} kB, x 1,000 batches "
          f"{large / 1e3:,.0f} kB (ratio {large / small:.2f} for 10x the batch events; batch points kept: "
          f"{len(state.batch.steps)})")
    logs = rs.fold(rs.new_state(), (ev.LogLine(level="warning", message=f"rejected {i}") for i in range(50_000)))
    print(f"memory: log lines kept after 50,000 warnings: {len(logs.log):,} (bound {rs.LOG_LINES:,})")


def bench_first_frame(root: Path) -> None:
    script = (
        "import asyncio, sys, time\nfrom pathlib import Path\n"
        "t0 = time.perf_counter()\n"
        "from carclf_core import config as config_mod\n"
        "from carclf_core.runs import RunDir\n"
        "from carclf_tui.app import CarclfApp\n"
        "async def main():\n"
        "    app = CarclfApp(RunDir(Path(sys.argv[1])), config_mod.Config())\n"
        "    async with app.run_test(size=(100, 30)) as pilot:\n"
        "        await pilot.pause()\n"
        "        print(time.perf_counter() - t0, 'tensorflow' in sys.modules)\n"
        "asyncio.run(main())\n")
    run = make_run_dir(root, "bench-first")
    write_events(run, run_events(epochs=12, steps=40))
    times = []
    for _ in range(3):
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", script, str(run.path)], capture_output=True, text=True,
                             check=True).stdout.split()
        total = time.perf_counter() - start
        times.append((float(out[0]), total, out[1]))
    best = min(times)
    print(f"first frame: {best[0]:.3f} s after the first import ({best[1]:.3f} s including interpreter start), "
          f"tensorflow imported: {best[2]}  (target well under 1 s)")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bench_first_frame(root)
        bench_replay(root)
        bench_memory()
        bench_key_latency(root, rate=2_000)
        bench_key_latency(root, rate=20_000)



if __name__ == "__main__":
    main()
