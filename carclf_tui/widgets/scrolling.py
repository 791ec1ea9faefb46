"""What the dashboard's scrolled widgets share."""

from __future__ import annotations


class ThumbFollowsScroll:
    """Mixed into a Textual widget scrolled by code (a table following its newest row).

    Textual moves a vertical scroll bar's thumb only while the bar is shown: a widget scrolled while its
    bar was still hidden (rows added to a hidden tab, then the tab laid out on a busy machine) kept the
    thumb at the top beside scrolled-down content until the next scroll. The bar takes the position
    when it appears.
    """

    def watch_show_vertical_scrollbar(self, shown: bool) -> None:
        if shown:
            self.vertical_scrollbar.position = self.scroll_y  # type: ignore[attr-defined]
