"""The help screen (``?``): every key of the dashboard with what it does."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


def keys_table(bindings: list[tuple[str, str]]) -> Table:
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("key", no_wrap=True)
    table.add_column("does")
    for key, description in bindings:
        table.add_row(key, description)
    return table


def describe(binding: Binding) -> tuple[str, str]:
    keys = binding.key_display or " / ".join(k.strip() for k in binding.key.split(","))
    return keys, binding.description or binding.action


class HelpScreen(ModalScreen):
    """Lists the main screen's and the app's bindings (the same objects the footer shows)."""

    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close help")]
    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
    }
    HelpScreen > VerticalScroll {
        width: 72;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: round $accent;
        padding: 0 1;
        background: $surface;
    }
    """

    def __init__(self, bindings: list[Binding]) -> None:
        super().__init__()
        self.bindings = [describe(b) for b in bindings]

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static("carclf dashboard keys  (escape or ? closes)\n", classes="title")
            yield Static(keys_table(self.bindings))
            yield Static(
                "\nStages run in a child process (its own session) that writes the run's events.jsonl; "
                "quitting can leave it running, and `carclf-tui --attach RUN` shows the whole history later. "
                "Up/down select a stage in the Stages tab.")
