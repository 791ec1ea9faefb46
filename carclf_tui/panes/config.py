"""The config pane: the run's resolved ``config.yaml``, read-only."""

from __future__ import annotations

from textual.app import ComposeResult

from ..widgets.config_view import ConfigView
from .base import Pane


class ConfigPane(Pane):
    """The configuration the run was made with (the runner reads the same file); it never changes."""

    TAB = "config"
    LABEL = "6 Config"
    FOCUS = "#config-view"

    def compose(self) -> ComposeResult:
        yield ConfigView(id="config-view")

    def on_mount(self) -> None:
        self.query_one(ConfigView).load(self.app.run_dir.config_path)
