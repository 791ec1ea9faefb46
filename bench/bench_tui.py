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
5. terminal: ``carclf-tui --attach`` in a real pseudo-terminal on a live run written at the real
   trainer's rate (4 batch events a second, an epoch every 10 s): the bytes it sends to the terminal a
   second and its CPU share per tab (targets: under 3 KB/s on the training tab at 80x24, under 10 % of a
   core on any tab), the first frame from process start (target < 0.5 s), and a tab key's latency as
   the terminal sees it (target < 100 ms). ``--baseline DIR`` measures another source tree the same
   way first and prints the ratios.
6. first frame (printed first with ``--terminal``): ``carclf-tui --attach`` on a finished run in a real
   80x24 pty, this tree and the baseline taking turns, five starts each: wall and CPU time from process
   start to the tab bar; and where they go, from five more starts marked along the way in the same pty
   (interpreter, carclf's CLI imports, Textual's, the dashboard's set-up with the picture probe joined,
   the first frame's compose, styles and drawing). The dashboard starts as an installed one would: its
   bytecode compiled once and kept (outside the source tree). ``--quick``: the first frame, then the
   training tab at 80x24 and 200x60 only, about three minutes with a baseline.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
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
REPO = Path(__file__).resolve().parents[1]


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


def first_frame(run_path: Path, size: tuple[int, int] = (100, 30), repeats: int = 3) -> tuple[float, float, bool]:
    """The dashboard's first frame on ``run_path`` in fresh processes, best of ``repeats``: (seconds from
    the first import to the first frame, seconds including the interpreter's start, whether TensorFlow
    was imported)."""
    script = (
        "import asyncio, sys, time\nfrom pathlib import Path\n"
        "t0 = time.perf_counter()\n"
        "from carclf_core import config as config_mod\n"
        "from carclf_core.runs import RunDir\n"
        "from carclf_tui.app import CarclfApp\n"
        "async def main():\n"
        "    app = CarclfApp(RunDir(Path(sys.argv[1])), config_mod.Config())\n"
        "    async with app.run_test(size=(int(sys.argv[2]), int(sys.argv[3]))) as pilot:\n"
        "        await pilot.pause()\n"
        "        print(time.perf_counter() - t0, 'tensorflow' in sys.modules)\n"
        "asyncio.run(main())\n")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", script, str(run_path), *map(str, size)], capture_output=True,
                             text=True, check=True).stdout.split()
        total = time.perf_counter() - start
        times.append((float(out[0]), total, out[1] == "True"))
    return min(times)


def bench_first_frame(root: Path) -> None:
    run = make_run_dir(root, "bench-first")
    write_events(run, run_events(epochs=12, steps=40))
    best = first_frame(run.path)
    print(f"first frame: {best[0]:.3f} s after the first import ({best[1]:.3f} s including interpreter start), "
          f"tensorflow imported: {best[2]}  (target well under 1 s)")


LIVE_WRITER = """
import os, sys, time
from pathlib import Path
from carclf_core import events as ev
from carclf_core.eventlog import JsonlSink
from carclf_core.runs import RunDir
run, seconds = RunDir(Path(sys.argv[1])), float(sys.argv[2])
steps, per_event, epoch_s = 200, 5, 10.0  # 4 batch events a second, as train.batch_events_per_second
epochs = 100
with run.lock():
    sink = JsonlSink(run.events_path)
    sink(ev.RunStarted(run_dir=str(run.path), stages=("train",), pid=os.getpid()))
    sink(ev.LogLine(level="info", message="bench-log-marker: a live run streams", stage="train"))
    sink(ev.StageStarted(stage="train", total=epochs))
    sink.flush()
    start = time.time()
    epoch = 0
    best = None
    while time.time() - start < seconds:
        epoch += 1
        t0 = time.time()
        sink(ev.EpochStarted(epoch=epoch, epochs=epochs, steps=steps))
        sink.flush()
        for step in range(per_event, steps + 1, per_event):
            time.sleep(epoch_s / (steps / per_event))
            loss = 2.0 / (1 + epoch + step / steps)
            sink(ev.BatchEnded(epoch=epoch, step=step, steps=steps, loss=loss, accuracy=1 - loss / 2.2,
                               images_per_s=32 * step / (time.time() - t0), eta_s=(steps - step) * 0.05))
            sink.flush()
        loss = 2.0 / (1 + epoch)
        val = loss + 0.1
        best = val if best is None or val < best else best
        sink(ev.EpochEnded(epoch=epoch, epochs=epochs, learning_rate=1e-4, duration_s=time.time() - t0,
                           images_per_s=640.0, eta_s=(epochs - epoch) * epoch_s,
                           metrics={"loss": loss, "categorical_accuracy": 1 - loss / 2.2, "top5": 0.99,
                                    "val_loss": val, "val_categorical_accuracy": 1 - val / 2.2, "val_top5": 0.98}))
        sink(ev.PatienceChanged(epoch=epoch, wait=0, patience=12, best=best, best_epoch=epoch, monitor="val_loss"))
        # the newest log line, so the log tab's answer to a key is always in view
        sink(ev.LogLine(level="info", message=f"bench-log-marker: epoch {epoch} done", stage="train"))
        classes = tuple(f"class {i}" for i in range(8))
        sink(ev.ConfusionReady(epoch=epoch, classes=classes, split="val", sample=64,
                               matrix=tuple(tuple(8 if i == j else 0 for j in range(8)) for i in range(8))))
        sink.flush()
    sink(ev.StageInterrupted(stage="train", reason="SIGINT"))
    sink(ev.RunFinished(status="interrupted"))
    sink.close()
"""


def installed_env(pycache: Path | None) -> dict[str, str]:
    """This process's environment for a dashboard started as an installed one would be: its bytecode
    compiled once and kept under ``pycache`` (never in the source tree), where this machine sets
    PYTHONDONTWRITEBYTECODE and every start would compile carclf's sources again; None: as it is."""
    import os

    env = dict(os.environ)
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


class Terminal:
    """The dashboard in a real pseudo-terminal: every byte it writes is read from the master side and
    counted with its arrival time, as a terminal (or sshd) would receive it."""

    def __init__(self, run_path: Path, size: tuple[int, int], no_color: bool = True, source: Path = REPO,
                 link_bytes_per_s: float | None = None, pycache: Path | None = None, script: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        import fcntl
        import os
        import struct
        import termios
        import threading

        self.master, slave = os.openpty()
        columns, rows = size
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        env = {**installed_env(pycache), **(env or {}), "TERM": "xterm", "COLUMNS": str(columns), "LINES": str(rows)}
        if no_color:
            env["NO_COLOR"] = "1"
        self.started = time.perf_counter()
        # run from ``source`` (python -m and -c put the working directory first on the path), so a baseline
        # tree (an older commit, exported) is measured the same way; ``script``: run by ``python -c`` instead
        command = ["-c", script] if script is not None else ["-m", "carclf_tui.cli"]
        self.process = subprocess.Popen([sys.executable, *command, "--attach", str(run_path)],
                                        stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
                                        cwd=source)
        os.close(slave)
        self.chunks: list[tuple[float, bytes]] = []
        self.link_bytes_per_s = link_bytes_per_s
        """Read no faster than this, as a slow SSH link would (the app's writes block once the pty's
        buffer is full); None reads as fast as the app writes."""
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        import os

        link = self.link_bytes_per_s
        while True:
            try:
                data = os.read(self.master, 512 if link else 65536)
            except OSError:
                return
            if not data:
                return
            with self._lock:
                self.chunks.append((time.perf_counter(), data))
            if link:
                time.sleep(len(data) / link)

    def output(self, since: float = 0.0) -> bytes:
        with self._lock:
            return b"".join(data for t, data in self.chunks if t >= since)

    def wait_for(self, text: bytes, since: float, timeout: float = 10.0) -> float:
        """Seconds from ``since`` until ``text`` arrived (in output after ``since``); inf on timeout."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            with self._lock:
                seen = b""
                for t, data in self.chunks:
                    if t < since:
                        continue
                    seen += data
                    if text in seen:
                        return t - since
            time.sleep(0.002)
        return float("inf")

    def press(self, key: str) -> float:
        import os

        now = time.perf_counter()
        os.write(self.master, key.encode())
        return now

    def cpu_seconds(self) -> float:
        import psutil

        times = psutil.Process(self.process.pid).cpu_times()
        return times.user + times.system

    def close(self) -> None:
        import os

        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self.master)


def bench_terminal(root: Path, size: tuple[int, int] = (80, 24), tabs: str = "2", seconds: float = 20.0,
                   no_color: bool = True, source: Path = REPO) -> dict[str, float]:
    """The dashboard attached to a live run streaming at the real trainer's rate, in a real pty.

    A writer process holds the run's lock and writes what a training runner writes: 4 batch events a
    second and an epoch's events every 10 s. For each tab in ``tabs`` (number keys), the bytes the app
    writes to the terminal and its CPU time are counted over ``seconds``; a key's latency is the time
    from writing it to the pty until the tab's own text arrives. Before that, the first frame: seconds
    from starting the process until the tab bar has been drawn.
    """
    run = make_run_dir(root, f"bench-terminal-{size[0]}x{size[1]}-{tabs}-{time.time_ns()}")
    total = 8.0 + len(tabs) * (seconds + 4.0)
    writer = subprocess.Popen([sys.executable, "-c", LIVE_WRITER, str(run.path), str(total)])
    time.sleep(1.0)  # the run is live before the dashboard opens, as when attaching to a training run
    terminal = Terminal(run.path, size, no_color, source, pycache=root / "pycache")
    figures: dict[str, float] = {}
    try:
        figures["first_frame_s"] = terminal.wait_for(b"Training", terminal.started, timeout=30)
        # its CPU time so far: what the first frame costs, about its wall time on an idle machine
        figures["first_frame_cpu_s"] = terminal.cpu_seconds()
        time.sleep(3.0)  # the replay and the follower settle
        # text only the tab shows (the tab bar names them all): a key's answer is its arrival
        marks = {"1": b"evaluate", "2": b"patience", "5": b"bench-log-marker", "6": b"batch_size"}
        latencies = []
        for tab in tabs:
            for key in ("5" if tab != "5" else "1", tab):
                pressed = terminal.press(key)
                if key in marks:
                    latencies.append(terminal.wait_for(marks[key], pressed))
                time.sleep(1.0)
            time.sleep(2.0)
            t0, cpu0 = time.perf_counter(), terminal.cpu_seconds()
            time.sleep(seconds)
            t1, cpu1 = time.perf_counter(), terminal.cpu_seconds()
            sent = len(terminal.output(t0)) - len(terminal.output(t1))
            figures[f"tab{tab}_bytes_per_s"] = sent / (t1 - t0)
            figures[f"tab{tab}_cpu_percent"] = 100.0 * (cpu1 - cpu0) / (t1 - t0)
        figures["key_latency_max_s"] = max(latencies)
        figures["key_latency_median_s"] = statistics.median(latencies)
    finally:
        terminal.close()
        writer.kill()
        writer.wait()
    return figures


TIMELINE = """
import importlib.util, json, os, sys, time
# Run as ``python -c TIMELINE --attach RUN`` in the pty: carclf-tui as its console script runs it, with
# marks (the monotonic clock the bench reads, and this process's CPU time) where the start moves on:
# carclf's CLI imported, Textual's app module, the app run (the picture probe joined), and the first
# write to the terminal that holds the tab bar. Modules are patched as they are imported, so the
# start's order and work are the dashboard's own.
marks = [("interpreter", time.perf_counter(), time.process_time())]

def mark(what):
    marks.append((what, time.perf_counter(), time.process_time()))

def patch_app(module):
    mark("textual")
    run = module.App.run
    def marked_run(self, *args, **kwargs):
        mark("dashboard")
        return run(self, *args, **kwargs)
    module.App.run = marked_run

def patch_driver(module):
    write = module.LinuxDriver.write
    def marked_write(self, data):
        if marks[-1][0] == "dashboard" and "Training" in data:
            mark("frame")
            heavy = sorted({m.split(".")[0] for m in sys.modules} & {"plotext", "PIL", "numpy", "textual_image",
                                                                     "psutil", "pynvml", "yaml", "pandas"})
            with open(os.environ["BENCH_MARKS"], "w") as out:
                json.dump({"marks": marks, "heavy": heavy}, out)
        return write(self, data)
    module.LinuxDriver.write = marked_write

PATCHES = {"carclf_tui.cli": lambda module: mark("carclf"), "textual.app": patch_app,
           "textual.drivers.linux_driver": patch_driver}

class Marker:
    def find_spec(self, name, path, target=None):
        if name not in PATCHES:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        exec_module = spec.loader.exec_module
        def marked_exec(module):
            exec_module(module)
            PATCHES[name](module)
        spec.loader.exec_module = marked_exec
        return spec

sys.meta_path.insert(0, Marker())
import carclf_tui.cli
carclf_tui.cli.entry_point()
"""
PHASES = (("interpreter", "interpreter"), ("carclf", "carclf's CLI imports"),
          ("textual", "the run opened and Textual's imports"),
          ("dashboard", "the dashboard's imports and set-up (probe joined)"),
          ("frame", "compose + styles + drawing to the tab bar"))


def first_frames(root: Path, sources: Sequence[Path], repeats: int = 5) -> dict[Path, dict]:
    """The first frame of ``carclf-tui --attach`` on a finished 12-epoch run in a real 80x24 pty, for each
    source tree in turn, ``repeats`` times (after one start each that compiles its bytecode): the median
    seconds from process start until the tab bar arrived and the median CPU seconds the process had used
    by then; and where they go, from ``repeats`` more starts marked along the way (:data:`TIMELINE`):
    for each phase, the median CPU seconds and the median wall seconds (more than the CPU where the
    process waits: the terminal's answers, or the other core's work)."""
    from carclf_tui.sample_run import write_sample_run

    run = write_sample_run(root / f"first-frame-{time.time_ns()}")
    pycache = root / "pycache"
    samples: dict[Path, list[tuple[float, float]]] = {source: [] for source in sources}
    phases: dict[Path, list[dict[str, tuple[float, float]]]] = {source: [] for source in sources}
    marks_path = root / "marks.json"
    for attempt in range(2 * repeats + 1):
        marked = attempt > repeats
        for source in sources:
            marks_path.unlink(missing_ok=True)
            terminal = Terminal(run.path, (80, 24), True, source, pycache=pycache,
                                script=TIMELINE if marked else None, env={"BENCH_MARKS": str(marks_path)})
            try:
                wall = terminal.wait_for(b"Training", terminal.started, timeout=30)
                cpu = terminal.cpu_seconds()
            finally:
                terminal.close()
            if marked:
                phases[source].append(_phases(json.loads(marks_path.read_text()), terminal.started))
            elif attempt:  # the first start compiled the bytecode
                samples[source].append((wall, cpu))
    out: dict[Path, dict] = {}
    for source in sources:
        out[source] = {"wall_s": statistics.median(w for w, _ in samples[source]),
                       "cpu_s": statistics.median(c for _, c in samples[source]),
                       "heavy": " ".join(phases[source][-1].pop("heavy")) or "none"}
        for name, _ in PHASES:
            out[source][name] = (statistics.median(p[name][0] for p in phases[source]),
                                 statistics.median(p[name][1] for p in phases[source]))
    return out


def _phases(marked: dict, started: float) -> dict:
    """Each phase's (CPU seconds, wall seconds) from a :data:`TIMELINE` start's marks; the interpreter's
    wall time counts from the process's start."""
    marks = {name: (wall, cpu) for name, wall, cpu in marked["marks"]}
    out: dict = {"heavy": marked["heavy"]}
    wall0, cpu0 = started, 0.0
    for name, _ in PHASES:
        wall, cpu = marks[name]
        out[name] = (cpu - cpu0, wall - wall0)
        wall0, cpu0 = wall, cpu
    return out


def report_first_frames(root: Path, baseline: Path | None, repeats: int = 5) -> None:
    sources = ([baseline] if baseline else []) + [REPO]
    figures = first_frames(root, sources, repeats)
    load = os.getloadavg()[0]
    for source in sources:
        f = figures[source]
        name = "baseline" if source != REPO else "this tree"
        ratio = "" if source != REPO or not baseline else (
            f" ({f['wall_s'] / figures[baseline]['wall_s']:.2f}x the baseline's wall time, "
            f"{f['cpu_s'] / figures[baseline]['cpu_s']:.2f}x its CPU time)")
        print(f"first frame, 80x24 pty, {name}: {f['wall_s']:.3f} s from process start, {f['cpu_s']:.3f} s of CPU "
              f"(medians of {repeats}; target < 0.5 s on 2 idle cores){ratio}; load average {load:.1f}")
        where = ", ".join(f"{label} {f[key][0]:.3f} s ({f[key][1]:.3f} s wall)" for key, label in PHASES)
        print(f"  where it goes (CPU, medians of {repeats} marked starts): {where}; loaded by the first frame "
              f"besides: {f['heavy']}")


def bench_slow_link(root: Path, link: float = 5 * 1024, seconds: float = 30.0, source: Path = REPO) -> float:
    """Seconds until the log tab shows after its key, on the training tab at 80x24 behind a link of
    ``link`` bytes a second, after ``seconds`` of a live run: a dashboard that sends more than the
    link carries falls further behind the longer it runs."""
    run = make_run_dir(root, f"bench-link-{time.time_ns()}")
    writer = subprocess.Popen([sys.executable, "-c", LIVE_WRITER, str(run.path), str(seconds + 40)])
    time.sleep(1.0)
    terminal = Terminal(run.path, (80, 24), True, source, link_bytes_per_s=link, pycache=root / "pycache")
    try:
        terminal.wait_for(b"Training", terminal.started, timeout=60)
        terminal.press("2")
        time.sleep(seconds)
        return terminal.wait_for(b"bench-log-marker", terminal.press("5"), timeout=60)
    finally:
        terminal.close()
        writer.kill()
        writer.wait()


def report_terminal(root: Path, baseline: Path | None = None,
                    cases: tuple = (((80, 24), "2", True), ((80, 24), "2", False), ((200, 60), "2", True),
                                    ((80, 24), "13456", True))) -> None:
    """Print :func:`bench_terminal`'s figures for each case ``(size, tabs, no_color)``; with ``baseline`` (a
    source tree, e.g. an older commit exported), that tree's figures measured just before, and the ratios."""
    for size, tabs, no_color in cases:
        colour = "NO_COLOR" if no_color else "colour, TERM=xterm"
        base = bench_terminal(root, size, tabs, no_color=no_color, source=baseline) if baseline else None
        f = bench_terminal(root, size, tabs, no_color=no_color)

        def vs(key: str, scale: float = 1.0, unit: str = "", f: dict = f, base: dict | None = base) -> str:
            text = f"{f[key] * scale:.2f}{unit}"
            if base is not None:
                text += f" (baseline {base[key] * scale:.2f}{unit}: {f[key] / max(base[key], 1e-9):.2f}x)"
            return text

        print(f"terminal {size[0]}x{size[1]} {colour}, a live run at the trainer's rate:")
        print(f"  first frame {vs('first_frame_s', unit=' s')} from process start (target < 0.5 s), "
              f"{vs('first_frame_cpu_s', unit=' s')} of CPU time")
        print(f"  key latency median {vs('key_latency_median_s', 1000, ' ms')}, max "
              f"{vs('key_latency_max_s', 1000, ' ms')} (target < 100 ms)")
        for tab in tabs:
            print(f"  tab {tab}: {vs(f'tab{tab}_bytes_per_s', 0.001, ' KB/s')} to the terminal "
                  f"(target < 3 KB/s on tab 2 at 80x24), CPU {vs(f'tab{tab}_cpu_percent', unit=' %')} of a core "
                  f"(target < 10 %)")


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--terminal", action="store_true", help="only the real-terminal benchmark (5)")
    parser.add_argument("--baseline", type=Path, help="a source tree to measure the same way first (5), e.g. "
                                                      "git archive COMMIT | tar -x -C DIR")
    parser.add_argument("--quick", action="store_true", help="with --terminal: the first frame, then the training "
                                                              "tab at 80x24 and 200x60 only (about 3 minutes with "
                                                              "a baseline), no slow link")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        report_first_frames(root, args.baseline)
        if args.quick:
            report_terminal(root, args.baseline, cases=(((80, 24), "2", True), ((200, 60), "2", True)))
            return
        report_terminal(root, args.baseline)
        for source in ([args.baseline] if args.baseline else []) + [REPO]:
            late = bench_slow_link(root, source=source)
            print(f"a 5 KiB/s link, 80x24, after 30 s of training: the log tab answers its key after {late:.1f} s "
                  f"({'baseline' if source != REPO else 'this tree'}; target < 0.1 s plus the link's own delay)")
        if args.terminal:
            return
        bench_first_frame(root)
        bench_replay(root)
        bench_memory()
        bench_key_latency(root, rate=2_000)
        bench_key_latency(root, rate=20_000)



if __name__ == "__main__":
    main()
