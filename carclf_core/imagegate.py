"""The pixel gate: every reader asks it before decoding an image, from the image's header alone.

A decoder allocates what the header declares: a 24 KB PNG declaring 14000x14000 pixels becomes 588 MB
of RGB bytes, 2.4 GB as the float32 the pipelines work in, and several decode in parallel (3.7 GB
measured in ``predict`` before this gate). So the size is read from the header (Pillow's ``open``
parses it and decodes nothing) and a picture over :data:`MAX_PIXELS` is refused, naming the file,
before any decoder sees it: the index check and :func:`carclf_core.images.read_image`
(:func:`pixel_limit_reason` on the header they open), the tf.data pipelines of training, evaluation,
the prefilter and ``predict`` (:func:`admitted`, when they are built), and ``explain``
(:func:`check_pixels`).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import DatasetError
from .files import nonregular_reason

MAX_PIXELS = 40_000_000
"""Largest image any reader decodes, in pixels: a 10,000 x 10,000 photo costs 300 MB decoded (1.2 GB as
float32), and several decode in parallel; such a file is refused with its reason instead."""
# Pillow refuses headers over twice its own limit (about 179 MP) in ``open``; its message has the count.
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")
# Our limit reports large images; Pillow's warning about them (over about 89 MP) would only be noise.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def pixel_limit_reason(width: int, height: int) -> str | None:
    """``too large (14000x14000 pixels, limit 40,000,000)``, or None within :data:`MAX_PIXELS`."""
    if width * height > MAX_PIXELS:
        return f"too large ({width}x{height} pixels, limit {MAX_PIXELS:,})"
    return None


def bomb_reason(error: Exception) -> str:
    """The reason for a header Pillow itself refused as a decompression bomb, with its pixel count."""
    found = _BOMB_PIXELS.search(str(error))
    count = f"{int(found.group(1)):,} pixels" if found else "more pixels than Pillow opens"
    return f"too large ({count}, limit {MAX_PIXELS:,})"


def check_pixels(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` must not be decoded, from its header alone, or None when a decoder may try it.

    A file that is not a regular file (a FIFO would block the read) or declares more than
    :data:`MAX_PIXELS` is refused. A file whose header Pillow cannot read is let through: the
    decoder then fails on it with its own reason, as it did before the gate.
    """
    odd = nonregular_reason(path)
    if odd is not None and odd != "missing":
        return odd
    try:
        with Image.open(path) as image:  # parses the header; decodes nothing
            width, height = image.size
    except Image.DecompressionBombError as exc:
        return bomb_reason(exc)
    except (OSError, ValueError, SyntaxError, EOFError):
        return None
    return pixel_limit_reason(width, height)


def refuse_oversized(path: str | os.PathLike[str]) -> None:
    """Raise when :func:`check_pixels` refuses ``path``: for a reader of one photo (``explain``).

    Raises:
        DatasetError: ``PATH: too large (14000x14000 pixels, limit 40,000,000)`` and the like.
    """
    reason = check_pixels(path)
    if reason is not None:
        raise DatasetError(f"{Path(path)}: {reason}", "carclf decodes no image over the pixel limit")


def admitted(paths: Sequence[str | os.PathLike[str]]) -> np.ndarray:
    """Which of ``paths`` a pipeline may decode (bool per path): :func:`check_pixels` on each header,
    about 30 microseconds a file. A pipeline leaves the others out as it leaves out a file that fails
    to decode, and its caller names them with their reason."""
    return np.fromiter((check_pixels(p) is None for p in paths), dtype=bool, count=len(paths))
