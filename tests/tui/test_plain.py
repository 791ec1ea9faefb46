"""Following a run in plain text: ``carclf-tui --attach RUN --plain`` prints the run's events through the
console renderer while a runner works on it and ends with it; under ``TERM=dumb`` the dashboard says so
and does the same instead of drawing a screen."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time

from carclf_tui import cli

from .conftest import FAKE_RUNNER


def read_until(process: subprocess.Popen, marker: str, timeout: float = 60.0) -> str:
    """What ``process`` printed up to a line holding ``marker`` (fails after ``timeout`` seconds)."""
    seen = ""
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while marker not in seen:
        assert time.monotonic() < deadline, f"no {marker!r} in:\n{seen}"
        if selector.select(timeout=1.0):
            line = process.stdout.readline()
            assert line or process.poll() is None, f"ended before {marker!r}:\n{seen}"
            seen += line
    return seen


def test_attach_plain_follows_a_running_run_until_it_ends(empty_run, reap) -> None:
    runner = subprocess.Popen([sys.executable, str(FAKE_RUNNER), "--mode", "hang", str(empty_run.path), "index"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reap.append(runner.pid)
    deadline = time.monotonic() + 60
    while b"stage_progress" not in (empty_run.events_path.read_bytes() if empty_run.events_path.exists() else b""):
        assert time.monotonic() < deadline, "the fake runner wrote no progress"
        time.sleep(0.05)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    follower = subprocess.Popen([sys.executable, "-m", "carclf_tui.cli", "--attach", str(empty_run.path), "--plain"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    reap.append(follower.pid)
    seen = read_until(follower, "[index] started")
    assert seen.startswith(f"following {empty_run.path} in plain text")
    assert follower.poll() is None  # still following: the runner works
    runner.send_signal(signal.SIGINT)  # the stage stops, the runner ends
    rest, _ = follower.communicate(timeout=60)
    assert "[index] interrupted (SIGINT); finished work is kept" in rest
    assert "\x1b" not in seen + rest  # plain lines: no escape sequences, no screen
    assert follower.returncode == 130 and runner.wait(timeout=30) == 130


def test_term_dumb_follows_in_plain_text_instead_of_drawing(finished_run, monkeypatch, capsys) -> None:
    monkeypatch.setenv("TERM", "dumb")
    assert cli.main(["--attach", str(finished_run.path)]) == 0  # a finished run: its history, then done
    out, err = capsys.readouterr()
    assert "TERM=dumb: this terminal cannot draw the dashboard; following the run in plain text" in err
    assert "[train] done in" in out and "[evaluate] done in" in out and "epoch 12/12" in out
    assert "\x1b" not in out


def test_a_runner_gone_without_a_last_word_ends_the_following_with_1(empty_run) -> None:
    import io

    from carclf_tui.follow import follow_plain

    crashed = subprocess.run([sys.executable, str(FAKE_RUNNER), "--mode", "crash", str(empty_run.path), "index"],
                             capture_output=True, timeout=60)
    assert crashed.returncode == 3  # StageStarted written, then gone: no StageFailed, no RunFinished
    out = io.StringIO()
    assert follow_plain(empty_run, out) == 1
    lines = out.getvalue().splitlines()
    assert "[index] started" in lines
    assert lines[-1] == f"[index] the runner is gone without a last word (see {empty_run.path / 'runner.log'})"
