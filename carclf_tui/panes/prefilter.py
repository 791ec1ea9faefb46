"""The prefilter pane: progress and kept share, the score histogram, pictures of the files nearest the
threshold being tried, and the trial threshold (``+ - [ ]`` move it, ``w`` saves the kept/rejected lists
it gives). Teach mode (``t``) labels the photos a queue proposes (``y`` a whole car, ``n``/``i``/``p``
not: interior, part) and shows the rule learned from them; ``w`` then saves the learned rule."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rich.text import Text
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
from ..widgets.prefilter import EXAMPLES, Example, ExamplesView, PrefilterSummary, TeachView
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


class Taught(Message):
    """The teach worker labelled what it was sent and refitted the learned rule: the new view."""

    def __init__(self, view: TeachView, data_dir: Path | None, error: str = "") -> None:
        super().__init__()
        self.view = view
        self.data_dir = data_dir
        self.error = error


class TeachSaved(Message):
    """The learned rule was saved as the run's decision (``result``: reapply's), or could not be."""

    def __init__(self, result: dict | None, error: str = "") -> None:
        super().__init__()
        self.result = result
        self.error = error


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
        Binding("w", "save_threshold", "Save", id="save-threshold",
                tooltip="save the threshold (in teach mode: the learned rule) as the run's"),
        # t shows in the footer only in teach mode (at 80 columns the threshold keys leave no room; the
        # threshold line names it instead)
        Binding("t", "teach(True)", "Teach", show=False, id="teach",
                tooltip="teach mode: label photos, learn a rule from them"),
        Binding("t", "teach(False)", "Threshold", id="teach-off", tooltip="back to the threshold"),
        # priority: n is also the screen's new-run key, which it keeps outside teach mode
        Binding("y", "label('car')", "Label", key_display="y/n", id="label-car",
                tooltip="teach mode: y a whole car, n not one (i an interior, p a part)"),
        Binding("n", "label('not')", "Not a car", show=False, priority=True, id="label-not"),
        Binding("i", "label('interior')", "An interior", show=False, id="label-interior"),
        Binding("p", "label('part')", "A part (wheel, light, badge...)", show=False, id="label-part"),
    ]
    HELP = "t: teach mode, where y/n/i/p label the first picture and w saves the learned rule"

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
        self.teach = False
        """Teach mode: the label keys work, the pictures are the queue and the learned boundary."""
        self.teach_view: TeachView | None = None
        """The learned rule's newest view (from the teach worker)."""
        self.labels_sent = 0
        """Label keys pressed in this dashboard (each reaches the labels file in order)."""
        self._jobs: list[tuple[int, str]] = []
        """Labels (scores row, label) pressed and not yet handed to the teach worker."""
        self._teaching = False
        self._teacher = None
        """The worker's :class:`carclf_core.prefilter.scores.Teacher` (only the worker touches it)."""
        self._teacher_key: tuple = ()

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
        if action == "label":
            return self.teach  # outside teach mode n is the screen's (a new run)
        if action == "threshold":
            # nothing to move before the stage reports a threshold, nor in teach mode: the keys stay
            # out of the footer (at 80 columns it has no room to spare)
            return self.threshold is not None and not self.teach
        if action == "teach":
            return bool(parameters and parameters[0]) != self.teach and (self.threshold is not None or self.teach)
        if action == "save_threshold":
            return self.threshold is not None or self.teach
        return True

    def _draw(self) -> None:
        state = self._state
        if state is None:
            return
        self.query_one(PrefilterSummary).show(state, self.threshold, self.trial, self.trial_pending, self.notice,
                                              self._shown_teach_view() if self.teach else None)
        if self.teach:
            return  # the pictures are the teach worker's
        self.query_one(HistogramPlot).show(state.prefilter.edges, state.prefilter.counts, self.threshold)
        stage = state.stages.get("prefilter")
        key = (self.threshold, stage.status if stage else "", state.prefilter.kept_examples,
               state.prefilter.rejected_examples)
        if self.threshold is not None and key != self._examples_key:
            self._examples_key = key
            self._find_examples(self.threshold, (state.prefilter.kept_examples, state.prefilter.rejected_examples))

    def _shown_teach_view(self) -> TeachView:
        view = self.teach_view or TeachView(pending=True)
        return dataclasses.replace(view, pending=view.pending or self._teaching or bool(self._jobs))

    # --- teach mode ------------------------------------------------------------------------------
    def action_teach(self, on: bool = True) -> None:
        """Teach mode (label photos, learn a rule from them) on, or back to the threshold."""
        self.teach = bool(on)
        self.notice = ""
        self.query_one(HistogramPlot).display = not self.teach
        self._examples_key = None  # back in threshold mode the threshold's pictures come again
        if self.teach:
            self._start_teaching()
        self.refresh_bindings()
        self._draw()

    def action_label(self, label: str) -> None:
        """Label the first picture of the queue ``label`` (every copy of the photo shares it) and show
        the next; the rule is refitted in the worker, the labels file rewritten at once."""
        view = self.teach_view
        if not self.teach or view is None or not view.queue:
            return
        first, rest = view.queue[0], view.queue[1:]
        self._jobs.append((first.row, label))
        self.labels_sent += 1
        self.teach_view = dataclasses.replace(view, queue=rest)  # the next picture at once, refit or not
        self._show_teach_pictures(self.teach_view)
        self._start_teaching()
        self._draw()

    def _start_teaching(self) -> None:
        """Hand the pressed labels to the teach worker, one worker at a time (so labels keep their order)."""
        if self._teaching:
            return
        jobs, self._jobs = self._jobs, []
        self._teaching = True
        threshold = self.threshold if self.threshold is not None else self.app.config.prefilter.threshold
        self._teach(jobs, threshold)

    @work(thread=True, group="teach", name="teach the prefilter", exit_on_error=False)
    def _teach(self, jobs: list[tuple[int, str]], threshold: float) -> None:
        """Label ``jobs`` in the run's labels file, refit the learned rule, and post what to show: its
        counts and estimate, the queue (least certain first) and the photos nearest its boundary."""
        from carclf_core.prefilter import learned
        from carclf_core.prefilter.scores import Teacher

        run = self.app.run_dir
        try:
            config = run.load_config()
            key = (_version(run.prefilter_dir / "scores.csv"), _version(run.prefilter_dir / "probs.npy"))
            if self._teacher is None or key != self._teacher_key:
                own = run.prefilter_dir / learned.LABELS_CSV
                if config.prefilter.labels != "run" and not own.exists():
                    # the run applies another labels file: teaching goes on from it, in the run's own
                    learned.write_labels(own, learned.read_labels(config.prefilter.labels))
                self._teacher, self._teacher_key = Teacher.open(run, "run"), key
            teacher = self._teacher
            for row, label in jobs:
                teacher.label(row, label)
            kept = estimate = None
            if learned.can_fit(teacher.y):
                estimate = teacher.learn()["estimate"]
                kept = int((teacher.odds > 0).sum())
            else:
                teacher.model = teacher.odds = None
            counts = teacher.counts()
            queue = teacher.queue(threshold, EXAMPLES)
            boundary = teacher.boundary(EXAMPLES)
            labels = self._labels(run, config, [str(teacher.paths[i]) for i in (*queue, *boundary)])
            tags = {1.0: "car", 0.0: "not"}

            def example(row: int, value: float) -> Example:
                path = str(teacher.paths[row])
                return Example(path, value, labels.get(path), tags.get(float(teacher.y[row]), ""), int(row))

            view = TeachView(
                labelled_car=counts["car"], labelled_not=counts["not"], kept=kept,
                scored=int(teacher.usable.sum()), estimate=estimate,
                queue=tuple(example(int(i), float(teacher.car_prob[i])) for i in queue),
                boundary=tuple(example(int(i), float(learned.probability(teacher.odds[i]))) for i in boundary),
            )
        except (CarclfError, OSError, ValueError, KeyError) as exc:
            self.post_message(Taught(self.teach_view or TeachView(), None, str(exc)))
            return
        self.post_message(Taught(view, Path(config.data.dir)))

    def on_taught(self, message: Taught) -> None:
        message.stop()
        self._teaching = False
        self.notice = message.error
        if self._jobs:  # labels pressed meanwhile: their turn (the queue shown stays until then)
            self._start_teaching()
        else:
            self.teach_view = message.view
            if self.teach and not message.error:
                self._show_teach_pictures(message.view, message.data_dir)
        self._draw()

    def _show_teach_pictures(self, view: TeachView, data_dir: Path | None = None) -> None:
        data_dir = data_dir or getattr(self, "_teach_data_dir", None)
        self._teach_data_dir = data_dir
        first = Text("label the first", style="bold")
        first.append(" (y car · n not)", style="dim")  # i and p (interior, part): in the help
        self.query_one("#examples-kept", ExamplesView).show(view.queue, None, data_dir, title=first)
        boundary = Text("nearest the learned boundary", style="bold")
        boundary.append(" (p of a car)" if view.boundary else "", style="dim")
        self.query_one("#examples-rejected", ExamplesView).show(view.boundary, None, data_dir, title=boundary)

    def _save_learned(self) -> None:
        view = self.teach_view
        if self._teaching or self._jobs:  # the save learns from the labels file: the last keys first
            self.notify("still learning from the last labels: press w again in a moment", severity="warning")
            return
        if view is None or view.kept is None:
            self.notify("label a car and a non-car first: there is no learned rule to save", severity="warning")
            return
        order = self._state.stage_order if self._state is not None else []
        later = order[order.index("prefilter") + 1:] if "prefilter" in order else []
        made = [name for name in later if self._state and self._state.stages[name].status in (rs.DONE, rs.STALE)]
        stale = (f"{', '.join(made)} become{'s' if len(made) == 1 else ''} stale" if made
                 else "no later stage is done yet")
        labels = view.labelled_car + view.labelled_not
        detail = (f"It keeps {view.kept:,} of {view.scored:,} scored images, learned from {labels} labels. kept.csv "
                  "and rejected.csv are rewritten; config.yaml records rule: learned, rule.json the labels' "
                  "hash and the model.")

        def answered(yes: bool | None) -> None:
            if yes:
                self.notice = "saving the learned rule…"
                self._draw()
                self._save_learned_worker()

        self.app.push_screen(ConfirmScreen(f"save the learned rule as the run's? {stale}", detail, yes="Save"),
                             answered)

    @work(thread=True, exclusive=True, group="reapply", name="save the learned rule", exit_on_error=False)
    def _save_learned_worker(self) -> None:
        from carclf_core.prefilter.scores import reapply

        try:
            self.post_message(TeachSaved(reapply(self.app.run_dir, rule="learned", labels="run", write=True)))
        except (CarclfError, OSError, ValueError, KeyError) as exc:
            self.post_message(TeachSaved(None, str(exc)))

    def on_teach_saved(self, message: TeachSaved) -> None:
        message.stop()
        if message.result is None:
            self.notice = message.error
        else:
            self.notice = (f"saved: the learned rule keeps {message.result['kept']:,} of {message.result['scored']:,}; "
                           "stages made from the old lists are stale: u (resume) brings them up to date")
        self._draw()

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
        if self.teach:
            self._save_learned()
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
        if self.teach:
            return  # teach mode shows its own pictures
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
