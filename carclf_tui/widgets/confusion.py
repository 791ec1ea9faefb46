"""The confusion view: the ASCII heatmap, or the most-confused pairs, or per-class metrics.

The drawing itself is ``carclf_core.heatmap`` (pure, shared with the evaluate stage); it is imported
when first needed so the dashboard still opens, with a clear message, where it is missing.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from carclf_core import runstate as rs
from carclf_core.display import printable

MODES = ("heatmap", "most confused", "per class")


class ConfusionView(Static):
    """Shows the newest confusion matrix in one of :data:`MODES`, sized to the widget."""

    DEFAULT_CSS = """
    ConfusionView {
        width: 1fr;
        height: auto;
        min-height: 4;
        padding: 0 1;
    }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.mode = MODES[0]
        self._confusion: rs.Confusion | None = None
        self._key: tuple | None = None

    def cycle(self) -> str:
        """Switch to the next mode; returns its name."""
        self.mode = MODES[(MODES.index(self.mode) + 1) % len(MODES)]
        self._redraw()
        return self.mode

    def show(self, state: rs.RunState) -> None:
        self._confusion = state.confusion
        self._redraw()

    def on_resize(self) -> None:
        self._redraw()

    def _redraw(self) -> None:
        c = self._confusion
        width = max(20, (self.size.width or 78) - 2)
        height = max(8, (self.parent.size.height if self.parent else 20) - 3)
        key = (id(c), self.mode, width, height)
        if key == self._key:
            return
        self._key = key
        if c is None:
            self.update(Text("no confusion matrix yet (the train stage sends one after each epoch)", style="dim"))
            return
        title = Text(f"{self.mode} · epoch {c.epoch} · {c.split} sample of {c.sample:,} images · "
                     f"{len(c.classes)} classes   [v] next view\n", style="bold")
        try:
            body = self._body(c, width, height)
        except Exception as exc:  # a drawing bug must not take the dashboard down
            body = Text(f"could not draw the {self.mode} view: {type(exc).__name__}: {exc}", style="red")
        self.update(title + body)

    def _body(self, c: rs.Confusion, width: int, height: int) -> Text:
        from carclf_core import heatmap, metrics  # numpy: loaded when the tab first needs it

        # Class names come from folder and file names: escaped before they are laid out, so the
        # axis labels and tables measure what is shown (an escape sequence has no width otherwise).
        classes = [printable(name) for name in c.classes]
        if self.mode == "heatmap":
            return Text("\n".join(heatmap.render(c.matrix, classes, width, height)))
        if self.mode == "most confused":
            pairs = metrics.most_confused(c.matrix, classes, k=max(1, height - 1))
            if not pairs:
                return Text("no confusions in this sample", style="dim")
            lines = [f"{'count':>6}  true -> predicted"]
            lines += [f"{count:>6}  {true} -> {pred}" for true, pred, count in pairs]
            return Text("\n".join(lines))
        rows = metrics.per_class_metrics(c.matrix, classes)
        name_width = max(8, min(width - 40, max((len(str(r[0])) for r in rows), default=8)))
        lines = [f"{'class':<{name_width}} {'prec':>6} {'recall':>6} {'f1':>6} {'support':>7}"]
        for name, precision, recall, f1, support in rows:
            lines.append(f"{str(name)[:name_width]:<{name_width}} {precision:>6.3f} {recall:>6.3f} {f1:>6.3f} "
                         f"{int(support):>7}")
        return Text("\n".join(lines))
