"""The main screen: tabs for stages, training, confusion, prefilter, log and config, and their keys.

The screen holds the newest :class:`~carclf_core.runstate.RunState` the follower thread posted and
draws it; every widget skips work when the part of the state it shows has not changed. Starting and
stopping stages goes through the app's :class:`~carclf_tui.runner.Runner`.
"""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static, TabbedContent, TabPane, Tabs
from textual.worker import Worker, WorkerState, get_current_worker

from carclf_core import runstate as rs

from ..follow import follow
from ..messages import StateUpdated, ThresholdApplied, ThresholdFailed
from ..runner import RunnerBusy
from ..widgets.config_view import ConfigView
from ..widgets.confusion import ConfusionView
from ..widgets.logview import LogView
from ..widgets.plots import CurvePlot, HistogramPlot
from ..widgets.prefilter import ExamplesView, PrefilterSummary
from ..widgets.stages import STATUS_STYLE, StageDetail, StagesTable
from ..widgets.training import EpochTable, TrainingStats

TABS = ("stages", "training", "confusion", "prefilter", "log", "config")


class StatusLine(Static):
    """One line on top: the run, what runs now, warnings and errors (words, so it reads without colour)."""

    DEFAULT_CSS = """
    StatusLine {
        height: 1;
        padding: 0 1;
    }
    """

    def show(self, run_name: str, state: rs.RunState, busy: bool) -> None:
        text = Text()
        text.append("carclf ", style="bold")
        text.append(run_name)
        running = state.running_stage()
        if running:
            symbol, style = STATUS_STYLE[rs.RUNNING]
            text.append(f"  {symbol} {running}", style=style)
            if running == "train" and state.epochs:
                text.append(f" epoch {state.epoch}/{state.epochs}")
        else:
            symbol, style = STATUS_STYLE.get(state.run_status, ("·", ""))
            text.append(f"  {symbol} {'idle' if state.run_status == rs.PENDING else state.run_status}", style=style)
        if busy and not running:
            text.append("  (runner starting)", style="dim")
        text.append(f"  warnings {state.warnings}  errors {state.errors}",
                    style="bold red" if state.errors else "")
        self.update(text)


class MainScreen(Screen):
    """The dashboard of one run."""

    BINDINGS = [
        Binding("r", "run_stage", "Run stage", id="run-stage"),
        Binding("a", "run_all", "Run from here", id="run-all"),
        Binding("s", "stop", "Stop", id="stop"),
        Binding("n", "new_run", "New run", id="new-run"),
        Binding("v", "cycle_view", "Next view", id="cycle-view"),
        Binding("plus,equals_sign", "threshold(0.05)", "Threshold +", key_display="+", id="threshold-up"),
        Binding("minus", "threshold(-0.05)", "Threshold -", key_display="-", id="threshold-down"),
        Binding("right_square_bracket", "threshold(0.01)", "Threshold +0.01", show=False, key_display="]"),
        Binding("left_square_bracket", "threshold(-0.01)", "Threshold -0.01", show=False, key_display="["),
        Binding("w", "save_threshold", "Save threshold", id="save-threshold"),
        *[Binding(str(i + 1), f"tab('{name}')", f"{name.title()} tab", show=False) for i, name in enumerate(TABS)],
    ]

    def __init__(self) -> None:
        super().__init__()
        self.state = rs.new_state(self.app.stage_order)
        self.busy = False
        self.threshold: float | None = None
        self.trial: dict | None = None
        self.trial_pending = False
        self.prefilter_message = ""

    # --- layout ----------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield StatusLine(id="status")
        with TabbedContent(initial="stages", id="tabs"):
            with TabPane("1 Stages", id="stages"):
                with Vertical():
                    yield StagesTable(id="stages-table")
                    with VerticalScroll(id="stage-detail-box"):
                        yield StageDetail(id="stage-detail")
            with TabPane("2 Training", id="training"):
                with Vertical():
                    with Horizontal(id="curves"):
                        yield CurvePlot("loss", id="loss-plot")
                        yield CurvePlot("accuracy", id="acc-plot")
                    with Horizontal(id="train-bottom"):
                        yield TrainingStats(id="train-stats")
                        yield EpochTable(id="epoch-table")
            with TabPane("3 Confusion", id="confusion"):
                with VerticalScroll(id="confusion-box"):
                    yield ConfusionView(id="confusion-view")
            with TabPane("4 Prefilter", id="prefilter"):
                with Vertical():
                    yield PrefilterSummary(id="prefilter-summary")
                    yield HistogramPlot(id="histogram")
                    with Horizontal(id="examples"):
                        yield ExamplesView("kept", id="examples-kept")
                        yield ExamplesView("rejected", id="examples-rejected")
            with TabPane("5 Log", id="log"):
                yield LogView(id="log-view")
            with TabPane("6 Config", id="config"):
                yield ConfigView(id="config-view")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(ConfigView).load(self.app.run_dir.config_path)
        self.query_one(StagesTable).focus()  # up/down pick the stage the run keys act on
        self.busy = self.app.runner.is_busy()
        self._draw()
        self.run_worker(self._follow, thread=True, name="follow events", group="follow", exclusive=True,
                        exit_on_error=False)
        # Durations of a running stage tick on, and a runner started elsewhere shows up.
        self.set_interval(1.0, self._tick)

    # --- following the run -----------------------------------------------------------------------
    def _follow(self) -> None:
        worker = get_current_worker()
        follow(rs.new_state(self.app.stage_order), self.app.run_dir.events_path, self.app.runner,
               post=lambda state: self.post_message(StateUpdated(state)),
               cancelled=lambda: worker.is_cancelled, interval=self.app.poll_interval, clock=self.app.clock)

    def on_state_updated(self, message: StateUpdated) -> None:
        self.state = message.state
        self._update_busy()
        self._draw()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # The one place worker failures surface (follower, threshold re-apply).
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            self.notify(f"{event.worker.name}: {type(error).__name__}: {error}", severity="error", timeout=10)

    def _tick(self) -> None:
        self._update_busy()
        if self.state.running_stage():
            self._draw_stages()
        # Plots skip batch-only updates that come too fast; catch up on the last one here.
        if self.query_one(TabbedContent).active == "training":
            for plot in self.query(CurvePlot):
                plot.show(self.state)

    def _update_busy(self) -> None:
        busy = self.app.runner.is_busy()
        if busy != self.busy:
            self.busy = busy
            self.refresh_bindings()
            self.query_one(StatusLine).show(self.app.run_dir.name, self.state, self.busy)

    # --- drawing ---------------------------------------------------------------------------------
    def _draw(self) -> None:
        """Draw the status line and the visible tab; hidden tabs are drawn when they are shown."""
        state = self.state
        self.query_one(StatusLine).show(self.app.run_dir.name, state, self.busy)
        if self.threshold is None and state.prefilter.threshold is not None:
            self.threshold = state.prefilter.threshold
        tab = self.query_one(TabbedContent).active
        if tab == "stages":
            self._draw_stages()
        elif tab == "training":
            for plot in self.query(CurvePlot):
                plot.show(state)
            self.query_one(TrainingStats).show(state)
            self.query_one(EpochTable).show(state)
        elif tab == "confusion":
            confusion = self.query_one(ConfusionView)
            if confusion._confusion is not state.confusion:
                confusion.show(state)
        elif tab == "prefilter":
            self._draw_prefilter()
        # The log is appended to even while hidden, so its scroll-back is complete when shown.
        self.query_one(LogView).show(state)

    def _draw_stages(self) -> None:
        now = self.app.clock()
        table = self.query_one(StagesTable)
        table.show(self.state, now)
        name = table.selected_stage
        detail = self.query_one(StageDetail)
        detail.show(self.state.stages.get(name) if name else None, now, detail.size.width or 60)

    def _draw_prefilter(self) -> None:
        state = self.state
        self.query_one(PrefilterSummary).show(state, self.threshold, self.trial, self.trial_pending,
                                              self.prefilter_message)
        self.query_one(HistogramPlot).show(state.prefilter.edges, state.prefilter.counts, self.threshold)
        for view in self.query(ExamplesView):
            view.show(state)

    @on(StagesTable.RowHighlighted)
    def _stage_selected(self) -> None:
        self._draw_stages()

    @on(TabbedContent.TabActivated)
    def _tab_changed(self, event: TabbedContent.TabActivated) -> None:
        # Focus the tab's main widget so arrows and page keys act on what is shown.
        target = {"stages": StagesTable, "training": EpochTable, "log": LogView, "config": ConfigView}.get(
            event.pane.id or "")
        # Without a target, focus the tab bar: focus left behind in a hidden pane would switch back to it.
        self.query_one(target or Tabs).focus()
        self.refresh_bindings()
        self._draw()

    # --- actions ---------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        tab = self.query_one(TabbedContent).active if self.is_mounted else "stages"
        if action in ("run_stage", "run_all"):
            return None if self.busy else True  # shown, but greyed out while a stage runs
        if action == "stop":
            return True if self.busy else None
        if action in ("threshold", "save_threshold"):
            return tab == "prefilter"
        if action == "cycle_view":
            return tab == "confusion"
        return True

    def action_tab(self, name: str) -> None:
        self.query_one(TabbedContent).active = name

    def _launch(self, names: list[str]) -> None:
        if not names:
            self.notify("no stage selected", severity="warning")
            return
        try:
            pid = self.app.runner.start(names)
        except RunnerBusy as exc:
            self.notify(str(exc), severity="warning")
            return
        except OSError as exc:
            self.notify(f"cannot start the runner: {exc}", severity="error", timeout=10)
            return
        self.busy = True
        self.refresh_bindings()
        self.query_one(StatusLine).show(self.app.run_dir.name, self.state, self.busy)
        self.notify(f"started {', '.join(names)} (pid {pid}, output in runner.log)")

    def action_run_stage(self) -> None:
        """Run the selected stage."""
        name = self.query_one(StagesTable).selected_stage
        self._launch([name] if name else [])

    def action_run_all(self) -> None:
        """Run the selected stage and every stage after it."""
        table = self.query_one(StagesTable)
        name = table.selected_stage
        order = [n for n in self.state.stage_order if n in self.app.stage_order]
        self._launch(order[order.index(name):] if name in order else [])

    def action_stop(self) -> None:
        """Ask the running stage to stop (SIGINT); it stops at the next batch and keeps what it finished."""
        if self.app.runner.stop():
            self.notify("stop requested: the stage ends at its next batch")
        else:
            self.notify("nothing is running", severity="warning")

    def action_new_run(self) -> None:
        """Start over in a new run directory with the dashboard's config."""
        if self.busy:
            self.notify("a stage is running: stop it first (s)", severity="warning")
            return
        self.app.new_run()

    def action_cycle_view(self) -> None:
        mode = self.query_one(ConfusionView).cycle()
        self.notify(f"confusion: {mode}", timeout=2)

    def action_threshold(self, delta: float) -> None:
        """Move the prefilter threshold by ``delta`` and re-apply it to the stored scores."""
        current = self.threshold if self.threshold is not None else self.app.config.prefilter.threshold
        self.threshold = round(min(1.0, max(0.0, current + delta)), 2)
        self.trial_pending = True
        self.prefilter_message = ""
        self._draw_prefilter()
        self._reapply(self.threshold, write=False)

    def action_save_threshold(self) -> None:
        """Write the kept/rejected lists for the shown threshold (re-run split afterwards to use them)."""
        if self.busy:
            self.notify("a stage is running: stop it before saving the prefilter decision", severity="warning")
            return
        if self.threshold is None:
            self.notify("no threshold to save yet", severity="warning")
            return
        self.trial_pending = True
        self._draw_prefilter()
        self._reapply(self.threshold, write=True)

    @work(thread=True, exclusive=True, group="reapply", name="re-apply threshold", exit_on_error=False)
    def _reapply(self, threshold: float, write: bool) -> None:
        try:
            from carclf_core import prefilter
        except ImportError as exc:
            self.post_message(ThresholdFailed(f"carclf_core.prefilter is not available yet ({exc})"))
            return
        try:
            result = prefilter.reapply(self.app.run_dir, threshold=threshold, write=write)
        except (OSError, ValueError, KeyError) as exc:
            self.post_message(ThresholdFailed(str(exc)))
            return
        self.post_message(ThresholdApplied(result, write))

    def on_threshold_applied(self, message: ThresholdApplied) -> None:
        if self.threshold is not None and abs(message.result.get("threshold", -1) - self.threshold) > 1e-9:
            return  # an older key press; a newer re-apply is on its way
        self.trial = message.result
        self.trial_pending = False
        self.prefilter_message = ("saved: kept.csv, rejected.csv and rule.json rewritten; re-run split to use it"
                                  if message.written else "")
        self._draw_prefilter()

    def on_threshold_failed(self, message: ThresholdFailed) -> None:
        self.trial_pending = False
        self.prefilter_message = message.error
        self._draw_prefilter()
