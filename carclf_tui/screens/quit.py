"""The question asked when quitting while a stage runs: stop it, leave it running, or stay."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class QuitScreen(ModalScreen[str]):
    """Dismisses with ``stop``, ``leave`` or ``cancel``."""

    BINDINGS = [
        Binding("s", "choose('stop')", "Stop it and quit"),
        Binding("l", "choose('leave')", "Leave it running and quit"),
        Binding("escape,c", "choose('cancel')", "Cancel"),
    ]
    DEFAULT_CSS = """
    QuitScreen {
        align: center middle;
    }
    QuitScreen > Vertical {
        width: 64;
        max-width: 100%;
        height: auto;
        border: round $warning;
        padding: 0 1;
        background: $surface;
    }
    QuitScreen Horizontal {
        height: auto;
    }
    QuitScreen Button {
        margin: 1 1 0 0;
    }
    """

    def __init__(self, stage: str) -> None:
        super().__init__()
        self.stage = stage

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"{self.stage} is running.\n\n"
                         "[b]s[/b]: stop it (it keeps what it finished) and quit\n"
                         "[b]l[/b]: leave it running and quit (attach later with --attach)\n"
                         "[b]escape[/b]: stay")
            with Horizontal():
                yield Button("Stop and quit", id="stop", variant="error")
                yield Button("Leave running", id="leave", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id)

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)
