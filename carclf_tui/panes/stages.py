"""The stages pane: the stage table, the selected stage's detail, and the run keys (``r``, ``a``, ``u``)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll

from carclf_core import runstate as rs
from carclf_core.runstate import RunState

from ..messages import RunRequested
from ..screens.confirm import ConfirmScreen
from ..widgets.stages import StageDetail, StagesTable
from .base import Pane


def resumable(state: RunState) -> bool:
    """Whether ``u`` (resume) has work: a stage pending, stopped, failed or stale."""
    return any(stage.status != rs.DONE for stage in state.stages.values())


class StagesPane(Pane):
    """One row a stage; the cursor row is the stage ``r`` runs and ``a`` runs from; ``u`` resumes the run.

    The run keys work on every tab (they always have: the footer shows them everywhere) and act on
    the stage selected here; the screen, which owns the runner, starts it on :class:`RunRequested`.
    A key that would run a finished stage again from scratch asks first (its results move to
    ``previous/``, nothing is deleted); ``u`` runs what ``carclf-tui --resume`` would, without asking.
    """

    TAB = "stages"
    LABEL = "1 Stages"
    FOCUS = "#stages-table"  # up/down pick the stage the run keys act on
    EVERY_TAB = True
    HELP = "r and a work on every tab, on the stage selected here; done stages ask before running again"
    BINDINGS = [
        Binding("r", "run_stage", "Run stage", id="run-stage"),
        Binding("a", "run_all", "Run to end", id="run-all", tooltip="run the selected stage and every one after it"),
        Binding("u", "resume", "Resume", id="resume", tooltip="run the unfinished and stale stages"),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._state: RunState | None = None

    def compose(self) -> ComposeResult:
        yield StagesTable(id="stages-table")
        with VerticalScroll(id="stage-detail-box"):
            yield StageDetail(id="stage-detail")

    def show(self, state: RunState) -> None:
        self._state = state
        now = self.app.clock()
        table = self.query_one(StagesTable)
        table.show(state, now)
        name = table.selected_stage
        self.query_one(StageDetail).show(state.stages.get(name) if name else None, now)

    def tick(self, state: RunState) -> None:
        if state.running_stage():  # the running stage's duration ticks on
            self.show(state)

    @on(StagesTable.RowHighlighted)
    def _stage_selected(self) -> None:
        if self._state is not None:
            self.show(self._state)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "resume" and (self.busy or not resumable(self.screen.state)):
            # hidden (the footer is short of room at 80 columns) while all is done and fresh, and while
            # a stage runs (s, stop, takes its place)
            return False
        if action in ("run_stage", "run_all"):
            return None if self.busy else True  # shown, but greyed out while a stage runs
        return True

    def action_run_stage(self) -> None:
        """Run the selected stage (asking first when it is done or stale)."""
        name = self.query_one(StagesTable).selected_stage
        names = [name] if name else []
        redo = [n for n in names if self._status(n) in (rs.DONE, rs.STALE)]
        self._request(names, redo)

    def action_run_all(self) -> None:
        """Run the selected stage and every stage after it (asking first when the selected one is done)."""
        table = self.query_one(StagesTable)
        name = table.selected_stage
        order = [n for n in table.stages if n in self.app.stage_order]
        names = order[order.index(name):] if name in order else []
        # Bringing stale stages up to date is what `a` from a stale stage is for: only a fresh done one
        # (the selected stage or a later one) is worth a question before it starts from scratch.
        redo = [n for n in names if self._status(n) == rs.DONE]
        self._request(names, redo)

    def action_resume(self) -> None:
        """Bring the run up to date: its unfinished stages and the done ones gone stale, like ``--resume``."""
        self.post_message(RunRequested(()))

    def _status(self, name: str) -> str:
        stage = self._state.stages.get(name) if self._state is not None else None
        return stage.status if stage is not None else rs.PENDING

    def _request(self, names: list[str], redo: list[str]) -> None:
        if not names:
            self.notify("no stage selected", severity="warning")
            return
        if not redo:
            self.post_message(RunRequested(tuple(names)))
            return
        first = names[0]
        lead = f"{first} is {self._status(first)}: " if first in redo else ""
        if len(names) == 1:
            question, detail = f"{lead}run it again from scratch?", "Its results are kept in previous/."
        else:
            question = f"{lead}run {'it' if lead else first} and every later stage ({', '.join(names[1:])})?"
            detail = (f"{', '.join(redo)} start{'s' if len(redo) == 1 else ''} again from scratch; "
                      f"{'its' if len(redo) == 1 else 'their'} results are kept in previous/.")
        detail += " Nothing is deleted."

        def answered(yes: bool | None) -> None:
            if yes:
                self.post_message(RunRequested(tuple(names)))

        self.app.push_screen(ConfirmScreen(question, detail, yes="Run again"), answered)
