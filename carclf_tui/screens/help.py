"""The help screen (``?``): every key of the dashboard with what it does, grouped by where it works."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from .confirm import dialog_css


def keys_table(sections: list[tuple[str, list[tuple[str, str]]]]) -> Table:
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("key", no_wrap=True)
    table.add_column("does")
    for index, (title, keys) in enumerate(sections):
        if index:
            table.add_row("", "")
        table.add_row("", Text(title, style="bold"))
        for key, description in keys:
            table.add_row(key, description)
    return table


def describe(binding: Binding) -> tuple[str, str]:
    keys = binding.key_display or " / ".join(k.strip() for k in binding.key.split(","))
    return keys, binding.description or binding.action


class HelpScreen(ModalScreen):
    """Lists the bindings of the app, the main screen and each pane (the same objects the footer shows).

    ``sections`` pairs a title (where the keys work) with its bindings.
    """

    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close help")]
    DEFAULT_CSS = dialog_css("HelpScreen", width=72, border="$accent", box="VerticalScroll")

    def __init__(self, sections: list[tuple[str, list[Binding]]]) -> None:
        super().__init__()
        self.sections = [(title, [describe(b) for b in bindings]) for title, bindings in sections]
        self.bindings = [key for _, keys in self.sections for key in keys]
        """Every (key, description) pair listed."""

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static("carclf dashboard keys  (escape or ? closes)\n", classes="title")
            yield Static(keys_table(self.sections))
            yield Static(
                "\nStages run in a child process (its own session) that writes the run's events.jsonl; "
                "quitting can leave it running, and `carclf-tui --attach RUN` shows the whole history later. "
                "Up/down select a stage in the Stages tab.")
