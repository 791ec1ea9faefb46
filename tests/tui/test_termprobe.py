"""The terminal's picture abilities: asked once before Textual reads the keyboard, all questions at
once, and handed to textual-image without it asking the terminal again."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from carclf_tui import termprobe
from carclf_tui.termprobe import Graphics

REPO = Path(__file__).resolve().parents[2]
KITTY_OK = "\x1b_Gi=31;OK\x1b\\"


@pytest.mark.parametrize("answers, expected", [
    ("\x1b[?62;4;22c", Graphics("sixel")),  # a 4 among the device attributes
    (f"\x1b[6;20;10t{KITTY_OK}\x1b[?62;22c", Graphics("kitty", (10, 20))),
    ("\x1b[?64;1;2;6;9;15;18;21;22c", Graphics("halfcell")),  # 4 is not in 64
    ("", Graphics("halfcell")),  # a terminal that answers nothing
    ("\x1b[6;0;0t\x1b[?1;2c", Graphics("halfcell")),  # a cell size it does not know
])
def test_the_answers_tell_the_protocol_and_the_cell_size(answers: str, expected: Graphics) -> None:
    assert termprobe.parse(answers) == expected


def _terminal(answers: bytes) -> tuple[int, int, threading.Thread, list[bytes]]:
    """A pseudo-terminal whose other end answers ``answers`` once the device attributes are asked."""
    master, slave = pty.openpty()
    asked: list[bytes] = []

    def play() -> None:
        data = b""
        while not data.endswith(termprobe.DEVICE_ATTRIBUTES_QUERY.encode()):
            data += os.read(master, 1024)
        asked.append(data)
        if answers:
            os.write(master, answers)

    player = threading.Thread(target=play, daemon=True)
    player.start()
    return master, slave, player, asked


def test_every_question_goes_out_at_once_and_the_device_attributes_end_the_wait() -> None:
    master, slave, player, asked = _terminal(f"\x1b[6;18;9t{KITTY_OK}\x1b[?62;22cq".encode())
    try:
        # a timeout the answers could not beat if the questions went one at a time, each waiting for its own
        assert termprobe.ask(slave, slave, timeout=30) == Graphics("kitty", (9, 18))
        player.join()
        questions = termprobe.CELL_SIZE_QUERY + termprobe.KITTY_QUERY + termprobe.DEVICE_ATTRIBUTES_QUERY
        assert asked == [questions.encode()]
        assert os.read(slave, 16) == b"q"  # a key typed after the answers is left for the dashboard
    finally:
        os.close(master)
        os.close(slave)


def test_a_terminal_that_answers_nothing_gets_half_blocks() -> None:
    master, slave, player, _ = _terminal(b"")
    try:
        assert termprobe.ask(slave, slave, timeout=0.2) == Graphics("halfcell")
    finally:
        os.close(master)
        os.close(slave)


def test_textual_image_is_loaded_told_the_answers_and_asks_the_terminal_nothing() -> None:
    """Loaded with the first picture, while Textual reads the keyboard: a question then would come
    back as keys. Here the process's stdin and stdout are a terminal that would see the question."""
    script = textwrap.dedent("""
        import sys
        from carclf_tui import termprobe
        termprobe._graphics = termprobe.Graphics("kitty", (9, 18))
        from carclf_tui.widgets.pictures import image_widget
        widget = image_widget(no_color=False)
        from textual_image._terminal import get_cell_size
        print(type(widget).__name__, *get_cell_size(), file=sys.stderr)
    """)
    master, slave = pty.openpty()
    try:
        done = subprocess.run([sys.executable, "-c", script], stdin=slave, stdout=slave, stderr=subprocess.PIPE,
                              text=True, timeout=120, cwd=REPO)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stderr.split() == ["TGPImage", "9", "18"]
        os.set_blocking(master, False)
        with pytest.raises(BlockingIOError):  # not a byte was written to the terminal
            os.read(master, 1024)
    finally:
        os.close(master)
        os.close(slave)
