"""The config view: the run's resolved ``config.yaml``, read-only."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static


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
        try:
            body = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            body = f"cannot read {path}: {exc}"
        text = Text(f"{path}  (read-only: the run's resolved configuration)\n\n", style="bold")
        for line in body.splitlines():
            comment = line.lstrip().startswith("#")
            text.append(line + "\n", style="dim" if comment else "")
        self.query_one("#config-text", Static).update(text)
