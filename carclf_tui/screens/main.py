"""The main screen: the status line, one tab a pane, the footer; it follows the run and owns the runner.

The screen holds the newest :class:`~carclf_core.runstate.RunState` the follower thread posted and
hands it to the active pane's ``show`` (hidden panes catch up when their tab opens). Each pane owns
its keys and what they change (see :mod:`carclf_tui.panes`); the screen keeps the keys that concern
the whole run: stop (``s``), new run (``n``, asking its name), open another run (``o``) and the tab
numbers. Starting and stopping stages goes
through the app's :class:`~carclf_tui.runner.Runner`.
"""

from __future__ import annotations

import contextlib
import dataclasses

from textual import on
from textual.actions import parse as parse_action
from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import var
from textual.screen import Screen
from textual.widgets import TabbedContent, TabPane, Tabs
from textual.worker import Worker, get_current_worker

from carclf_core import runstate as rs
from carclf_core.display import printable
from carclf_core.errors import CarclfError

from ..follow import follow
from ..messages import RunRequested, StateUpdated
from ..panes import PANES, Pane
from ..panes.base import report_worker_error
from ..panes.stages import resumable
from ..runner import RunnerBusy
from ..widgets.footer import KeysFooter
from ..widgets.status import StatusLine
from .confirm import RunNameScreen

TABS = tuple(pane.TAB for pane in PANES)


def routed(pane: type[Pane]) -> list[Binding]:
    """``pane``'s bindings as the screen's: ``pane(TAB, ACTION)`` runs the action on the pane.

    A pane's own bindings fire only while focus is inside it; these fire while focus is elsewhere (on
    the tab bar, for tabs without a focusable widget), and :meth:`MainScreen.check_action` hides them
    unless the pane's tab is active or the pane's keys work on every tab.
    """
    return [dataclasses.replace(b, action=f"pane({pane.TAB!r}, {b.action!r})") for b in pane.key_bindings()]


RUN_KEYS = [
    Binding("s", "stop", "Stop", id="stop"),
    Binding("n", "new_run", "New run", id="new-run"),
    Binding("o", "app.open_run", "Open run", show=False, id="open-run"),
]
TAB_KEYS = [Binding(str(i + 1), f"tab({tab!r})", f"{tab.title()} tab", show=False, id=f"tab-{tab}")
            for i, tab in enumerate(TABS)]


class RunTabs(TabbedContent):
    """The tabs, switched by keys and clicks only.

    Textual's tabs also switch to a pane when a widget in it takes focus, told by a message that can
    arrive late: the first frame focuses the stages table, and on a busy machine that message came
    after a tab key had opened another tab, and switched back to the stages (a user's key undone, a
    tab shown for a moment). The dashboard never focuses into a hidden pane to show it; it opens the
    tab itself (:meth:`MainScreen.action_tab`).
    """

    def _on_tab_pane_focused(self, event: TabPane.Focused) -> None:
        event.stop()
        event.prevent_default()  # Textual would call TabbedContent's handler next


def _load_plotting_and_pictures() -> None:
    from ..widgets.pictures import load_textual_image
    from ..widgets.plots import load_plotext

    load_plotext()
    with contextlib.suppress(Exception):  # a picture card says why it has none, if one is ever shown
        load_textual_image()


class MainScreen(Screen):
    """The dashboard of one run."""

    # The footer lists bindings in this order: the run keys of the stages pane (every tab), stop and
    # new run, then the active tab's own keys.
    BINDINGS = [
        *(b for pane in PANES if pane.EVERY_TAB for b in routed(pane)),
        *RUN_KEYS,
        *(b for pane in PANES if not pane.EVERY_TAB for b in routed(pane)),
        *TAB_KEYS,
    ]

    AUTO_FOCUS = ""
    """No selector: :meth:`_focus` picks the focused widget on mount. Textual's default focused the tab bar
    first, and every focus change restyles the widget and its children."""

    busy: var[bool] = var(False, init=False, bindings=True)
    """A runner works on this run (ours, or one an earlier dashboard left running); panes bind to it."""

    def __init__(self) -> None:
        super().__init__()
        self.state = rs.new_state(self.app.stage_order)
        self.panes: dict[str, Pane] = {pane.TAB: pane(id=f"{pane.TAB}-pane") for pane in PANES}

    @classmethod
    def key_sections(cls, app_bindings: list[Binding]) -> list[tuple[str, list[Binding]]]:
        """Every key of the dashboard for the help screen: the screen's and the app's, then each pane's."""
        sections = [("Every tab", [*RUN_KEYS, *TAB_KEYS, *app_bindings])]
        for pane in PANES:
            if pane.key_bindings():
                title = f"{pane.TAB.title()} tab" + (f" ({pane.HELP})" if pane.HELP else "")
                sections.append((title, pane.key_bindings()))
        return sections

    # --- layout ----------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield StatusLine(id="status")
        with RunTabs(initial=TABS[0], id="tabs"):
            for tab, pane in self.panes.items():
                pane.data_bind(MainScreen.busy)  # here, where the screen is the active message pump
                with TabPane(pane.LABEL, id=tab):
                    # A hidden tab's pane is mounted when the tab is first shown (see action_tab): its
                    # widgets, styles and imports have no place in the first frame. A pane drawn while
                    # hidden (the log's scroll-back) is mounted from the start.
                    if tab == TABS[0] or pane.DRAW_HIDDEN:
                        yield pane
        yield KeysFooter(compact=True)

    def on_mount(self) -> None:
        self._focus(self.active_pane)
        self.busy = self.app.runner.is_busy()
        self.show(self.state)
        self.run_worker(self._follow, thread=True, name="follow events", group="follow", exclusive=True,
                        exit_on_error=False)
        # Durations of a running stage tick on, and a runner started elsewhere shows up.
        self.set_interval(1.0, self._tick)
        if self.warm_up_s is not None:
            self.set_timer(self.warm_up_s, self.warm_up)

    warm_up_s: float | None = 2.0
    """Seconds after the screen mounts when :meth:`warm_up` runs (None: never; tests of the first frame)."""

    def warm_up(self) -> None:
        """Load plotext and textual-image (with numpy and Pillow) in a thread, out of the first frame's way
        and (usually) before the key of a tab that draws plots or pictures: their imports (about 0.1 s of
        CPU each) would otherwise delay the tab's first showing. The panes are still mounted when first
        shown."""
        self.run_worker(_load_plotting_and_pictures, thread=True, name="load plotext and textual-image",
                        group="warm-up", exit_on_error=False)

    @property
    def active_tab(self) -> str:
        return (self.query_one(TabbedContent).active if self.is_mounted else "") or TABS[0]

    @property
    def active_pane(self) -> Pane:
        return self.panes[self.active_tab]

    def _focus(self, pane: Pane) -> None:
        # The pane's main widget, so arrows and page keys act on what is shown; without one, the tab
        # bar (left/right switch tabs): keys must never go to a widget left behind in a hidden pane.
        # Now, not with Widget.focus (which waits for the next turn of the loop): a focus landing after
        # another tab was chosen is one the user did not ask for (before RunTabs it even switched back to
        # its own tab, and two such switches chased each other for ever).
        self.app.set_focus(pane.focus_target() or self.query_one(Tabs))

    # --- following the run -----------------------------------------------------------------------
    def _follow(self) -> None:
        worker = get_current_worker()
        follow(rs.new_state(self.app.stage_order), self.app.run_dir.events_path, self.app.runner,
               post=lambda state: self.post_message(StateUpdated(state)),
               cancelled=lambda: worker.is_cancelled, interval=self.app.poll_interval, clock=self.app.clock)

    def on_state_updated(self, message: StateUpdated) -> None:
        was_resumable = resumable(self.state)
        self.state = message.state
        self._update_busy()
        self.show(self.state)
        if resumable(self.state) != was_resumable:
            self.refresh_bindings()  # u (resume) shows only while there is something to resume

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        report_worker_error(self, event)  # the follower's; panes report their own workers

    def _tick(self) -> None:
        self._update_busy()
        if self.active_pane.is_mounted:
            self.active_pane.tick(self.state)

    def _update_busy(self) -> None:
        self.busy = self.app.runner.is_busy()

    def watch_busy(self) -> None:
        self.query_one(StatusLine).show(self.app.run_dir.name, self.state, self.busy)

    # --- drawing ---------------------------------------------------------------------------------
    def show(self, state: rs.RunState) -> None:
        """Draw the status line and the active pane (and panes that follow every state while hidden)."""
        self.query_one(StatusLine).show(self.app.run_dir.name, state, self.busy)
        active = self.active_tab
        for tab, pane in self.panes.items():
            if (tab == active or pane.DRAW_HIDDEN) and pane.is_mounted:  # a pane not shown yet is not mounted
                pane.show(state)

    @on(TabbedContent.TabActivated)
    async def _tab_changed(self, event: TabbedContent.TabActivated) -> None:
        pane = self.panes.get(event.pane.id or "")
        if pane is not None and pane.parent is None:  # shown by a click or the tab bar's arrows, not yet mounted
            # Meanwhile focus waits on the tab bar: left in the pane just hidden, it would switch back to it.
            self.app.set_focus(self.query_one(Tabs))
            await self._mount_pane(pane)
        if pane is None or pane is not self.active_pane:
            return  # another tab was chosen since: focusing this one's widget would switch back
        self._focus(pane)
        self.refresh_bindings()
        self.show(self.state)

    # --- keys ------------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            # shown only while a runner works: at 80 columns the footer has no room for a dead key
            # (u, resume, takes its place while nothing runs)
            return True if self.busy else False
        if action == "pane":
            tab, pane_action = parameters
            pane = self.panes[str(tab)]
            if not pane.is_mounted or (not pane.EVERY_TAB and tab != self.active_tab):
                return False
            _, name, pane_parameters = parse_action(str(pane_action))
            return pane.check_action(name, pane_parameters)
        return True

    async def action_pane(self, tab: str, action: str) -> None:
        """Run ``action`` on the pane of ``tab`` (a pane's key pressed while focus is outside it)."""
        await self.app.run_action(action, self.panes[tab])

    async def action_tab(self, name: str) -> None:
        # The pane is mounted before its tab shows, so a key pressed right after the tab's (handled once
        # this action is done) finds the pane's widgets and bindings in place.
        await self._mount_pane(self.panes[name])
        self.query_one(TabbedContent).active = name

    async def _mount_pane(self, pane: Pane) -> None:
        """Mount ``pane`` in its tab if it is not yet: a hidden tab's pane waits for its first showing."""
        if pane.parent is None:
            await self.query_one(TabbedContent).get_pane(pane.TAB).mount(pane)
            # and drawn once it has its size: a pane drawn only before its first layout could wait for
            # the next event (none comes on a finished run) with its plots never drawn
            self.call_after_refresh(lambda: self.show(self.state))

    def on_run_requested(self, message: RunRequested) -> None:
        self._launch(list(message.stages))

    def _launch(self, names: list[str]) -> None:
        """Start the runner on ``names``; none: resume the run (its unfinished and stale stages)."""
        try:
            pid = self.app.runner.start(names)
        except RunnerBusy as exc:
            self.notify(printable(exc), severity="warning", markup=False)
            return
        except CarclfError as exc:  # runner.log is a symbolic link or not a file
            self.notify(printable(f"cannot start the runner: {exc}"), severity="error", timeout=10, markup=False)
            return
        except OSError as exc:
            self.notify(printable(f"cannot start the runner: {exc}"), severity="error", timeout=10, markup=False)
            return
        self.busy = True
        what = ", ".join(names) if names else "resume: the unfinished and stale stages"
        self.notify(f"started {what} (pid {pid}, output in runner.log)")

    def action_stop(self) -> None:
        """Ask the running stage to stop (SIGINT); it stops at the next batch and keeps what it finished."""
        if self.app.runner.stop():
            self.notify("stop requested: the stage ends at its next batch")
        else:
            self.notify("nothing is running", severity="warning")

    def action_new_run(self) -> None:
        """Start a new run like the one shown (its configuration, beside it), under a name asked for."""
        if self.busy:
            self.notify("a stage is running: stop it first (s)", severity="warning")
            return
        try:
            config = self.app.new_run_config()
        except (CarclfError, OSError) as exc:
            config = self.app.config
            self.notify(printable(f"the shown run's configuration cannot be read ({exc}); the new run takes the "
                                  "dashboard's"), severity="warning", timeout=10, markup=False)

        def named(name: str | None) -> None:
            if name is not None:
                self.app.new_run(name, config)

        self.app.push_screen(RunNameScreen(config.run.name, printable(config.run.root)), named)
