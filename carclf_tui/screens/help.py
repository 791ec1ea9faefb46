"""The help screen (``?``): every key of the dashboard with what it does, grouped by where it works.

The keys come from the bindings themselves (the app's, the main screen's and each pane's, the same
objects the footer shows), so a new key shows here without an edit; the keys that move around (arrows,
Tab, page keys) belong to Textual's widgets and are listed by hand. Two columns from 76 cells wide, so
the whole list fits 80x24; narrower, one column that scrolls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from .confirm import dialog_css

KEY_NAMES = {
    "question_mark": "?", "plus": "+", "minus": "-", "equals_sign": "=", "left_square_bracket": "[",
    "right_square_bracket": "]", "escape": "Esc", "enter": "Enter", "backspace": "Backspace", "space": "Space",
    "tab": "Tab", "up": "↑", "down": "↓", "left": "←", "right": "→", "pageup": "PgUp", "pagedown": "PgDn",
    "home": "Home", "end": "End",
}
MOVING = [
    ("← →", "switch tab (tab bar focused)"),
    ("Tab Shift+Tab", "focus the table / the tab bar"),
    ("↑ ↓ PgUp PgDn", "select a row, scroll"),
    ("Home End", "first / last row"),
]
"""Keys Textual's own widgets answer (not bindings of carclf's), as they work in the dashboard."""
TWO_COLUMNS = 76
"""Terminal width from which the help has two columns."""


def key_name(key: str) -> str:
    """``ctrl+q`` as ``Ctrl+Q``, ``question_mark`` as ``?``: how the key reads on a keyboard."""
    *mods, name = key.strip().split("+")
    name = KEY_NAMES.get(name, name.upper() if mods and len(name) == 1 else name)
    return "+".join([*(m.title() for m in mods), name])


def describe(binding: Binding) -> tuple[str, str]:
    """``(keys, what it does)`` for one binding: its keys as shown on a keyboard, joined by ``/``."""
    keys = " / ".join(key_name(k) for k in binding.key.split(","))
    return keys, binding.description or binding.action


def key_pairs(binding: Binding) -> list[tuple[str, str]]:
    """``(key, what it does)`` for each key of ``binding`` on its own, and as the footer shows it."""
    description = binding.description or binding.action
    shown = [binding.key_display] if binding.key_display else []
    return [(key, description) for key in (*(key_name(k) for k in binding.key.split(",")), *shown)]


def merged(bindings: Sequence[Binding]) -> list[tuple[str, str]]:
    """The rows shown for ``bindings``: keys of one action in one row, the tab number keys in one."""
    rows: dict[str, tuple[str, str]] = {}
    tabs = [b for b in bindings if b.action.startswith("tab(")]
    for binding in bindings:
        if binding in tabs:
            if binding is tabs[0]:  # the tab bar shows their names
                rows["tab"] = (f"{tabs[0].key}-{tabs[-1].key}", "switch to that tab")
            continue
        keys = " ".join(key_name(k) for k in binding.key.split(","))
        if binding.action in rows:
            keys = f"{rows[binding.action][0]} {keys}"
        rows[binding.action] = (keys, binding.description or binding.action)
    return list(rows.values())


Section = tuple[str, str, list[tuple[str, str]]]
"""A help section as drawn: title, a note (may be empty), ``(keys, what they do)`` rows."""


def keys_table(sections: Sequence[Section]) -> Group:
    parts: list[Text | Table] = []
    for title, note, keys in sections:
        head = Text()
        head.append(title, style="bold underline")
        if note:
            head.append(f"  {note}", style="dim")
        parts.append(head)
        table = Table(show_header=False, box=None, pad_edge=False, padding=(0, 1))
        table.add_column("key", style="bold", max_width=13)  # several keys wrap between keys
        table.add_column("does")
        for key, description in keys:
            table.add_row(Text(key), Text(description))
        parts.append(table)
    return Group(*parts)


def balanced(sections: list[Section], height: Callable[[Sequence[Section]], int]) -> tuple[int, int]:
    """Where to split ``sections`` (in order) in two columns so the taller is as short as can be, and
    that height; ``height`` measures a column's lines as drawn."""
    return min(((max(height(sections[:i]), height(sections[i:])), i) for i in range(1, len(sections))),
               default=(height(sections), len(sections)))[::-1]


class HelpScreen(ModalScreen):
    """Lists the bindings of the app, the main screen and each pane (the same objects the footer shows).

    ``sections`` pairs a title (where the keys work) with its bindings.
    """

    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close help")]
    DEFAULT_CSS = dialog_css("HelpScreen", width=100, border="$accent", box="VerticalScroll")

    def __init__(self, sections: list[tuple[str, list[Binding]]]) -> None:
        super().__init__()
        self._given = sections
        self.sections = [(title, [describe(b) for b in bindings]) for title, bindings in sections]
        """Each section's title and its bindings as ``(keys, what it does)``."""
        self.bindings = [pair for _, bindings in sections for b in bindings for pair in (describe(b), *key_pairs(b))]
        """Every (key, description) pair listed: each binding's row, and each of its keys alone."""

    def shown_sections(self) -> list[Section]:
        """The sections as drawn: keys of one action and the tab numbers merged, and the moving keys."""
        shown = []
        for title, bindings in self._given:
            # a pane's note comes in brackets after its title ("Stages tab (r and a work ...)")
            head, _, note = title.partition(" (")
            shown.append((head, note.removesuffix(")"), merged(bindings)))
        return [shown[0], ("Moving around", "", MOVING), *shown[1:]]

    NOTE = ("Stages run in a child process (its own session) that writes the run's events.jsonl; quitting can "
            "leave it running, and `carclf-tui --attach RUN` shows the whole history later.")

    def compose(self) -> ComposeResult:
        with VerticalScroll() as box:
            box.border_title = "carclf dashboard keys · Esc, ? or q closes"
            yield Static(id="help-keys")
            yield Static(Text(self.NOTE, style="dim"), id="help-note")

    def on_mount(self) -> None:
        self._layout(self.app.size.width, self.app.size.height)

    def on_resize(self) -> None:
        self._layout(self.app.size.width, self.app.size.height)

    def _layout(self, width: int, height: int) -> None:
        sections = self.shown_sections()
        rows = 0
        if width >= TWO_COLUMNS:
            # the box's inside (its border and padding off), less the gap, halved
            column = (min(width, 100) - 4 - 2) // 2
            options = self.app.console.options.update_width(column)

            def lines(part: Sequence[Section]) -> int:
                return len(self.app.console.render_lines(keys_table(part), options, pad=False))

            cut, rows = balanced(sections, lines)
            left, right = sections[:cut], sections[cut:]
            grid = Table.grid(padding=(0, 2), expand=True)
            grid.add_column(ratio=1)
            grid.add_column(ratio=1)
            grid.add_row(keys_table(left), keys_table(right))
            content: Table | Group = grid
        else:
            content = keys_table(sections)
        self.query_one("#help-keys", Static).update(content)
        # the note under the keys only where all its lines fit below them (80x24 has room for the keys
        # alone; a cut paragraph reads as a mistake): measured at the box's inside width, border off
        inside = self.app.console.options.update_width(max(20, min(width, 100) - 4))
        note = len(self.app.console.render_lines(Text(self.NOTE), inside, pad=False))
        self.query_one("#help-note").display = width < TWO_COLUMNS or rows + 2 + note <= height
