"""The prefilter panel's parts: progress and kept share, the threshold line, and the pictures on both
sides of the threshold being tried; in teach mode, the learned rule's lines (labels, what it would
keep, its cross-validated estimate)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from carclf_core import runstate as rs
from carclf_core.display import printable

from . import fmt
from .pictures import Picture, PictureStrip, ThumbnailCache


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def progress_text(state: rs.RunState) -> Text:
    stage = state.stages.get("prefilter")
    text = Text()
    if stage is None:
        return Text("the prefilter stage is not part of this run (yet)", style="dim")
    text.append("prefilter ", style="bold")
    text.append_text(fmt.safe(stage.status))
    if stage.total:
        text.append(f"  {stage.done:,} / {stage.total:,}  ")
        text.append(fmt.bar(stage.done / stage.total, 30))
    text.append("\n")
    if stage.rate is not None:
        text.append(f"speed {fmt.rate(stage.rate)}")
    if stage.status == rs.RUNNING and stage.eta_s is not None:
        text.append(f"  eta {fmt.duration(stage.eta_s)}")
    kept, scored = stage.info.get("kept"), stage.info.get("scored")
    if state.prefilter.kept is not None:
        kept, scored = state.prefilter.kept, state.prefilter.scored
    # ``info`` is free-form in the event log: only counts are shown as counts
    if _is_count(kept) and _is_count(scored) and scored:
        text.append(f"{'   ' if stage.rate is not None else ''}kept {kept:,} / {scored:,} ({fmt.share(kept, scored)})")
    return text


class PrefilterSummary(Static):
    """Progress, speed and kept share, then the threshold being tried and its kept count."""

    DEFAULT_CSS = """
    PrefilterSummary {
        height: auto;
        padding: 0 1;
    }
    """

    def show(self, state: rs.RunState, threshold: float | None, trial: dict | None, pending: bool,
             message: str = "", teach: TeachView | None = None) -> None:
        self._args = (state, threshold, trial, pending, message, teach)
        text = progress_text(state)
        if teach is not None:
            text.append("\n")
            text.append_text(teach_lines(teach, self.size.width - 2 if self.size.width else 78))
        elif threshold is not None:
            text.append("\n")
            text.append_text(threshold_line(threshold, state.prefilter.threshold, trial, pending,
                                            self.size.width - 2 if self.size.width else 78))
        if message:
            text.append("\n")
            text.append_text(fmt.safe(message, style="yellow"))
        if text != getattr(self, "_text", None):  # every state arrives here: send the terminal only changes
            self._text = text
            self.update(text)

    def on_resize(self) -> None:
        if getattr(self, "_args", None) is not None:
            self.show(*self._args)  # the threshold line is laid out for the width


def threshold_line(threshold: float, stored: float | None, trial: dict | None, pending: bool, width: int) -> Text:
    """``threshold 0.15 (run used 0.10) → kept 350 / 400 (87.5%)``, with the keys when they fit ``width``
    (at 80 columns they do not: the footer shows them); one line, never wrapped."""
    text = Text("threshold ", style="bold")
    text.append(f"{threshold:.2f}")
    if stored is not None and abs(threshold - stored) > 1e-9:
        text.append(f" (run used {stored:.2f})")
    if pending:
        text.append("  re-applying…", style="dim")
    elif trial is not None:
        text.append(f"  → kept {trial['kept']:,} / {trial['scored']:,} ({fmt.share(trial['kept'], trial['scored'])})",
                    style="bold")
    for hint in ("   [+/-] change  [w] save  [t] teach", "  [t] teach"):  # t is in the footer only in teach mode
        if text.cell_len + len(hint) <= width:
            text.append(hint, style="dim")
            break
    text.truncate(max(width, 1), overflow="ellipsis")
    return text


@dataclasses.dataclass(frozen=True)
class TeachView:
    """What teach mode shows of the learned rule now (made by the pane's worker)."""

    labelled_car: int = 0
    labelled_not: int = 0
    kept: int | None = None
    """Photos the learned rule would keep (None: no rule yet, the labels lack a kind)."""
    scored: int = 0
    estimate: dict | None = None
    """Cross-validated ``precision``, ``recall`` and their ``*_interval`` (None: too few labels)."""
    pending: bool = False
    """Labels sent, the rule not yet refitted on them."""
    queue: tuple[Example, ...] = ()
    boundary: tuple[Example, ...] = ()


def _interval(low_high: object) -> str:
    try:
        low, high = low_high  # type: ignore[misc]
        return f" ({float(low):.2f}-{float(high):.2f})"
    except (TypeError, ValueError):
        return ""


def teach_lines(view: TeachView, width: int) -> Text:
    """Two lines: the labels and what the learned rule would keep, then its cross-validated estimate;
    each cut to ``width``."""
    first = Text("learned rule ", style="bold")
    labels = view.labelled_car + view.labelled_not
    first.append(f"{labels} label{'s' if labels != 1 else ''} ({view.labelled_car} car, {view.labelled_not} not)")
    if view.pending:
        first.append("  learning…", style="dim")
    elif view.kept is not None:
        first.append(f"  → would keep {view.kept:,} / {view.scored:,} ({fmt.share(view.kept, view.scored)})",
                     style="bold")
    else:
        first.append("  label a car (y) and a non-car (n) to learn", style="dim")
    second = Text("cross-validated ", style="dim")
    estimate = view.estimate
    if estimate:
        second.append(f"precision {fmt.number(estimate.get('precision'), 2)}"
                      f"{_interval(estimate.get('precision_interval'))}", style="bold")
        second.append(f"  recall {fmt.number(estimate.get('recall'), 2)}{_interval(estimate.get('recall_interval'))}",
                      style="bold")
    else:
        second.append("estimate: after 2 labels of each kind", style="dim")
    for line in (first, second):
        line.no_wrap = True
        line.truncate(max(width, 1), overflow="ellipsis")
    return Text("\n").join([first, second])


EXAMPLES = 8
"""Files shown on each side of the threshold (as many as the terminal's width holds)."""


@dataclasses.dataclass(frozen=True)
class Example:
    """A file near the threshold: its path under data.dir, car probability and class label (None: unknown)."""

    path: str
    car_prob: float
    label: str | None = None
    tag: str = ""
    """What the user labelled it (teach mode), shown after the number."""
    row: int = -1
    """Its row in the stored scores (teach mode: what a label key labels)."""


def caption(example: Example) -> Text:
    """Two lines under a picture: the car probability and make, then the model; the file name when the
    label is unknown (so the make and model show, not the tail of a long file name)."""
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(fmt.number(example.car_prob, 3), style="bold")
    text.append(" ")
    if example.tag:
        text.append(f"={example.tag} ", style="italic")
    if example.label:
        make, _, model = printable(example.label).partition("_")
        text.append(f"{make}\n{model}")
    else:
        text.append("?\n", style="dim")
        text.append(printable(Path(example.path).name), style="dim")
    return text


class ExamplesView(Vertical):
    """Pictures of the files just above (kept) or at and below (rejected) the threshold being tried:
    where the rule is least sure, so where a threshold is judged."""

    DEFAULT_CSS = """
    ExamplesView {
        width: 1fr;
        height: auto;
        padding: 0 1;
    }
    ExamplesView > .examples-title {
        height: 1;
    }
    """

    def __init__(self, side: str, cache: ThumbnailCache, **kwargs) -> None:
        super().__init__(**kwargs)
        self.side = side
        self.cache = cache
        self.examples: tuple[Example, ...] = ()

    def compose(self) -> ComposeResult:
        yield Static(classes="examples-title")
        yield PictureStrip(self.cache, image_rows=self._rows())

    def _rows(self) -> int:
        # a fifth of the terminal's height: 4 rows at 24 lines (the histogram keeps its share), 10 from 50
        return min(10, max(3, self.app.size.height // 5))

    def on_resize(self) -> None:
        self.query_one(PictureStrip).set_rows(self._rows())

    def show(self, examples: tuple[Example, ...], threshold: float | None, data_dir: Path | None,
             note: str = "", title: Text | None = None) -> None:
        """Show ``examples`` (closest to the threshold first), read from under ``data_dir``, under
        ``title`` (default: the side and the threshold)."""
        if title is not None:
            title = title.copy()
        else:
            title = Text(self.side, style="bold")
        if threshold is not None and self.side in ("kept", "rejected"):
            title.append(f" · {'just above' if self.side == 'kept' else 'at or below'} {threshold:.2f}")
        if note:
            title.append(f"  {note}", style="dim")
        if not examples:
            title.append("  none", style="dim")
        # cut at the width it is drawn at, not the width now: a card shown before its first layout
        # (a tab mounted when first opened) is 0 wide here, and its title stayed cut to 10 cells
        title.no_wrap, title.overflow = True, "ellipsis"
        self.query_one(".examples-title", Static).update(title)
        self.examples = examples
        self.query_one(PictureStrip).show(
            [Picture(data_dir / e.path if data_dir is not None else None, caption(e)) for e in examples])
