"""Small text formatters shared by the widgets (durations, rates, counts)."""

from __future__ import annotations


def duration(seconds: float | None) -> str:
    """``8.2s``, ``3:05``, ``1:02:03``; empty for None."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def rate(value: float | None, unit: str = "img/s") -> str:
    if value is None:
        return "-"
    return f"{value:,.0f} {unit}" if value >= 100 else f"{value:,.1f} {unit}"


def number(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}"


def share(part: int | None, whole: int | None) -> str:
    if not part and part != 0 or not whole:
        return "-"
    return f"{100.0 * part / whole:.1f}%"


def bar(fraction: float, width: int, fill: str = "█", empty: str = "░") -> str:
    """A text bar that reads without colour (NO_COLOR): filled and empty cells differ in shape."""
    fraction = min(max(fraction, 0.0), 1.0)
    filled = int(round(fraction * width))
    return fill * filled + empty * (width - filled)
