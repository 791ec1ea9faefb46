"""The dashboard's tables: a table scrolled by code shows its scroll bar's thumb where the content is."""

from __future__ import annotations

import pytest
from textual.app import App

from carclf_tui.widgets.stages import StagesTable
from carclf_tui.widgets.training import EpochTable

from .conftest import wait_until


class Holder(App):
    CSS = "#scrolled { height: 8; }"

    def __init__(self, widget) -> None:
        super().__init__()
        self.widget = widget

    def compose(self):
        yield self.widget


def fill(widget) -> None:
    widget.add_column("a")
    for i in range(30):
        widget.add_row(str(i))


@pytest.mark.parametrize("kind", [EpochTable, StagesTable])
async def test_a_thumb_scrolled_before_its_bar_showed_follows_the_scroll(kind) -> None:
    """Textual moves the thumb only while the bar is shown: a table following its newest row in a tab
    not yet laid out (on a busy machine) kept its thumb at the top beside its last rows."""
    widget = kind(id="scrolled")
    async with Holder(widget).run_test(size=(40, 20)) as pilot:
        fill(widget)
        await wait_until(pilot, lambda: widget.show_vertical_scrollbar and widget.max_scroll_y > 10)
        widget.show_vertical_scrollbar = False  # the moment before the bar is laid out
        widget.scroll_y = 10
        await wait_until(pilot, lambda: widget.show_vertical_scrollbar)
        assert widget.vertical_scrollbar.position == widget.scroll_y == 10
