"""The Textual dashboard: the app shell. Screens and widgets do the drawing; this file wires a run,
its runner and the keys that work everywhere (help, open a run, quit), and how the dashboard leaves.

Leaving always goes the same way, whatever asked for it (``q``, Ctrl+C, Ctrl+Q, SIGTERM, SIGHUP, a
crash): Textual restores the terminal, then :func:`run_app` prints the run, what is still running
(stage and runner pid) and the commands to come back. A runner keeps going unless asked to stop: it
runs in its own session.

Importing this module imports Textual but never TensorFlow (a test checks ``sys.modules``): stages run
in a child process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shlex
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from textual.app import App
from textual.binding import Binding

from carclf_core.config import Config
from carclf_core.display import printable
from carclf_core.errors import CarclfError
from carclf_core.registry import STAGE_NAMES
from carclf_core.runs import RunDir, create_run, list_runs

from .follow import POLL_INTERVAL_S
from .runner import Runner, RunnerCommand, default_command

EXIT_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
"""Signals that close the dashboard cleanly, terminal restored, with exit code 128 + the signal's number
(143, 129, 130); a runner it started keeps going."""


def registered_stages() -> tuple[str, ...]:
    """The stage names the runner knows (the registry is cheap to import: no pandas, no Keras)."""
    return STAGE_NAMES


@dataclasses.dataclass(frozen=True)
class RunnerLeft:
    """A runner still working when the dashboard left."""

    run: Path
    stage: str
    pid: int
    log: Path


@dataclasses.dataclass(frozen=True)
class Leaving:
    """What the dashboard leaves behind; :func:`leaving_message` tells it once the terminal is back."""

    run: Path
    """The run shown last (absolute)."""
    running: tuple[RunnerLeft, ...] = ()
    """Runners left working, the shown run's first."""
    stopping: tuple[RunnerLeft, ...] = ()
    """Runners asked to stop on the way out (they end at their next batch)."""
    reason: str = ""
    """Why it left when the user did not ask (``SIGTERM``, ``crashed``)."""


def shell_quote(word: object) -> str:
    """``word`` as one shell word to paste: ``shlex`` quoting, or bash's ``$'...'`` with escapes when it
    holds a character a terminal would act on or hide (so printing the command is safe too)."""
    text = str(word)
    if printable(text) == text:
        return shlex.quote(text)
    out = []
    for char in text:
        code = ord(char)
        if char in "\\'":
            out.append("\\" + char)
        elif 0xDC80 <= code <= 0xDCFF:  # an undecodable byte of the file name (os.fsdecode's surrogate)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif printable(char) == char:
            out.append(char)
        else:
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
    return "$'" + "".join(out) + "'"


def leaving_message(leaving: Leaving) -> str:
    """What the dashboard prints on its way out: the run, what still runs and how to come back."""
    run = shell_quote(leaving.run)
    head = f"carclf-tui: left run {printable(leaving.run.name)}"
    lines = [head + (f" ({leaving.reason})" if leaving.reason else "")]
    for left in leaving.stopping:
        lines.append(f"  {printable(left.stage)}: asked to stop (SIGINT to runner pid {left.pid}); it ends at its "
                     "next batch and keeps what it finished")
    for left in leaving.running:
        where = "" if left.run == leaving.run else f" in run {printable(left.run.name)}"
        lines.append(f"  {printable(left.stage)} is still running{where}: runner pid {left.pid}, "
                     f"output in {printable(left.log)}")
    if not leaving.running and not leaving.stopping:
        lines.append("  nothing is running")
    busy = any(left.run == leaving.run for left in leaving.running + leaving.stopping)
    lines.append(f"  come back:  carclf-tui --attach {run}")
    # --resume runs the unfinished and stale stages headless; it waits for no runner (it refuses)
    lines.append(f"  resume once it ends:  carclf-tui --resume {run}" if busy else
                 f"  resume:     carclf-tui --resume {run}")
    for left in leaving.running:
        if left.run != leaving.run:
            lines.append(f"  watch {printable(left.run.name)}:  carclf-tui --attach {shell_quote(left.run)}")
    return "\n".join(lines)


def _stage_running_on_disk(run: RunDir) -> str:
    """The stage ``state.json`` calls running (the real runner records it), or empty."""
    try:
        stages = run.read_state().get("stages", {})
    except CarclfError:  # a damaged state.json: the exit message still goes out, without the stage
        return ""
    if not isinstance(stages, dict):
        return ""
    return next((str(name) for name, entry in stages.items()
                 if isinstance(entry, dict) and entry.get("status") == "running"), "")


class CarclfApp(App):
    """The dashboard of one run (``n`` switches to a new run, ``o`` to another run)."""

    CSS_PATH = "app.tcss"
    TITLE = "carclf"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("question_mark", "help", "Help", key_display="?", id="help"),
        Binding("q", "quit_dashboard", "Quit", id="quit"),
        # Textual's own Ctrl+Q quits at once and its Ctrl+C only says how to quit: here both ask what q
        # asks while a stage runs. Priority, so a focused widget's Ctrl+C (copy) does not take it first.
        Binding("ctrl+q", "quit_dashboard", "Quit", show=False, priority=True, id="quit-ctrl-q"),
        Binding("ctrl+c", "quit_dashboard", "Quit", show=False, priority=True, id="quit-ctrl-c"),
    ]

    def __init__(self, run: RunDir, config: Config, *, runner_command: RunnerCommand = default_command,
                 clock: Callable[[], float] = time.time, stage_order: Sequence[str] | None = None,
                 poll_interval: float = POLL_INTERVAL_S, pick_run: bool = False) -> None:
        """Args:
            run: the run to show (and to run stages in).
            config: the dashboard's config, used for a new run (``n``) and as the threshold default.
            runner_command: builds the child's command line (tests put a fake runner here).
            clock: wall clock for running durations (frozen in snapshot tests).
            stage_order: the stages offered; default :func:`registered_stages`.
            poll_interval: seconds between reads of ``events.jsonl``.
            pick_run: open the run picker over ``run`` on start.
        """
        super().__init__()
        self.config = config
        self.runner_command = runner_command
        self.clock = clock
        self.poll_interval = poll_interval
        self.stage_order = tuple(stage_order) if stage_order is not None else registered_stages()
        self.pick_run = pick_run
        self._runners: dict[Path, Runner] = {}
        """One runner control a run shown, kept when another run is opened: a child started there
        keeps running and is still ours to report (and to stop) when we come back or leave."""
        self.leaving: Leaving | None = None
        """Set on the way out: what :func:`run_app` prints once the terminal is restored."""
        self.run_dir = run
        self.runner = self._runner_for(run)

    def _runner_for(self, run: RunDir) -> Runner:
        key = Path(run.path).resolve()
        if key not in self._runners:
            self._runners[key] = Runner(run, self.runner_command)
        return self._runners[key]

    def on_mount(self) -> None:
        from .screens.main import MainScreen

        if not self.is_headless:  # a real terminal to restore (tests run headless, in pytest's process)
            self._catch_exit_signals()
            if os.isatty(0):
                self.set_interval(1.0, self._check_terminal)
        self.push_screen(MainScreen())
        if self.pick_run:
            self.action_open_run()

    def _catch_exit_signals(self) -> None:
        # Without these a SIGTERM or SIGHUP killed the process on the spot, leaving the terminal in
        # the alternate screen with mouse tracking on; now they leave through Textual's own exit.
        loop = asyncio.get_running_loop()
        for signum in EXIT_SIGNALS:
            loop.add_signal_handler(signum, self._signalled, signum)

    def _signalled(self, signum: int) -> None:
        self.leave(128 + signum, reason=signal.Signals(signum).name)

    def _check_terminal(self) -> None:
        # A terminal that hung up without a SIGHUP reaching us (a shell that does not pass it on to
        # its jobs) reads as endless end-of-file, which Textual's input thread would spin on; the
        # hung-up descriptor is no longer a terminal (its ioctls fail), so leave as SIGHUP would.
        if self.leaving is None and not os.isatty(0):
            self.leave(128 + signal.SIGHUP, reason="the terminal hung up")

    # --- which run is shown ----------------------------------------------------------------------
    def attach(self, run: RunDir) -> None:
        """Show ``run``: a new main screen that follows its events (a runner elsewhere keeps going)."""
        from .screens.main import MainScreen

        self.run_dir = run
        self.runner = self._runner_for(run)
        if isinstance(self.screen, MainScreen):
            self.switch_screen(MainScreen())
        else:
            self.push_screen(MainScreen())

    def new_run_config(self) -> Config:
        """The configuration a new run (``n``) starts from: the shown run's (its data, classes, model,
        epochs, name), in the folder beside it.

        Raises:
            CarclfError, OSError: the shown run's ``config.yaml`` cannot be read or is not valid.
        """
        config = self.run_dir.load_config()
        root = str(Path(self.run_dir.path).resolve().parent)
        return dataclasses.replace(config, run=dataclasses.replace(config.run, root=root))

    def new_run(self, name: str | None = None, config: Config | None = None) -> None:
        """Create a fresh run directory with ``config`` (default: the dashboard's), named ``name``, and
        show it; a run that cannot be created is a message, and the shown run stays."""
        config = config or self.config
        if name is not None:
            config = dataclasses.replace(config, run=dataclasses.replace(config.run, name=name))
        try:
            run = create_run(config)
        except (CarclfError, OSError) as exc:
            self.notify(printable(f"no new run: {exc}"), severity="error", timeout=10, markup=False)
            return
        self.attach(run)
        self.notify(f"new run {printable(self.run_dir.name)}", markup=False)

    def action_open_run(self) -> None:
        """Open the run picker on the folder of the run shown; enter there shows the chosen run."""
        from .screens.picker import RunPicker

        if isinstance(self.screen, RunPicker):
            return
        shown = Path(self.run_dir.path).resolve()

        def chosen(run: RunDir | None) -> None:
            if run is None or Path(run.path).resolve() == shown:
                return
            for left in self._still_running():
                self.notify(f"{printable(left.stage)} keeps running in {printable(left.run.name)} "
                            f"(runner pid {left.pid})", markup=False)
            self.attach(run)

        self.push_screen(RunPicker(shown.parent, self.run_dir, clock=self.clock), chosen)

    def action_help(self) -> None:
        from .screens.help import HelpScreen
        from .screens.main import MainScreen

        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(MainScreen.key_sections(self.BINDINGS)))

    # --- leaving ---------------------------------------------------------------------------------
    def action_quit_dashboard(self) -> None:
        """Quit (q, Ctrl+C, Ctrl+Q); while a stage runs, first ask whether to stop it or leave it running."""
        from .screens.quit import QuitScreen

        if isinstance(self.screen, QuitScreen):
            return  # already asking
        if not self.runner.is_busy():
            self.leave(0)
            return

        def chosen(choice: str | None) -> None:
            if choice == "stop":
                self.leave(0, stop=True)  # it finishes the batch and keeps its work, without us
            elif choice == "leave":
                self.leave(0)

        self.push_screen(QuitScreen(self._shown_running_stage() or "a stage"), chosen)

    def leave(self, code: int, stop: bool = False, reason: str = "") -> None:
        """Exit with ``code``, noting what stays running (``stop``: ask the shown run's runner to stop)."""
        running = self._still_running()
        stopping: tuple[RunnerLeft, ...] = ()
        if stop and self.runner.stop():
            shown = Path(self.run_dir.path).resolve()
            stopping = tuple(left for left in running if left.run == shown)
            running = tuple(left for left in running if left.run != shown)
        self.leaving = Leaving(Path(self.run_dir.path).resolve(), running, stopping, reason)
        self.exit(return_code=code)

    def leaving_note(self, reason: str = "") -> Leaving:
        """What is left behind now (for an exit that did not go through :meth:`leave`: a crash)."""
        return Leaving(Path(self.run_dir.path).resolve(), self._still_running(), (), reason)

    def _shown_running_stage(self) -> str:
        from .screens.main import MainScreen

        for screen in reversed(self.screen_stack):
            if isinstance(screen, MainScreen):
                return screen.state.running_stage() or ""
        return ""

    def _still_running(self) -> tuple[RunnerLeft, ...]:
        """Runners working on the runs this dashboard showed: its own children, and a runner an
        earlier dashboard left on the shown run (found through the run's lock); the shown run's first."""
        shown = Path(self.run_dir.path).resolve()
        left = []
        for key, runner in sorted(self._runners.items(), key=lambda item: item[0] != shown):
            process = runner.process
            pid = process.pid if process is not None and runner.own_child_alive() else runner.lock_holder()
            if pid is None:
                continue
            stage = ((self._shown_running_stage() if key == shown else "") or _stage_running_on_disk(runner.run)
                     or ", ".join(runner.stages) or "a stage")
            left.append(RunnerLeft(key, stage, pid, runner.log_path))
        return tuple(left)


def run_app(config: Config, run: RunDir | None, pick: bool = False, probe: threading.Thread | None = None) -> int:
    """Open the dashboard on ``run`` (a new run when None); returns the exit code.

    Once Textual has restored the terminal, prints the run, what still runs and how to come back.

    Args:
        config: the resolved config (demo values included for ``--demo``).
        run: the run to show; None creates a new one (first launch).
        pick: no run was named: open the run picker too when the run's folder holds several runs.
        probe: the thread asking the terminal what it draws pictures with (:func:`carclf_tui.termprobe.start`),
            joined before Textual reads the keyboard, which would take the answers for keys.

    Returns:
        0 on a normal quit; 1 when the dashboard crashed (Textual printed the traceback); 143, 129 or
        130 after SIGTERM, SIGHUP or SIGINT.
    """
    from .screens import main  # noqa: F401  (the first frame needs it: imported while the probe may still wait)

    if run is None:
        run = create_run(config)
    several = pick and len(list_runs(Path(run.path).parent)) > 1
    app = CarclfApp(run, config, pick_run=several)
    if probe is not None:
        probe.join()
    app.run()
    # Textual sets the return code to 1 when an exception escaped (and prints it); never report 0 then.
    code = app.return_code or 0
    leaving = app.leaving or app.leaving_note(reason="crashed" if code else "")
    try:
        print(leaving_message(leaving), flush=True)
    except OSError:
        # The terminal hung up: nobody to tell, and the text still buffered must not fail the exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    return code
