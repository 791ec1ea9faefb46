"""The prefilter pane: progress and kept share, the score histogram, pictures of the files nearest the
threshold being tried, and the trial threshold (``+ - [ ]`` move it, ``w`` saves the kept/rejected lists
it gives)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message

from carclf_core import runstate as rs
from carclf_core.errors import CarclfError
from carclf_core.runs import RunDir
from carclf_core.runstate import RunState

from ..messages import ThresholdApplied, ThresholdFailed
from ..screens.confirm import ConfirmScreen
from ..widgets.pictures import ThumbnailCache
from ..widgets.plots import HistogramPlot
from ..widgets.prefilter import EXAMPLES, Example, ExamplesView, PrefilterSummary
from .base import Pane


class ExamplesFound(Message):
    """The files nearest ``threshold`` on each side, with their labels (from the examples worker)."""

    def __init__(self, threshold: float, kept: tuple[Example, ...], rejected: tuple[Example, ...],
                 data_dir: Path | None, note: str = "") -> None:
        super().__init__()
        self.threshold = threshold
        self.kept = kept
        self.rejected = rejected
        self.data_dir = data_dir
        self.note = note


@dataclasses.dataclass
class _Stored:
    """What the examples need of the run's files, read once per version of each file (the worker's)."""

    scores_key: tuple = ()
    paths: object = None
    car_prob: object = None
    index_key: tuple = ()
    labels: dict[str, str] = dataclasses.field(default_factory=dict)


def _version(path: Path) -> tuple:
    """A file's identity for caching: size and modification time; () when it does not exist."""
    try:
        stat = path.stat()
    except OSError:
        return ()
    return (stat.st_size, stat.st_mtime_ns)


class PrefilterPane(Pane):
    """Owns the trial threshold: re-applied to the stored scores in a worker, never re-scoring images."""

    TAB = "prefilter"
    LABEL = "4 Prefilter"
    BINDINGS = [
        # one footer entry for + and - (the help lists both): at 80 columns the footer keeps ? and q
        Binding("plus,equals_sign", "threshold(0.05)", "Threshold", key_display="+/-", id="threshold-up",
                tooltip="+ raises the threshold by 0.05, - lowers it"),
        Binding("minus", "threshold(-0.05)", "Threshold -0.05", show=False, key_display="-", id="threshold-down"),
        Binding("right_square_bracket", "threshold(0.01)", "Threshold +0.01", show=False, key_display="]",
                id="threshold-up-fine"),
        Binding("left_square_bracket", "threshold(-0.01)", "Threshold -0.01", show=False, key_display="[",
                id="threshold-down-fine"),
        Binding("w", "save_threshold", "Save", id="save-threshold", tooltip="save the threshold as the run's"),
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
        self.cache = ThumbnailCache()
        """Thumbnails of the examples: moving the threshold back never decodes a file twice."""
        self._stored = _Stored()
        self._examples_key: tuple | None = None
        self.examples_threshold: float | None = None
        """The threshold the shown examples were found for (None: none shown yet)."""

    def compose(self) -> ComposeResult:
        yield PrefilterSummary(id="prefilter-summary")
        yield HistogramPlot(id="histogram")
        with Horizontal(id="examples"):
            yield ExamplesView("kept", self.cache, id="examples-kept")
            yield ExamplesView("rejected", self.cache, id="examples-rejected")

    def show(self, state: RunState) -> None:
        self._state = state
        if self.threshold is None and state.prefilter.threshold is not None:
            self.threshold = state.prefilter.threshold
            self.refresh_bindings()  # the threshold keys appear with the first threshold
        self._draw()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("threshold", "save_threshold"):
            # nothing to move or save before the stage reports a threshold: the keys stay out of the
            # footer (at 80 columns it has no room to spare)
            return self.threshold is not None
        return True

    def _draw(self) -> None:
        state = self._state
        if state is None:
            return
        self.query_one(PrefilterSummary).show(state, self.threshold, self.trial, self.trial_pending, self.notice)
        self.query_one(HistogramPlot).show(state.prefilter.edges, state.prefilter.counts, self.threshold)
        stage = state.stages.get("prefilter")
        key = (self.threshold, stage.status if stage else "", state.prefilter.kept_examples,
               state.prefilter.rejected_examples)
        if self.threshold is not None and key != self._examples_key:
            self._examples_key = key
            self._find_examples(self.threshold, (state.prefilter.kept_examples, state.prefilter.rejected_examples))

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

    # --- the examples worker: the files nearest the threshold being tried ------------------------
    @work(thread=True, exclusive=True, group="examples", name="prefilter examples", exit_on_error=False)
    def _find_examples(self, threshold: float, reported: tuple[tuple, tuple]) -> None:
        """Find the files nearest ``threshold`` in the stored scores (the stage's own examples while it
        has stored none yet), label them, and post them; a newer threshold cancels this one."""
        from carclf_core.prefilter import rule  # numpy: loaded when first needed

        run = self.app.run_dir
        config = run.load_config()
        note = ""
        try:
            paths, car_prob = self._scores(run)
        except (OSError, ValueError, KeyError) as exc:
            paths = car_prob = None
            note = f"(the stage's own; scores not readable: {exc})" if run.prefilter_dir.exists() else ""
        if paths is not None:
            kept, rejected = rule.examples(paths, car_prob, threshold, n=EXAMPLES)
        else:  # the stage has not stored its scores yet: what it reported for its own threshold
            kept, rejected = (list(side) for side in reported)
            if reported[0] or reported[1]:
                note = note or "(the stage's threshold: scores not stored yet)"
        labels = self._labels(run, config, [path for path, _ in (*kept, *rejected)])
        self.post_message(ExamplesFound(
            threshold, tuple(Example(p, v, labels.get(p)) for p, v in kept),
            tuple(Example(p, v, labels.get(p)) for p, v in rejected), Path(config.data.dir), note))

    def _scores(self, run: RunDir):
        """The stored paths and car probabilities, read once per version of ``scores.csv``."""
        from carclf_core.prefilter.scores import load_scores

        key = _version(run.prefilter_dir / "scores.csv")
        if not key:
            return None, None
        if key != self._stored.scores_key:
            table = load_scores(run, ["path", "car_prob"])
            self._stored.paths = table["path"].to_numpy()
            self._stored.car_prob = table["car_prob"].to_numpy(dtype="float64")
            self._stored.scores_key = key
        return self._stored.paths, self._stored.car_prob

    def _labels(self, run: RunDir, config, paths: list[str]) -> dict[str, str]:
        """Class labels of ``paths``: the index's (read once per version of ``index.csv``), else parsed
        from the file name as the index would; a file with neither is left out."""
        from carclf_core import dataset
        from carclf_core.stages.index import load_index

        key = _version(run.index_csv)
        if key and key != self._stored.index_key:
            try:
                index = load_index(run)
                self._stored.labels = dict(zip(index["path"], index["label"], strict=True))
            except (CarclfError, OSError, ValueError, KeyError):
                self._stored.labels = {}
            self._stored.index_key = key
        labels = {}
        for path in paths:
            label = self._stored.labels.get(path)
            if not label:
                try:
                    values = dataset.parse_filename(path, config.data.fields, config.data.separator)
                    label = dataset.label_of(values, config.data.label)
                except ValueError:
                    continue
            labels[path] = label
        return labels

    def on_examples_found(self, message: ExamplesFound) -> None:
        message.stop()
        if self.threshold is not None and abs(message.threshold - self.threshold) > 1e-9:
            return  # an older key press; a newer search is on its way
        self.examples_threshold = message.threshold
        self.query_one("#examples-kept", ExamplesView).show(message.kept, message.threshold, message.data_dir,
                                                             message.note)
        self.query_one("#examples-rejected", ExamplesView).show(message.rejected, message.threshold,
                                                                 message.data_dir)

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
