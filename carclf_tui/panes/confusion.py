"""The confusion pane: the newest confusion matrix as a colour heatmap with a cell cursor, the
most-confused pairs or per-class metrics (``v``), the colour scale (``c``), the test images of a
cell (Enter), the test photos the model got most wrong (``l``) and a batch with its predictions (``b``)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widget import Widget

from carclf_core.display import printable
from carclf_core.runstate import RunState

from ..widgets.confusion import ConfusionHeatmap, ConfusionView
from ..widgets.pictures import ThumbnailCache
from .base import Pane


class ConfusionPane(Pane):
    """The newest matrix the train stage (validation sample) or the evaluate stage (test split) sent."""

    TAB = "confusion"
    LABEL = "3 Confusion"
    HELP = "arrows move the cell cursor"
    BINDINGS = [
        Binding("v", "cycle_view", "View", id="cycle-view", tooltip="heatmap, most confused, per class"),
        # out of the footer (the legend under the heatmap starts with "(c)"): at 80 columns ? and q need the room
        Binding("c", "toggle_scale", "Colour by row share or by count", show=False, id="colour-scale"),
        Binding("enter", "open", "Zoom into a block, or list a cell's test images", show=False, id="open-cell"),
        Binding("escape,backspace", "zoom_out", "Zoom back out", show=False, id="zoom-out"),
        # out of the footer too (the legend names them): at 80 columns it has no room
        Binding("l", "predictions('losses')", "Worst photos first", show=False, id="top-losses",
                tooltip="the test photos the model got most wrong, worst first"),
        Binding("b", "predictions('batch')", "A predicted batch", show=False, id="batch-predictions",
                tooltip="a batch of test photos with their predictions"),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.thumbnails = ThumbnailCache()
        """Pictures of the cells opened, kept while the dashboard runs (reopening a cell decodes nothing)."""
        self.predictions = None

    def compose(self) -> ComposeResult:
        yield ConfusionView(id="confusion-view")

    @property
    def view(self) -> ConfusionView:
        return self.query_one(ConfusionView)

    def focus_target(self) -> Widget | None:
        return self.view.main_widget()

    def show(self, state: RunState) -> None:
        self.view.show(state)  # redraws only for a new matrix, mode or size

    def action_cycle_view(self) -> None:
        """Switch to the next view of the matrix (the header shows which)."""
        self.view.cycle()
        self.view.main_widget().focus()

    def action_toggle_scale(self) -> None:
        """Colour the heatmap by the share of the true class's images, or by count."""
        self.view.toggle_scale()

    def action_open(self) -> None:
        """Zoom into the block under the cursor, or list the cell's test images."""
        if self.view.mode == "heatmap":
            self.view.heatmap.action_open()

    def action_zoom_out(self) -> None:
        if self.view.mode == "heatmap":
            self.view.heatmap.action_zoom_out()

    def action_predictions(self, kind: str) -> None:
        """The test photos with their predictions: the worst first (``losses``) or a batch (``batch``)."""
        from ..screens.pairs import Predictions, PredictionsScreen

        if self.predictions is None:
            self.predictions = Predictions()
        self.app.push_screen(PredictionsScreen(self.app.run_dir, kind, self.predictions, self.thumbnails))

    def on_confusion_heatmap_cell_chosen(self, message: ConfusionHeatmap.CellChosen) -> None:
        message.stop()
        from ..screens.pairs import PairScreen, Predictions

        confusion = self.view.confusion
        if confusion is None:
            return
        if not self.view.can_open:
            self.notify("images are listed for the test split's matrix, which the evaluate stage sends; this is "
                        f"the {printable(confusion.split)} sample's", severity="information", timeout=4, markup=False)
            return
        if self.predictions is None:
            self.predictions = Predictions()
        classes = confusion.classes
        self.app.push_screen(PairScreen(self.app.run_dir, classes[message.true], classes[message.predicted],
                                        (message.true, message.predicted), self.predictions, self.thumbnails))
