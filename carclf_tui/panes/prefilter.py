"""The prefilter pane: progress and kept share, the score histogram, the files nearest the threshold,
and the trial threshold (``+ - [ ]`` move it, ``w`` saves the kept/rejected lists it gives)."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal

from carclf_core import runstate as rs
from carclf_core.errors import CarclfError
from carclf_core.runstate import RunState

from ..messages import ThresholdApplied, ThresholdFailed
from ..screens.confirm import ConfirmScreen
from ..widgets.plots import HistogramPlot
from ..widgets.prefilter import ExamplesView, PrefilterSummary
from .base import Pane


class PrefilterPane(Pane):
    """Owns the trial threshold: re-applied to the stored scores in a worker, never re-scoring images."""

    TAB = "prefilter"
    LABEL = "4 Prefilter"
    BINDINGS = [
        Binding("plus,equals_sign", "threshold(0.05)", "Threshold +", key_display="+", id="threshold-up"),
        Binding("minus", "threshold(-0.05)", "Threshold -", key_display="-", id="threshold-down"),
        Binding("right_square_bracket", "threshold(0.01)", "Threshold +0.01", show=False, key_display="]",
                id="threshold-up-fine"),
        Binding("left_square_bracket", "threshold(-0.01)", "Threshold -0.01", show=False, key_display="[",
                id="threshold-down-fine"),
        Binding("w", "save_threshold", "Save threshold", id="save-threshold"),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._state: RunState | None = None
        self.threshold: float | None = None
        """The threshold shown and tried; the run's own until a key moves it."""
        self.trial: dict | None = None
        """The newest re-apply result for :attr:`threshold` (kept, scored, ...)."""
        self.trial_pending = False
        self.notice = ""
        """The last save confirmation or re-apply error."""

    def compose(self) -> ComposeResult:
        yield PrefilterSummary(id="prefilter-summary")
        yield HistogramPlot(id="histogram")
        with Horizontal(id="examples"):
            yield ExamplesView("kept", id="examples-kept")
            yield ExamplesView("rejected", id="examples-rejected")

    def show(self, state: RunState) -> None:
        self._state = state
        if self.threshold is None and state.prefilter.threshold is not None:
            self.threshold = state.prefilter.threshold
        self._draw()

    def _draw(self) -> None:
        state = self._state
        if state is None:
            return
        self.query_one(PrefilterSummary).show(state, self.threshold, self.trial, self.trial_pending, self.notice)
        self.query_one(HistogramPlot).show(state.prefilter.edges, state.prefilter.counts, self.threshold)
        for view in self.query(ExamplesView):
            view.show(state)

    # --- keys ------------------------------------------------------------------------------------
    def action_threshold(self, delta: float) -> None:
        """Move the threshold by ``delta`` and re-apply it to the stored scores."""
        current = self.threshold if self.threshold is not None else self.app.config.prefilter.threshold
        self.threshold = round(min(1.0, max(0.0, current + delta)), 2)
        self.trial_pending = True
        self.notice = ""
        self._draw()
        self._reapply(self.threshold, write=False)

    def action_save_threshold(self) -> None:
        """Save the shown threshold as the run's, after asking: the kept/rejected lists are rewritten,
        the run's config records it, and the finished stages made from the old lists turn stale."""
        if self.busy:
            self.notify("a stage is running: stop it before saving the prefilter decision", severity="warning")
            return
        if self.threshold is None:
            self.notify("no threshold to save yet", severity="warning")
            return
        threshold = self.threshold
        order = self._state.stage_order if self._state is not None else []
        later = order[order.index("prefilter") + 1:] if "prefilter" in order else []
        made = [name for name in later if self._state and self._state.stages[name].status in (rs.DONE, rs.STALE)]
        detail = ""
        if self.trial is not None and self.trial.get("threshold") == threshold:
            detail = f"It keeps {self.trial.get('kept', 0):,} of {self.trial.get('scored', 0):,} scored images. "
        detail += "kept.csv and rejected.csv are rewritten and the run's config.yaml records the threshold."
        stale = (f"{', '.join(made)} become{'s' if len(made) == 1 else ''} stale" if made
                 else "no later stage is done yet")

        def answered(yes: bool | None) -> None:
            if yes:
                self.trial_pending = True
                self._draw()
                self._reapply(threshold, write=True)

        self.app.push_screen(ConfirmScreen(f"save threshold {threshold:g} as the run's? {stale}", detail,
                                           yes="Save"), answered)

    # --- the re-apply worker and its messages ----------------------------------------------------
    @work(thread=True, exclusive=True, group="reapply", name="re-apply threshold", exit_on_error=False)
    def _reapply(self, threshold: float, write: bool) -> None:
        from carclf_core.prefilter.scores import reapply  # pandas: loaded when first needed

        try:
            result = reapply(self.app.run_dir, threshold=threshold, write=write)
        except (CarclfError, OSError, ValueError, KeyError) as exc:
            self.post_message(ThresholdFailed(str(exc)))
            return
        self.post_message(ThresholdApplied(result, write))

    def on_threshold_applied(self, message: ThresholdApplied) -> None:
        message.stop()
        if self.threshold is not None and abs(message.result.get("threshold", -1) - self.threshold) > 1e-9:
            return  # an older key press; a newer re-apply is on its way
        self.trial = message.result
        self.trial_pending = False
        self.notice = ("saved as the run's threshold; stages made from the old lists are stale: u (resume) "
                       "brings them up to date" if message.written else "")
        self._draw()

    def on_threshold_failed(self, message: ThresholdFailed) -> None:
        message.stop()
        self.trial_pending = False
        self.notice = message.error
        self._draw()
