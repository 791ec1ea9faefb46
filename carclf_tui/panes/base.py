"""The base of the dashboard's panes: one pane a tab, drawing its part of the run state and owning its keys."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding
from textual.containers import Container
from textual.dom import DOMNode
from textual.reactive import var
from textual.widget import Widget
from textual.worker import Worker, WorkerState

from carclf_core.display import printable
from carclf_core.runstate import RunState


def report_worker_error(node: DOMNode, event: Worker.StateChanged) -> None:
    """Show a failed worker as a notification (workers run with ``exit_on_error=False``: the monitor
    never dies of a failed read or re-apply)."""
    if event.state == WorkerState.ERROR:
        error = event.worker.error
        # the error's text may quote a path or a value from outside: escaped, and never markup
        node.notify(printable(f"{event.worker.name}: {type(error).__name__}: {error}"), severity="error", timeout=10,
                    markup=False)


class Pane(Container):
    """One tab of the dashboard.

    The main screen calls :meth:`show` with the newest run state while the pane's tab is active (and
    once when the tab opens; a pane with :attr:`DRAW_HIDDEN` is shown every state), and :meth:`tick`
    once a second. The pane keeps what it needs between calls; a state is never mutated.

    Keys are the pane's ``BINDINGS``. They fire from the pane itself while focus is inside it; on
    tabs whose focus stays on the tab bar (so left/right still switch tabs) the screen routes them
    here while the tab is active, or on every tab when :attr:`EVERY_TAB` is set. ``check_action``
    decides, as usual, whether a key is enabled (``True``), greyed out (``None``) or hidden.
    """

    TAB: ClassVar[str] = ""
    """The id of the pane's tab (``stages``, ``training``, ...): what the number keys and tests name."""
    LABEL: ClassVar[str] = ""
    """The tab's label."""
    FOCUS: ClassVar[str | None] = None
    """Selector of the widget focused when the tab opens (arrows and page keys act on it); None leaves
    focus on the tab bar."""
    EVERY_TAB: ClassVar[bool] = False
    """The pane's keys work on every tab, not only its own (the run keys act on the selected stage)."""
    DRAW_HIDDEN: ClassVar[bool] = False
    """:meth:`show` is called on every state even while the tab is hidden."""
    HELP: ClassVar[str] = ""
    """A note for the help screen's section of this pane's keys."""

    busy: var[bool] = var(False, bindings=True)
    """A runner works on the run (bound to the screen's ``busy``); run keys grey out, saving refuses."""

    def show(self, state: RunState) -> None:
        """Draw ``state``; cheap when the part of it the pane shows has not changed."""

    def tick(self, state: RunState) -> None:
        """Once a second while the tab is active: catch up on what changes with time alone."""

    def focus_target(self) -> Widget | None:
        """The widget to focus when the tab opens (None: the tab bar)."""
        return self.query_one(self.FOCUS) if self.FOCUS else None

    @classmethod
    def key_bindings(cls) -> list[Binding]:
        """The pane's own bindings (for the screen's routing and the help screen)."""
        return [b for b in cls.BINDINGS if isinstance(b, Binding)]

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # Worker state messages do not bubble: a pane reports its own workers' failures.
        report_worker_error(self, event)
