"""Questions asked before a key changes a run: a yes/no confirmation and the new run's name.

Both are modal and build their text as :class:`rich.text.Text`, never markup, so a run or stage name
that looks like markup is shown as it is.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from carclf_core.config import folder_name


def dialog_css(name: str, width: int = 70, border: str = "$warning", box: str = "Vertical") -> str:
    """The dialogs' shared look: a bordered ``box`` of ``width`` columns in the middle of the screen.

    Args:
        name: the screen's class name (the CSS type selector).
        width: columns of the box (less on a narrower terminal).
        border: the border's colour variable (``$warning`` for a question, ``$accent`` to read).
        box: the type of the screen's one child that holds the content.
    """
    return f"""
    {name} {{
        align: center middle;
    }}
    {name} > {box} {{
        width: {width};
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: round {border};
        padding: 0 1;
        background: $surface;
    }}
    {name} Horizontal {{
        height: auto;
    }}
    {name} Button {{
        margin: 1 1 0 0;
    }}
    """


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question; dismisses with True (``y``, or enter on the focused Yes) or False (``n``, escape).

    Args:
        question: one line, e.g. "train is done: run it again from scratch?".
        detail: what happens and what is kept, shown under the question.
        yes: the label of the button that goes ahead.
    """

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]
    DEFAULT_CSS = dialog_css("ConfirmScreen")

    def __init__(self, question: str, detail: str = "", yes: str = "Yes") -> None:
        super().__init__()
        self.question = question
        self.detail = detail
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical():
            text = Text(self.question, style="bold")
            if self.detail:
                text.append("\n\n" + self.detail, style="")
            text.append("\n\ny: yes   n or escape: no", style="dim")
            yield Static(text, id="question")
            with Horizontal():
                yield Button(self.yes, id="yes", variant="warning")
                yield Button("No", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class RunNameScreen(ModalScreen[str | None]):
    """Asks for a new run's name (``run.name``); dismisses with the name, or None on escape.

    The name is checked as the config checks ``run.name`` (it becomes part of a folder name); a bad one
    keeps the dialog open with the config's own message.

    Args:
        default: the name offered (the dashboard's ``run.name``).
        root: the folder the new run goes into, for the explanation.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = dialog_css("RunNameScreen") + """
    RunNameScreen #name-error {
        color: $error;
        height: auto;
    }
    """

    def __init__(self, default: str, root: str) -> None:
        super().__init__()
        self.default = default
        self.root = root

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text.assemble(("Start a new run?", "bold"),
                                       f"\n\nA new folder under {self.root}/ named <timestamp>-<name>; this run "
                                       "stays as it is. Name (letters, digits, . _ -):"))
            yield Input(value=self.default, id="run-name", max_length=64)
            yield Static("", id="name-error")
            yield Static(Text("enter: start it   escape: cancel", style="dim"))

    @staticmethod
    def problem(name: str) -> str | None:
        """What is wrong with ``name`` as ``run.name`` (the config's own message), or None."""
        error = folder_name(name)
        return f"run.name: {error}" if error else None

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_one("#name-error", Static).update(Text(self.problem(event.value) or ""))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        error = self.problem(event.value)
        if error:
            self.query_one("#name-error", Static).update(Text(error))
            return
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)
