"""Display-safe text: what the program shows of text that came from outside it.

File and folder names, config values, event lines and error messages can hold bytes a terminal obeys:
``ESC ]0;...`` sets the window title, ``ESC ]52;...`` writes the clipboard, ``ESC [2J`` clears the
screen, a newline starts a line that looks like the program's own, a right-to-left override reverses
what follows, a zero-width character hides. Everything carclf shows of such text (the dashboard, the
headless console, ``--plain`` output and so ``runner.log``) goes through :func:`printable` first, which
turns each of those characters into a visible escape (``\\x1b``, ``\\u202e``) and a newline into ``⏎``.
Stored data (``index.csv``, ``events.jsonl``) keeps the real names: only the display is escaped.

Pure Python with no imports beyond the standard library, so every layer (and the UI) may use it.
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any

NEWLINE_MARK = "\u23ce"
"""What a newline inside one line of text is shown as (⏎)."""

# Unicode categories a terminal does not draw as a glyph: controls (C0, DEL, C1), formatting
# characters (bidirectional overrides and isolates, zero-width space and joiners, soft hyphen,
# byte order mark, tags), line and paragraph separators, and the lone surrogates that
# ``os.fsdecode`` makes of undecodable bytes (writing one to a stream raises UnicodeEncodeError).
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# Letters and spaces a terminal draws as blank although they are not the ASCII space: Hangul fillers
# (U+3164 is a letter, so a label made of it looks empty and shifts its heatmap row), the Braille
# blank, no-break and other-width spaces, and the other default-ignorable marks that are not format
# characters (combining grapheme joiner, variation selectors, Khmer inherent vowels, Mongolian free
# variation selectors, musical formatting).
_BLANK = re.compile(
    "[\u00a0\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u2000-\u200a\u202f\u205f\u2800\u3000"
    "\u3164\ufe00-\ufe0f\uffa0\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0100-\U000e01ef]"
)
# The ASCII part, for the fast path of the common case (plain ASCII text).
_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _visible(char: str, newline: str) -> str:
    if char == "\n":
        return newline
    if char == "\t":
        return "\\t"
    return _escape(char)


def _hidden(char: str) -> bool:
    return unicodedata.category(char) in _HIDDEN_CATEGORIES or _BLANK.match(char) is not None


def printable(value: Any, newline: str = NEWLINE_MARK) -> str:
    """``value`` as one line of text that is safe to write to a terminal.

    Control characters (C0 including tab and carriage return, ESC, DEL, C1), bidirectional
    overrides, zero-width and other invisible formatting characters, line separators, lone
    surrogates, and letters or spaces that show blank (U+3164 HANGUL FILLER, no-break and other
    spaces than the ASCII one, variation selectors) become visible escapes (``\\x1b``, ``\\u202e``,
    ``\\udcff``, ``\\u3164``); a newline becomes ``newline``. Everything else, accented letters and
    other scripts included, is kept.

    Args:
        value: the untrusted text; anything else is converted with ``str`` first.
        newline: what a newline becomes (``⏎`` by default).

    Returns:
        The text with nothing a terminal would act on or hide.
    """
    text = value if isinstance(value, str) else str(value)
    if text.isascii():
        if _ASCII_CONTROL.search(text) is None:
            return text  # the common case: plain ASCII, nothing to escape
        return _ASCII_CONTROL.sub(lambda match: _visible(match.group(), newline), text)
    return "".join(_visible(char, newline) if _hidden(char) else char for char in text)


def printable_lines(value: Any) -> list[str]:
    """Multi-line untrusted text (a traceback, a log tail) as display-safe lines.

    Lines are split at newlines only (``\\r``, form feeds and Unicode line separators are escaped,
    not obeyed), and each line goes through :func:`printable`.
    """
    text = value if isinstance(value, str) else str(value)
    return [printable(line) for line in text.split("\n")]


def _char_cells(char: str) -> int:
    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0  # drawn on the letter before it (combining accents) or not at all
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def cell_width(text: str) -> int:
    """How many terminal cells ``text`` takes: 2 for a wide (East Asian) letter, 0 for a combining
    mark, 1 for the rest. The code-point count is wrong both ways: ``名前`` takes 4 cells, a decomposed
    ``S\\u030ckoda`` (six code points) 5. Give display-safe text (:func:`printable`): control
    characters are not measured.
    """
    if text.isascii():
        return len(text)
    return sum(_char_cells(char) for char in text)


def fit_cells(text: str, width: int, ellipsis: str = "") -> str:
    """``text`` cut to at most ``width`` terminal cells (never halfway into a wide letter, combining
    marks kept with their letter), ``ellipsis`` ending it when it was cut, and padded with spaces to
    exactly ``width`` cells: what a fixed-width column of a plain-text table needs."""
    if width <= 0:
        return ""
    if cell_width(text) <= width:
        return text + " " * (width - cell_width(text))
    room = width - cell_width(ellipsis)
    kept, used = [], 0
    for char in text:
        cells = _char_cells(char)
        if used + cells > room:
            break
        kept.append(char)
        used += cells
    cut = "".join(kept) + (ellipsis if room >= 0 else "")
    return cut + " " * (width - cell_width(cut))


def number(value: Any, digits: int = 4) -> str:
    """A measured number for display, whatever it is: ``0.4321``, ``NaN``, ``inf``, ``1.235e+12``.

    A diverging training reports NaN and infinite losses, and an event log may hold any number: the
    display shows them as such instead of raising (``int(nan)``) or printing hundreds of digits.

    Args:
        value: a number, None (shown as ``-``) or anything else (shown escaped).
        digits: digits after the point for ordinary values.
    """
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return printable(value)
    if isinstance(value, int) and abs(value) >= 10**15:
        return f"{value:.{max(digits - 1, 1)}e}" if abs(value) < 10**300 else "huge"
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if abs(value) >= 1e6:
        return f"{value:.{max(digits - 1, 1)}e}"
    return f"{value:.{digits}f}"


def counted(n: int, word: str, plural: str | None = None) -> str:
    """A count with its noun in the right number: ``1 class``, ``2 classes``, ``1,234 photos``.

    Args:
        n: the count.
        word: the singular noun.
        plural: the plural when it is not ``word`` + ``s`` (``class`` -> ``classes`` is known).
    """
    if n == 1:
        return f"1 {word}"
    many = plural or (word + "es" if word.endswith(("s", "x", "ch", "sh")) else word + "s")
    return f"{n:,} {many}"


def photos_files(photos: int, files: int) -> str:
    """``76 photos (80 files)``: distinct photos (copies count once) and the files that show them."""
    return f"{counted(photos, 'photo')} ({counted(files, 'file')})"
