"""The config view: the run's resolved ``config.yaml``, read-only."""

from __future__ import annotations

import os
from pathlib import Path

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from carclf_core.display import printable
from carclf_core.errors import CarclfError
from carclf_core.files import open_regular

MAX_SHOWN_BYTES = 1 << 20
"""Most of the file shown (a config the runner accepts is at most 256 KiB)."""


class ConfigView(VerticalScroll):
    """Shows the resolved configuration the run was made with (the runner reads the same file)."""

    DEFAULT_CSS = """
    ConfigView {
        height: 1fr;
        padding: 0 1;
    }
    ConfigView > Static {
        height: auto;
    }
    """

    def compose(self):
        yield Static(id="config-text")

    def load(self, path: Path) -> None:
        # The run folder is outside input: a FIFO in place of the file must not hang the dashboard,
        # nor a folder or bad bytes crash it.
        try:
            with os.fdopen(open_regular(path), "rb") as handle:
                body = handle.read(MAX_SHOWN_BYTES).decode("utf-8", "replace")
        except (OSError, CarclfError) as exc:
            body = f"cannot read {path}: {exc}"
        text = Text(f"{printable(path)}  (read-only: the run's resolved configuration)\n\n", style="bold")
        for line in body.split("\n"):
            comment = line.lstrip().startswith("#")
            text.append(printable(line) + "\n", style="dim" if comment else "")
        self.query_one("#config-text", Static).update(text)
