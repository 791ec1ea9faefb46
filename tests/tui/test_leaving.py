"""Leaving the dashboard: q, Ctrl+C and Ctrl+Q ask the same question while a stage runs; what is printed
on the way out; SIGTERM, SIGHUP, a hung-up terminal and a crash all give the terminal back.

The pilot tests drive the real app with a fake runner process. The real-terminal tests run the real
``carclf-tui`` in a tmux pane and read the pane's modes afterwards: ``alternate_on`` (still in the
alternate screen) and ``mouse_any_flag`` (mouse tracking still on) must both be back to 0.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from carclf_tui.app import Leaving, RunnerLeft, leaving_message, shell_quote
from carclf_tui.sample_run import make_run_dir, write_sample_run
from carclf_tui.screens.quit import QuitScreen

from .conftest import FAKE_RUNNER, WAIT_S, launch, make_app, wait_until

SUPERVISE = Path(__file__).with_name("supervise.py")


# --- the question, from every quitting key ---------------------------------------------------------


async def running(pilot, reap: list) -> None:
    """Start the first stage with the fake runner and wait until the dashboard shows it running."""
    screen = await launch(pilot, reap, "r")
    await wait_until(pilot, lambda: screen.state.stages["index"].status == "running")


@pytest.mark.parametrize("key", ["q", "ctrl+c", "ctrl+q"])
async def test_every_quit_key_asks_while_a_stage_runs(empty_run, reap, key) -> None:
    app = make_app(empty_run, mode="hang")
    async with app.run_test(size=(100, 30)) as pilot:
        await running(pilot, reap)
        screen = app.screen
        await pilot.press(key)
        await wait_until(pilot, lambda: isinstance(app.screen, QuitScreen))
        if key == "ctrl+c":  # pressed again while asking (a reflex): still asking; escape stays
            await pilot.press(key)
            assert isinstance(app.screen, QuitScreen) and app.is_running
            await pilot.press("escape")
            await wait_until(pilot, lambda: app.screen is screen)
            await pilot.press(key)
            await wait_until(pilot, lambda: isinstance(app.screen, QuitScreen))
        await pilot.press("l")  # leave it running
        await pilot.pause()
    assert app.return_code == 0
    pid = app.runner.process.pid
    assert app.leaving is not None
    assert app.leaving.running == (RunnerLeft(Path(empty_run.path).resolve(), "index", pid, app.runner.log_path),)
    assert app.runner.process.poll() is None, "left running"
    os.kill(pid, signal.SIGINT)
    assert app.runner.process.wait(timeout=WAIT_S) == 130


async def test_stop_and_quit_says_the_runner_was_asked_to_stop(empty_run, reap) -> None:
    app = make_app(empty_run, mode="hang")
    async with app.run_test(size=(100, 30)) as pilot:
        await running(pilot, reap)
        await pilot.press("ctrl+c")
        await wait_until(pilot, lambda: isinstance(app.screen, QuitScreen))
        await pilot.press("s")
    assert app.runner.process.wait(timeout=WAIT_S) == 130
    events = [json.loads(line)["kind"] for line in Path(empty_run.events_path).read_text().splitlines()]
    assert "stage_interrupted" in events  # it stopped at its next step, keeping what it finished
    assert app.leaving.running == () and [left.stage for left in app.leaving.stopping] == ["index"]
    assert "index: asked to stop (SIGINT to runner pid" in leaving_message(app.leaving)


@pytest.mark.parametrize("key", ["q", "ctrl+c", "ctrl+q"])
async def test_with_nothing_running_every_quit_key_quits_at_once(finished_run, key) -> None:
    app = make_app(finished_run)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.screen.state.run_status == "done")
        await pilot.press(key)
        await pilot.pause()
    assert not app.is_running and app.return_code == 0
    assert app.leaving == Leaving(Path(finished_run.path).resolve())


# --- what is printed on the way out ------------------------------------------------------------------


def test_the_leaving_message_names_the_run_the_runner_and_the_commands(tmp_path) -> None:
    run = tmp_path / "runs" / "20260101-120000-demo"
    other = tmp_path / "runs" / "20260101-090000-older"
    leaving = Leaving(run, running=(RunnerLeft(run, "train", 4242, run / "runner.log"),
                                    RunnerLeft(other, "prefilter", 4343, other / "runner.log")))
    assert leaving_message(leaving).splitlines() == [
        "carclf-tui: left run 20260101-120000-demo",
        f"  train is still running: runner pid 4242, output in {run}/runner.log",
        f"  prefilter is still running in run 20260101-090000-older: runner pid 4343, output in {other}/runner.log",
        f"  come back:  carclf-tui --attach {run}",
        f"  resume once it ends:  carclf-tui --resume {run}",
        f"  watch 20260101-090000-older:  carclf-tui --attach {other}",
    ]
    idle = leaving_message(Leaving(run, reason="SIGTERM")).splitlines()
    assert idle == ["carclf-tui: left run 20260101-120000-demo (SIGTERM)", "  nothing is running",
                    f"  come back:  carclf-tui --attach {run}", f"  resume:     carclf-tui --resume {run}"]


def test_a_hostile_run_path_is_quoted_for_the_shell_and_escaped_for_the_terminal(tmp_path) -> None:
    run = tmp_path / "it's a \x1b]0;pwned\x07 run"
    text = leaving_message(Leaving(run))
    assert "\x1b" not in text and "\x07" not in text
    quoted = shell_quote(run)
    assert quoted == "$'" + str(tmp_path) + "/it\\'s a \\x1b]0;pwned\\x07 run'"
    # bash reads the quoted word back as the very path
    assert subprocess.run(["bash", "-c", f"printf %s {quoted}"], capture_output=True).stdout == os.fsencode(run)
    assert shell_quote(tmp_path / "plain run") == shlex.quote(str(tmp_path / "plain run"))


# --- a real terminal ---------------------------------------------------------------------------------

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Terminal:
    """A 100x30 tmux pane running one command under ``supervise.py`` (its pid and exit status in files);
    the pane stays after the command ends, so its modes and text can be read."""

    def __init__(self, cwd: Path, command: list[str], forward_hangup: bool = True) -> None:
        # a short folder: the socket's path must fit in a sockaddr_un
        self.dir = Path(tempfile.mkdtemp(prefix="carclf-tmux-", dir="/tmp"))
        self.socket = self.dir / "s"
        self.rc_file, self.pid_file = self.dir / "rc", self.dir / "pid"
        conf = self.dir / "tmux.conf"
        conf.write_text("set -g remain-on-exit on\n")
        supervised = [sys.executable, str(SUPERVISE), *([] if forward_hangup else ["--no-forward"]),
                      str(self.rc_file), str(self.pid_file), *command]
        self.tmux("-f", str(conf), "new-session", "-d", "-x", "100", "-y", "30", "-c", str(cwd),
                  shlex.join(supervised))

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", str(self.socket), *args], capture_output=True, text=True,
                              timeout=60).stdout

    def modes(self) -> str:
        """``"<alternate screen on> <mouse tracking on>"``, e.g. ``"1 1"`` while the dashboard shows."""
        return self.tmux("display", "-p", "#{alternate_on} #{mouse_any_flag}").strip()

    def text(self) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-S", "-200")

    def wait(self, predicate: Callable[[], bool], timeout: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; the pane shows:\n{self.text()}")
            time.sleep(0.1)

    def dashboard_up(self, shows: str = "carclf") -> None:
        self.wait(lambda: self.modes() == "1 1" and shows in self.text())

    @property
    def pid(self) -> int:
        self.wait(lambda: self.pid_file.exists() and self.pid_file.read_text() != "")
        return int(self.pid_file.read_text())

    def exit_code(self) -> int:
        self.wait(lambda: self.rc_file.exists() and self.rc_file.read_text() != "")
        return int(self.rc_file.read_text())

    def close(self) -> None:
        if self.pid_file.exists():
            try:
                os.kill(self.pid, signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        self.tmux("kill-server")
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def terminal():
    opened: list[Terminal] = []

    def open_terminal(cwd: Path, command: list[str], forward_hangup: bool = True) -> Terminal:
        opened.append(Terminal(cwd, command, forward_hangup))
        return opened[-1]

    yield open_terminal
    for term in opened:
        term.close()


def dashboard(*args: str) -> list[str]:
    return [sys.executable, "-m", "carclf_tui.cli", *args]


@needs_tmux
def test_sigterm_restores_the_terminal_and_leaves_the_runner_running(tmp_path, terminal, reap) -> None:
    run = make_run_dir(tmp_path / "runs", "20260101-130000-left")
    path = Path(run.path).resolve()
    runner = subprocess.Popen([sys.executable, str(FAKE_RUNNER), "--mode", "hang", str(path), "index"],
                              stdout=subprocess.DEVNULL, start_new_session=True)
    reap.append(runner.pid)
    deadline = time.monotonic() + WAIT_S
    while not run.is_locked():
        assert time.monotonic() < deadline, "the runner never took the run's lock"
        time.sleep(0.05)
    term = terminal(tmp_path, dashboard("--attach", str(path)))
    term.dashboard_up(shows="▶ index")
    os.kill(term.pid, signal.SIGTERM)
    assert term.exit_code() == 143
    assert term.modes() == "0 0", "back to the normal screen, mouse tracking off"
    shown = term.text()
    assert "carclf-tui: left run 20260101-130000-left (SIGTERM)" in shown
    assert f"index is still running: runner pid {runner.pid}" in shown
    assert f"carclf-tui --attach {path}" in shown and f"carclf-tui --resume {path}" in shown
    assert runner.poll() is None, "the runner outlives the dashboard"
    runner.send_signal(signal.SIGINT)
    assert runner.wait(timeout=WAIT_S) == 130


@needs_tmux
def test_sighup_restores_the_terminal(tmp_path, terminal) -> None:
    run = write_sample_run(tmp_path / "runs")
    term = terminal(tmp_path, dashboard("--attach", str(run.path)))
    term.dashboard_up()
    os.kill(term.pid, signal.SIGHUP)
    assert term.exit_code() == 129
    assert term.modes() == "0 0"
    assert "carclf-tui: left run 20260101-120000-demo (SIGHUP)" in term.text()


@needs_tmux
@pytest.mark.parametrize("forward_hangup", [True, False], ids=["shell-passes-sighup", "no-sighup"])
def test_a_hung_up_terminal_ends_the_dashboard(tmp_path, terminal, forward_hangup) -> None:
    """The terminal goes away (an SSH connection drops): the dashboard exits 129 within seconds, whether
    the shell passes the SIGHUP on or the dashboard only finds its terminal gone (it would otherwise
    spin on end-of-file)."""
    run = write_sample_run(tmp_path / "runs")
    term = terminal(tmp_path, dashboard("--attach", str(run.path)), forward_hangup=forward_hangup)
    term.dashboard_up()
    pid = term.pid
    term.tmux("kill-server")  # closes the pane's terminal under the running dashboard
    term.wait(lambda: term.rc_file.exists() and term.rc_file.read_text() != "")
    assert int(term.rc_file.read_text()) == 129
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


CRASH = textwrap.dedent("""
    import sys
    from pathlib import Path
    from carclf_tui import app as app_mod
    from carclf_tui.cli import main

    class Crashing(app_mod.CarclfApp):
        CSS_PATH = str(Path(app_mod.__file__).with_name("app.tcss"))  # relative paths follow the class

        def on_ready(self):
            self.set_timer(1.5, self.crash)

        def crash(self):
            raise RuntimeError("simulated dashboard crash")

    app_mod.CarclfApp = Crashing
    sys.exit(main(sys.argv[1:]))
""")


@needs_tmux
def test_a_crash_exits_non_zero_and_restores_the_terminal(tmp_path, terminal) -> None:
    run = write_sample_run(tmp_path / "runs")
    script = tmp_path / "crashing_dashboard.py"  # a file: the crash report shows its source lines
    script.write_text(CRASH)
    term = terminal(tmp_path, [sys.executable, str(script), "--attach", str(run.path)])
    term.dashboard_up()
    assert term.exit_code() == 1
    assert term.modes() == "0 0"
    shown = term.text()
    assert "RuntimeError: simulated dashboard crash" in shown
    assert "carclf-tui: left run 20260101-120000-demo (crashed)" in shown


@needs_tmux
def test_with_several_runs_and_none_named_the_picker_opens_first(tmp_path, terminal) -> None:
    write_sample_run(tmp_path / "runs", "20260101-110000-first")
    write_sample_run(tmp_path / "runs", "20260101-120000-second")
    term = terminal(tmp_path, dashboard())  # run.root is runs/ under the working folder
    term.dashboard_up(shows="Open a run")
    assert "20260101-110000-first" in term.text() and "20260101-120000-second" in term.text()
    term.tmux("send-keys", "Escape")
    term.wait(lambda: "Open a run" not in term.text())
    term.tmux("send-keys", "q")
    assert term.exit_code() == 0
    assert term.modes() == "0 0"
    shown = term.text()
    assert "carclf-tui: left run 20260101-120000-second" in shown and "nothing is running" in shown
