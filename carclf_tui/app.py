"""The Textual dashboard: the app shell. Screens and widgets do the drawing; this file wires a run,
its runner and the keys that work everywhere (help, quit).

Importing this module imports Textual but never TensorFlow (a test checks ``sys.modules``): stages run
in a child process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from textual.app import App
from textual.binding import Binding

from carclf_core.config import Config
from carclf_core.registry import STAGE_NAMES
from carclf_core.runs import RunDir, create_run

from .follow import POLL_INTERVAL_S
from .runner import Runner, RunnerCommand, default_command


def registered_stages() -> tuple[str, ...]:
    """The stage names the runner knows (the registry is cheap to import: no pandas, no Keras)."""
    return STAGE_NAMES


class CarclfApp(App):
    """The dashboard of one run (``n`` switches to a new run)."""

    CSS_PATH = "app.tcss"
    TITLE = "carclf"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("question_mark", "help", "Help", key_display="?", id="help"),
        Binding("q", "quit_dashboard", "Quit", id="quit"),
    ]

    def __init__(self, run: RunDir, config: Config, *, runner_command: RunnerCommand = default_command,
                 clock: Callable[[], float] = time.time, stage_order: Sequence[str] | None = None,
                 poll_interval: float = POLL_INTERVAL_S) -> None:
        """Args:
            run: the run to show (and to run stages in).
            config: the dashboard's config, used for a new run (``n``) and as the threshold default.
            runner_command: builds the child's command line (tests put a fake runner here).
            clock: wall clock for running durations (frozen in snapshot tests).
            stage_order: the stages offered; default :func:`registered_stages`.
            poll_interval: seconds between reads of ``events.jsonl``.
        """
        super().__init__()
        self.config = config
        self.runner_command = runner_command
        self.clock = clock
        self.poll_interval = poll_interval
        self.stage_order = tuple(stage_order) if stage_order is not None else registered_stages()
        self.run_dir = run
        self.runner = Runner(run, runner_command)

    def on_mount(self) -> None:
        from .screens.main import MainScreen

        self.push_screen(MainScreen())

    def new_run(self) -> None:
        """Create a fresh run directory with the dashboard's config and show it."""
        from .screens.main import MainScreen

        self.run_dir = create_run(self.config)
        self.runner = Runner(self.run_dir, self.runner_command)
        self.switch_screen(MainScreen())
        self.notify(f"new run {self.run_dir.name}")

    def action_help(self) -> None:
        from .screens.help import HelpScreen
        from .screens.main import MainScreen

        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(MainScreen.key_sections(self.BINDINGS)))

    def action_quit_dashboard(self) -> None:
        """Quit; while a stage runs, first ask whether to stop it or leave it running."""
        from .screens.quit import QuitScreen

        if not self.runner.is_busy():
            self.exit(0)
            return
        stage = getattr(self.screen, "state", None)
        name = stage.running_stage() if stage is not None else None

        def chosen(choice: str | None) -> None:
            if choice == "stop":
                self.runner.stop()  # it finishes the batch and keeps its work, without us
                self.exit(0)
            elif choice == "leave":
                self.exit(0)

        self.push_screen(QuitScreen(name or "a stage"), chosen)


def run_app(config: Config, run: RunDir | None) -> int:
    """Open the dashboard on ``run`` (a new run when None); returns the exit code.

    Args:
        config: the resolved config (demo values included for ``--demo``).
        run: the run to show; None creates a new one (first launch).
    """
    if run is None:
        run = create_run(config)
    app = CarclfApp(run, config)
    result = app.run()
    return int(result or 0) if isinstance(result, int) else 0
