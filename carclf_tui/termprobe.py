"""What the terminal draws pictures with, asked once before Textual reads the keyboard.

``textual-image`` asks the terminal itself when it is imported: Sixel (in the device attributes),
then the Kitty graphics protocol, then the size of a cell in pixels, one question at a time with up
to 0.1 s for each answer, and it loads numpy and Pillow to do so. Done before the first frame, that
cost about 0.13 s of CPU and, in a terminal that answers none of the questions, 0.3 s of waiting.
Here the same questions go out at once, the device attributes last: every terminal answers those,
and in the order asked, so their answer means the others have come or never will. Nothing is
imported but the standard library, so the questions are asked beside the dashboard's own imports;
:mod:`carclf_tui.widgets.pictures` hands the answers to ``textual-image`` with the first picture.

Keys typed while the answers are awaited are read with them and lost (as with ``textual-image``'s
own questions): the wait is one round trip, 0.1 s at most.
"""

from __future__ import annotations

import dataclasses
import os
import re
import select
import struct
import threading
import time

TIMEOUT_S = 0.1
"""The longest wait for the answers (textual-image's for each of its questions)."""
CELL_SIZE_QUERY = "\x1b[16t"
"""xterm's window operation: the size of a cell in pixels, answered as ``ESC [ 6 ; height ; width t``."""
KITTY_QUERY = "\x1b_Gi=31,s=1,v=1,a=q,t=d,f=24;AAAA\x1b\\"
"""A Kitty graphics query (a 1x1 picture, not kept): answered ``ESC _ G i=31;OK ESC \\`` where it works."""
DEVICE_ATTRIBUTES_QUERY = "\x1b[c"
"""Primary device attributes, ``ESC [ ? 62 ; 4 ; ... c``: a 4 among them is Sixel."""
_DEVICE_ATTRIBUTES = re.compile(r"\x1b\[\?([0-9;]*)c")
_CELL_SIZE = re.compile(r"\x1b\[6;(\d+);(\d+)t")
_KITTY = re.compile(r"\x1b_G[^\x1b]*;OK\x1b\\")


@dataclasses.dataclass(frozen=True)
class Graphics:
    """What the terminal said it can draw."""

    protocol: str
    """``sixel``, ``kitty`` (its graphics protocol) or ``halfcell`` (coloured half blocks: no answer)."""
    cell_px: tuple[int, int] | None = None
    """A cell's width and height in pixels, when the terminal told."""


_graphics: Graphics | None = None


def graphics() -> Graphics | None:
    """The answers :func:`start` got; None when the terminal was not asked (not a terminal both ways)."""
    return _graphics


def start() -> threading.Thread:
    """Ask the terminal in a thread (it mostly waits); join it before Textual starts reading the keyboard."""
    thread = threading.Thread(target=_ask_and_keep, name="probe terminal graphics", daemon=True)
    thread.start()
    return thread


def _ask_and_keep() -> None:
    global _graphics
    if os.isatty(0) and os.isatty(1):
        try:
            _graphics = ask(0, 1)
        except Exception:  # a terminal that went away or refuses its modes: no pictures, never no dashboard
            _graphics = Graphics("halfcell")


def ask(stdin: int, stdout: int, timeout: float = TIMEOUT_S) -> Graphics:
    """Ask the terminal on ``stdin``/``stdout`` what it draws pictures with (see the module's docstring)."""
    import termios
    import tty

    cell = _cell_px_from_ioctl(stdout)
    questions = ("" if cell else CELL_SIZE_QUERY) + KITTY_QUERY + DEVICE_ATTRIBUTES_QUERY
    saved = termios.tcgetattr(stdin)
    tty.setcbreak(stdin, termios.TCSANOW)  # answers are read as they come, and not echoed
    try:
        os.write(stdout, questions.encode())
        answers = _read_until(stdin, _DEVICE_ATTRIBUTES, time.monotonic() + timeout)
    finally:
        termios.tcsetattr(stdin, termios.TCSANOW, saved)
    return parse(answers, cell)


def _cell_px_from_ioctl(fd: int) -> tuple[int, int] | None:
    import fcntl
    import termios

    try:
        rows, columns, width, height = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, bytes(8)))
    except OSError:
        return None
    if not (rows and columns and width and height):
        return None
    return width // columns, height // rows


def _read_until(fd: int, last: re.Pattern[str], deadline: float) -> str:
    # a byte at a time: a key typed after the last answer stays for Textual to read
    text = ""
    while not last.search(text):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        byte = os.read(fd, 1)
        if not byte:
            break
        text += byte.decode("latin-1")
    return text


def parse(answers: str, cell_px: tuple[int, int] | None = None) -> Graphics:
    """The :class:`Graphics` that ``answers`` (what the terminal sent back) tell, Sixel preferred over
    Kitty's protocol as ``textual-image`` prefers it; ``cell_px``: the cell size known already."""
    attributes = _DEVICE_ATTRIBUTES.search(answers)
    if attributes and "4" in attributes.group(1).split(";"):
        protocol = "sixel"
    elif _KITTY.search(answers):
        protocol = "kitty"
    else:
        protocol = "halfcell"
    if cell_px is None and (size := _CELL_SIZE.search(answers)):
        height, width = int(size.group(1)), int(size.group(2))
        cell_px = (width, height) if width and height else None
    return Graphics(protocol, cell_px)

