"""The prefilter panel's text parts: progress and kept share, the threshold line, example files."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from carclf_core import runstate as rs
from carclf_core.display import printable

from . import fmt


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
    text.append(f"\nspeed {fmt.rate(stage.rate)}")
    if stage.status == rs.RUNNING and stage.eta_s is not None:
        text.append(f"  eta {fmt.duration(stage.eta_s)}")
    kept, scored = stage.info.get("kept"), stage.info.get("scored")
    if state.prefilter.kept is not None:
        kept, scored = state.prefilter.kept, state.prefilter.scored
    # ``info`` is free-form in the event log: only counts are shown as counts
    if _is_count(kept) and _is_count(scored) and scored:
        text.append(f"   kept {kept:,} / {scored:,} ({fmt.share(kept, scored)})")
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
        text = progress_text(state)
        stored = state.prefilter.threshold
        if threshold is not None:
            text.append("\nthreshold ", style="bold")
            text.append(f"{threshold:.2f}")
            if stored is not None and abs(threshold - stored) > 1e-9:
                text.append(f" (run used {stored:.2f})")
            if pending:
                text.append("  re-applying…", style="dim")
            elif trial is not None:
                text.append(f"  → kept {trial['kept']:,} / {trial['scored']:,} "
                            f"({fmt.share(trial['kept'], trial['scored'])})", style="bold")
            text.append("   [+/-] change  [w] save", style="dim")
        if message:
            text.append("\n")
            text.append_text(fmt.safe(message, style="yellow"))
        self.update(text)


class ExamplesView(Static):
    """Files just above and just below the threshold: where the rule is least sure."""

    DEFAULT_CSS = """
    ExamplesView {
        width: 1fr;
        height: auto;
        padding: 0 1;
    }
    """

    def __init__(self, side: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.side = side

    def show(self, state: rs.RunState) -> None:
        self._state = state
        self._redraw()

    def on_resize(self) -> None:
        self._redraw()

    def _redraw(self) -> None:
        state = getattr(self, "_state", None)
        if state is None:
            return
        pairs = state.prefilter.kept_examples if self.side == "kept" else state.prefilter.rejected_examples
        text = Text(f"{self.side} (near the threshold)\n", style="bold")
        if not pairs:
            text.append("none yet", style="dim")
        width = max(10, (self.size.width or 40) - 10)
        for path, prob in pairs:
            name = printable(path)  # a file name: escaped before it is cut to fit
            if len(name) > width:
                name = "…" + name[-(width - 1):]
            text.append(f"{fmt.number(prob, 3):>6}  {name}\n")
        self.update(text)
