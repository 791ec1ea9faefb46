"""Small text formatters shared by the widgets (durations, rates, counts, untrusted text).

Every number here may be NaN or infinite (a diverging training, a hostile event log): it is shown as
such, never raised on. Every text from outside goes through :func:`safe`.
"""

from __future__ import annotations

import math

from rich.text import Text

from carclf_core.display import number as _number
from carclf_core.display import printable, printable_lines


def safe(value: object, style: str = "") -> Text:
    """Untrusted text (a file name, a summary, a message) as a Rich ``Text``: control characters and
    invisible ones made visible (:func:`carclf_core.display.printable`), never parsed as markup."""
    return Text(printable(value), style=style)


def safe_lines(value: object, style: str = "") -> Text:
    """Untrusted multi-line text (a traceback) as ``Text``, each line escaped, the lines kept."""
    return Text("\n".join(printable_lines(value)), style=style)


def _nonfinite(value: float) -> str | None:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return None


def duration(seconds: float | None) -> str:
    """``8.2s``, ``3:05``, ``1:02:03``; empty for None; ``NaN``/``inf`` as such."""
    if seconds is None:
        return ""
    special = _nonfinite(float(seconds))
    if special is not None:
        return special
    if seconds < 60:
        return f"{seconds:.1f}s"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def timer(seconds: float | None) -> str:
    """A time that ticks on screen (elapsed, an ETA) in whole seconds: ``8s``, ``3:05``, ``1:02:03``;
    ``-`` for None, ``NaN``/``inf`` as such. Tenths would change every redraw for nothing."""
    if seconds is None:
        return "-"
    special = _nonfinite(float(seconds))
    if special is not None:
        return special
    return f"{max(0, int(round(seconds)))}s" if seconds < 59.5 else duration(seconds)


def rate(value: float | None, unit: str = "img/s") -> str:
    if value is None:
        return "-"
    special = _nonfinite(float(value))
    if special is not None or abs(value) >= 1e9:
        return f"{special or _number(value)} {unit}".rstrip()
    return f"{value:,.0f} {unit}" if value >= 100 else f"{value:,.1f} {unit}"


def number(value: float | None, digits: int = 4) -> str:
    """``0.4321``; ``-`` for None, ``NaN`` and ``inf`` as such, huge values in e-notation."""
    return _number(value, digits)


def scientific(value: float | None, digits: int = 2) -> str:
    """``1.00e-04`` (a learning rate); ``-`` for None, ``NaN`` and ``inf`` as such."""
    if value is None:
        return "-"
    return _nonfinite(float(value)) or f"{value:.{digits}e}"


def share(part: int | None, whole: int | None) -> str:
    if not part and part != 0 or not whole:
        return "-"
    return f"{100.0 * part / whole:.1f}%"


def bar(fraction: float, width: int, fill: str = "█", empty: str = "░") -> str:
    """A text bar that reads without colour (NO_COLOR): filled and empty cells differ in shape."""
    fraction = min(max(fraction, 0.0), 1.0) if math.isfinite(fraction) else 0.0
    filled = int(round(fraction * width))
    return fill * filled + empty * (width - filled)


def age(then: float | None, now: float) -> str:
    """How long ago ``then`` was, in its largest unit: ``45s``, ``12m``, ``3h``, ``5d``; empty for None."""
    if then is None:
        return ""
    seconds = max(0.0, now - then)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


CONFUSION_VIEWS = ("heatmap", "most confused", "per class")
"""The confusion tab's views, in the order `v` cycles through them."""


def words(text: str, width: int) -> str:
    """``text`` in ``width`` columns, cut after a whole word with ``…`` (mid-word only when a single
    word is wider than half of it)."""
    if len(text) <= width:
        return text
    cut = text[: max(1, width - 1)]
    space = cut.rstrip(" ,;:·").rfind(" ")
    if space >= width // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:·") + "…"
