"""The question asked when quitting while a stage runs: stop it, leave it running, or stay."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from carclf_core.display import printable

from .confirm import dialog_css


class QuitScreen(ModalScreen[str]):
    """Dismisses with ``stop``, ``leave`` or ``cancel``."""

    BINDINGS = [
        Binding("s", "choose('stop')", "Stop it and quit"),
        Binding("l", "choose('leave')", "Leave it running and quit"),
        Binding("escape,c", "choose('cancel')", "Cancel"),
    ]
    DEFAULT_CSS = dialog_css("QuitScreen")

    def __init__(self, stage: str) -> None:
        super().__init__()
        self.stage = stage

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text.assemble(
                (f"{printable(self.stage)} is running.", "bold"), "\n\n",
                ("s", "bold"), ": stop it (it keeps what it finished) and quit\n",
                ("l", "bold"), ": leave it running and quit (the command to come back is printed)\n",
                ("escape", "bold"), ": stay"))
            with Horizontal():
                yield Button("Stop and quit", id="stop", variant="error")
                yield Button("Leave running", id="leave", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id)

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)
