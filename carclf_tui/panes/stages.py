"""The stages pane: the stage table, the selected stage's detail, and the run keys (``r``, ``a``)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll

from carclf_core.runstate import RunState

from ..messages import RunRequested
from ..widgets.stages import StageDetail, StagesTable
from .base import Pane


class StagesPane(Pane):
    """One row a stage; the cursor row is the stage ``r`` runs and ``a`` runs from.

    The run keys work on every tab (they always have: the footer shows them everywhere) and act on
    the stage selected here; the screen, which owns the runner, starts it on :class:`RunRequested`.
    """

    TAB = "stages"
    LABEL = "1 Stages"
    FOCUS = "#stages-table"  # up/down pick the stage the run keys act on
    EVERY_TAB = True
    HELP = "r and a work on every tab, on the stage selected here"
    BINDINGS = [
        Binding("r", "run_stage", "Run stage", id="run-stage"),
        Binding("a", "run_all", "Run from here", id="run-all"),
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
        if action in ("run_stage", "run_all"):
            return None if self.busy else True  # shown, but greyed out while a stage runs
        return True

    def action_run_stage(self) -> None:
        """Run the selected stage."""
        name = self.query_one(StagesTable).selected_stage
        self._request([name] if name else [])

    def action_run_all(self) -> None:
        """Run the selected stage and every stage after it."""
        table = self.query_one(StagesTable)
        name = table.selected_stage
        order = [n for n in table.stages if n in self.app.stage_order]
        self._request(order[order.index(name):] if name in order else [])

    def _request(self, names: list[str]) -> None:
        if not names:
            self.notify("no stage selected", severity="warning")
            return
        self.post_message(RunRequested(tuple(names)))
