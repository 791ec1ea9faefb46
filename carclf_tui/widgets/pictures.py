"""Pictures in the terminal: thumbnails of the run's images, decoded off the UI thread and cached.

``textual-image`` draws a picture with Kitty's graphics protocol or Sixel where the terminal speaks
one (through SSH and tmux too), with coloured half blocks elsewhere; without colour (NO_COLOR) the
cards use its grey shading characters instead, which read where colour is off. The package would ask
the terminal what it speaks when it is first imported, which works only before Textual owns the
terminal's input, and loads numpy and Pillow: :mod:`carclf_tui.termprobe` asks before the dashboard
starts, and :func:`load_textual_image` imports the package with the first picture, told the answers.

A :class:`PictureStrip` lays out as many :class:`PictureCard` s as its width holds and fills them from
a :class:`ThumbnailCache`: files are read with :func:`carclf_core.images.read_image` (EXIF orientation
applied, the reader every pipeline uses) in a thread worker, shrunk to :data:`THUMB_PX`, and kept in an
LRU, so moving a threshold back and forth or reopening a cell never decodes a file twice, and no key
waits on a decode.
"""

from __future__ import annotations

import dataclasses
import io
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Container, Horizontal, Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Static
from textual.worker import get_current_worker

from carclf_core.display import printable

from .. import termprobe

if TYPE_CHECKING:
    from PIL import Image as PILImage

THUMB_PX = 256
"""Longest side of a cached thumbnail in pixels: sharp enough for a card of 25 cells in Sixel or Kitty
graphics (10 pixels a cell), 200 KB of RGB at most."""
CACHE_SIZE = 256
"""Thumbnails kept (about 50 MB at most); the least recently shown goes first."""


_loading = threading.Lock()


def load_textual_image() -> ModuleType:
    """``textual_image.widget``, imported without letting it ask the terminal (Textual reads the
    answers by now, as keys): the cell size :mod:`carclf_tui.termprobe` learned is put in the cache its
    ``get_cell_size`` keeps, and during the import ``sys.__stdout__`` is no terminal, so the package
    asks nothing and makes no protocol its default (:func:`image_widget` picks the widget).

    Raises:
        Exception: the package is missing or cannot be loaded.
    """
    with _loading:
        if (loaded := sys.modules.get("textual_image.widget")) is not None:
            return loaded
        from textual_image import _terminal

        told = termprobe.graphics()
        if told is not None and told.cell_px is not None:
            _terminal.get_cell_size._result = _terminal.CellSize(*told.cell_px)  # type: ignore[attr-defined]
        stdout = sys.__stdout__
        sys.__stdout__ = io.StringIO()  # type: ignore[misc,assignment]
        try:
            import textual_image.widget
        finally:
            sys.__stdout__ = stdout  # type: ignore[misc]
        return textual_image.widget


def decode_thumbnail(path: Path, side: int = THUMB_PX) -> PILImage.Image:
    """The picture at ``path`` upright (EXIF applied) and shrunk to fit ``side`` x ``side`` pixels.

    Raises:
        carclf_core.images.ImageError: the file is refused (the reason as the index words it).
        OSError: the file cannot be read.
    """
    from PIL import Image as PILImage  # Pillow and numpy: loaded with the first picture

    from carclf_core.images import read_image

    image = PILImage.fromarray(read_image(path))
    image.thumbnail((side, side), PILImage.Resampling.LANCZOS)
    return image


class ThumbnailCache:
    """A thread-safe LRU of decoded thumbnails, keyed by file and its size and modification time (a
    file replaced under the same name is decoded again)."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._items: OrderedDict[tuple, PILImage.Image] = OrderedDict()
        self._lock = threading.Lock()
        self.decoded = 0
        """Files decoded so far (the tests' and benchmarks' measure of what the cache saved)."""

    def load(self, path: Path) -> PILImage.Image:
        """The thumbnail of ``path``, decoded on a miss (call from a worker thread).

        Raises:
            carclf_core.images.ImageError, OSError: as :func:`decode_thumbnail`.
        """
        stat = os.stat(path)
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        image = decode_thumbnail(path)
        with self._lock:
            self.decoded += 1
            self._items[key] = image
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return image


@dataclasses.dataclass(frozen=True)
class Picture:
    """One card's content: the file to show (None: a card without a picture) and its caption."""

    path: Path | None
    caption: Text


class ThumbnailReady(Message):
    """A strip's worker decoded (or failed to decode) the picture of card ``index``."""

    def __init__(self, index: int, path: Path, image: PILImage.Image | None, error: str = "") -> None:
        super().__init__()
        self.index = index
        self.path = path
        self.image = image
        self.error = error


def image_widget(no_color: bool) -> Widget:
    """An empty ``textual-image`` widget: the best protocol the terminal spoke, grey shading without
    colour; a note in its place when the package cannot be loaded."""
    try:
        widgets = load_textual_image()
    except Exception as exc:  # missing or broken: the rest of the tab still works
        return Static(Text(f"no pictures: textual-image unavailable ({type(exc).__name__})", style="dim"))
    if no_color:
        return widgets.UnicodeImage()
    # With no terminal asked (a screenshot, a test's pilot) coloured half blocks: what a colour terminal
    # without a graphics protocol shows
    protocol = told.protocol if (told := termprobe.graphics()) is not None else "halfcell"
    if protocol == "sixel":
        return widgets.SixelImage()
    return widgets.TGPImage() if protocol == "kitty" else widgets.HalfcellImage()


class PictureCard(Vertical):
    """A picture above its caption; says why when the file cannot be shown."""

    DEFAULT_CSS = """
    PictureCard {
        width: 1fr;
        height: auto;
        padding: 0 1 0 0;
    }
    PictureCard > .picture-box {
        width: 100%;
        height: 6;
        align: center middle;
    }
    PictureCard > .picture-box > * {
        width: auto;
        height: auto;
    }
    PictureCard > .picture-box > .picture-note {
        width: 100%;
    }
    PictureCard > .picture-caption {
        width: 100%;
        height: 2;
    }
    """

    def __init__(self, image_rows: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.image_rows = image_rows
        self.path: Path | None = None
        self.image: PILImage.Image | None = None
        """The thumbnail shown (None until it is decoded)."""
        self.note = ""
        """Why there is no picture (a file that cannot be read), shown in its place."""
        self._box: Container | None = None
        """The box the picture is drawn in, once composed."""

    def compose(self) -> ComposeResult:
        with Container(classes="picture-box") as box:
            box.styles.height = self.image_rows
            yield image_widget(self.app.no_color)
        self._box = box
        yield Static(classes="picture-caption")

    def show(self, picture: Picture) -> None:
        """Show ``picture``'s caption now and an empty box until its thumbnail arrives."""
        if picture.path != self.path:
            self.path, self.image, self.note = picture.path, None, ""
            self._draw_picture()
        self.query_one(".picture-caption", Static).update(picture.caption)

    def set_image(self, image: PILImage.Image | None, error: str = "") -> None:
        """The decoded thumbnail, or why there is none (shown in the picture's place)."""
        self.image, self.note = image, error
        self._draw_picture()

    def on_mount(self) -> None:
        self._draw_picture()  # a thumbnail that arrived before the card's children were mounted

    def _draw_picture(self) -> None:
        box = self._box
        if box is None or not box.children:
            return  # not composed yet: on_mount draws what is set by then
        box.children[0].image = self.image
        box.query(".picture-note").remove()
        if self.note:
            box.mount(Static(Text(printable(self.note), style="dim italic"), classes="picture-note"))


def card_width(image_rows: int) -> int:
    """Columns of a card whose picture is ``image_rows`` high: a 4:3 photo's width (cells are about
    1:2), and never under 18, so the caption has room for a make and a probability."""
    return max(18, round(image_rows * 8 / 3) + 1)


class PictureStrip(Horizontal):
    """A row of picture cards, as many as fit (see :func:`card_width`); pictures decoded in a thread.

    Args:
        cache: where thumbnails are kept (shared by the strips of one pane).
        image_rows: the pictures' height in rows.
    """

    DEFAULT_CSS = """
    PictureStrip {
        width: 1fr;
        height: auto;
    }
    """

    def __init__(self, cache: ThumbnailCache, image_rows: int = 6, **kwargs) -> None:
        super().__init__(**kwargs)
        self.cache = cache
        self.card_width = card_width(image_rows)
        self.image_rows = image_rows
        self.pictures: list[Picture] = []
        self._shown: list[Picture] | None = None

    def show(self, pictures: Sequence[Picture]) -> None:
        """Show the first of ``pictures`` that fit; the rest wait for a wider terminal."""
        self.pictures = list(pictures)
        self._layout()

    def set_rows(self, image_rows: int) -> None:
        """Make the pictures ``image_rows`` rows high (the pane gives them what the terminal has), and
        the cards as wide as a 4:3 photo of that height (a terminal cell is about twice as high as wide)."""
        if image_rows != self.image_rows:
            self.image_rows = image_rows
            self.card_width = card_width(image_rows)
            self._shown = None
            self.remove_children()
            self._layout()

    @property
    def settled(self) -> bool:
        """Every card the strip's width holds is there and shows its picture, or why it has none."""
        cards = list(self.query_children(PictureCard))
        wanted = self.pictures[: self.capacity()]
        return (len(cards) == len(wanted) and [c.path for c in cards] == [p.path for p in wanted]
                and all(c.image is not None or c.note or c.path is None for c in cards))

    def capacity(self) -> int:
        """How many cards fit the strip's width."""
        return max(1, (self.size.width or self.card_width) // self.card_width)

    def on_resize(self) -> None:
        self._layout()

    def _layout(self) -> None:
        # the strip's height is set before any picture arrives: the widgets around it keep their size
        # while the pictures are decoded, instead of jumping when they land
        self.styles.height = self.image_rows + 2 if self.pictures else 0
        shown = self.pictures[: self.capacity()]
        if shown == self._shown and len(self.children) == len(shown):
            return
        self._shown = shown
        cards = list(self.query_children(PictureCard))
        if len(cards) != len(shown):
            self.remove_children()
            cards = [PictureCard(self.image_rows) for _ in shown]
            self.mount_all(cards)
            self.call_after_refresh(self._fill, shown)  # the cards' own children exist after mounting
        else:
            self._fill(shown)

    def _fill(self, shown: list[Picture]) -> None:
        if shown != self._shown:
            return  # a newer layout is on its way
        cards = list(self.query_children(PictureCard))
        for card, picture in zip(cards, shown, strict=False):
            card.show(picture)
        self._decode([(i, p.path) for i, p in enumerate(shown) if p.path is not None])

    @work(thread=True, exclusive=True, group="thumbnails", name="decode pictures", exit_on_error=False)
    def _decode(self, wanted: list[tuple[int, Path]]) -> None:
        from carclf_core.errors import CarclfError

        worker = get_current_worker()
        for index, path in wanted:
            if worker.is_cancelled:  # a newer set of pictures replaced these
                return
            try:
                image, error = self.cache.load(path), ""
            except FileNotFoundError:
                image, error = None, "file not found (moved since the run?)"
            except (CarclfError, OSError, ValueError) as exc:
                image, error = None, f"cannot show it: {exc}"
            self.post_message(ThumbnailReady(index, path, image, error))

    def on_thumbnail_ready(self, message: ThumbnailReady) -> None:
        message.stop()
        cards = list(self.query_children(PictureCard))
        if message.index < len(cards) and cards[message.index].path == message.path:
            cards[message.index].set_image(message.image, message.error)
