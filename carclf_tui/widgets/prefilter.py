"""The prefilter panel's parts: progress and kept share, the threshold line, and the pictures on both
sides of the threshold being tried."""

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
             message: str = "") -> None:
        self._args = (state, threshold, trial, pending, message)
        text = progress_text(state)
        if threshold is not None:
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
    hint = "   [+/-] change  [w] save"
    if text.cell_len + len(hint) <= width:
        text.append(hint, style="dim")
    text.truncate(max(width, 1), overflow="ellipsis")
    return text


EXAMPLES = 8
"""Files shown on each side of the threshold (as many as the terminal's width holds)."""


@dataclasses.dataclass(frozen=True)
class Example:
    """A file near the threshold: its path under data.dir, car probability and class label (None: unknown)."""

    path: str
    car_prob: float
    label: str | None = None


def caption(example: Example) -> Text:
    """Two lines under a picture: the car probability and make, then the model; the file name when the
    label is unknown (so the make and model show, not the tail of a long file name)."""
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(fmt.number(example.car_prob, 3), style="bold")
    text.append(" ")
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
             note: str = "") -> None:
        """Show ``examples`` (closest to the threshold first), read from under ``data_dir``."""
        title = Text(self.side, style="bold")
        if threshold is not None:
            title.append(f" · {'just above' if self.side == 'kept' else 'at or below'} {threshold:.2f}")
        if note:
            title.append(f"  {note}", style="dim")
        if not examples:
            title.append("  none", style="dim")
        title.truncate(max(self.size.width - 2, 10), overflow="ellipsis")
        self.query_one(".examples-title", Static).update(title)
        self.examples = examples
        self.query_one(PictureStrip).show(
            [Picture(data_dir / e.path if data_dir is not None else None, caption(e)) for e in examples])
