"""The one image reader: decodes an image file the way the input pipelines will, EXIF orientation applied.

Pillow only (no TensorFlow), so the index stage, the prefilter's broken-file reasons and any Python-side
reader share it. The tf.data pipelines decode with TensorFlow (:func:`carclf_core.inputs.read_rgb`) and
apply the same orientation from the same EXIF tag; ``tests/test_images.py`` holds the two readers to the
same pixels.

Orientation: cameras and phones store a photo as the sensor saw it and write how to turn it upright in
the EXIF tag 0x0112 of the JPEG. Both readers apply it to JPEG files (where cameras write it) and to no
other format, so they agree on every file.
"""

from __future__ import annotations

import dataclasses
import io
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from .errors import DatasetError
from .files import nonregular_reason
from .imagegate import MAX_PIXELS as MAX_PIXELS  # the limit lives with the gate; readers find it here too
from .imagegate import bomb_reason, pixel_limit_reason

OK = "ok"
REJECTED = "rejected"
# Formats the tf.data input pipeline can decode (tf.io.decode_image), whatever the file is named. MPO
# is a JPEG followed by more pictures (stereo cameras, some phones): TensorFlow decodes the first.
DECODABLE_FORMATS = {"JPEG", "MPO", "PNG", "GIF", "BMP", "WEBP"}
JPEG_FORMATS = {"JPEG", "MPO"}
MIN_SIDE = 8
"""Smallest width or height accepted, in pixels: below it there is no car to see."""
MAX_ASPECT = 20.0
"""Largest ratio of the longer side to the shorter. A 2000x4 strip scaled to fit the 320x212 model input
(``input.resize: pad``) would be 0 pixels high, which TensorFlow refuses; at 20:1 the short side keeps
at least 10 pixels for any input of 200 pixels or more, and no photo of a car is that narrow."""
ORIENTATION_TAG = 0x0112
HEAD_BYTES = 1 << 16
"""Bytes read for the EXIF orientation: the EXIF segment is at most 64 KiB, and comes first or after
a small JFIF segment; its first directory (where the tag is) is at its start."""
# Pillow's transposes for the EXIF orientations 2..8 (the table of ImageOps.exif_transpose); the
# export's contract lists them by name for clients.
TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
ANTIALIAS_SHRINK = 3
"""Resizing into the model's input is antialiased when a side shrinks more than this many times
(``3 x new side < old side``, in whole pixels). Plain bilinear reads only the pixels next to each
sample point: fine down to a third (the demo's 320-pixel pictures at 160 are a half), but a 4,000-pixel
photo scaled to 224 would be a sparse sample of it, aliased and noisy. Antialiasing costs about twice
the decode of a small picture, so only the big ones pay for it. Used by the tf.data pipelines
(``carclf_core.inputs``) and stated in the export's contract for clients."""
# JPEG markers without a length field (TEM, RST0-7); every other marker before the scan has one.
_STANDALONE_MARKERS = {0x01, *range(0xD0, 0xD8)}
_EOI = b"\xff\xd9"
_READ_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class ImageCheck:
    """What the index learns about one file.

    ``width`` and ``height`` are the picture as the pipelines see it, after the EXIF orientation (a
    portrait photo stored on its side reports its upright size).
    """

    status: str
    reason: str = ""
    width: int = 0
    height: int = 0
    format: str = ""
    bytes: int = 0
    orientation: int = 1
    """The EXIF orientation the readers apply, 1..8 (1: stored upright)."""


class ImageError(DatasetError):
    """An image the readers refuse; ``reason`` is the index's wording (``truncated image`` ...)."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def _tiff_orientation(tiff: bytes) -> int:
    """Tag 0x0112 of the first directory of an EXIF (TIFF) block; 1 when absent or invalid."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 1
    (directory,) = struct.unpack_from(order + "I", tiff, 4)
    if directory + 2 > len(tiff):
        return 1
    (count,) = struct.unpack_from(order + "H", tiff, directory)
    for entry in range(directory + 2, min(directory + 2 + 12 * count, len(tiff) - 11), 12):
        tag, kind = struct.unpack_from(order + "HH", tiff, entry)
        if tag == ORIENTATION_TAG:
            (value,) = struct.unpack_from(order + ("I" if kind == 4 else "H"), tiff, entry + 8)
            return value if 1 <= value <= 8 else 1
    return 1


def jpeg_orientation(head: bytes) -> int:
    """The EXIF orientation 1..8 of a JPEG from its first bytes; 1 for other formats or without one.

    Reads what Pillow's ``getexif`` reads (the first ``Exif`` APP1 segment's first directory), in
    a few microseconds: the tf.data pipelines get each file's orientation from it when they are built
    (:func:`orientations`), and :func:`read_image` and :func:`check_image` use it too, so every
    reader turns a photo the same way.

    Args:
        head: the file's first bytes; :data:`HEAD_BYTES` hold the EXIF block of any camera's file.
    """
    if head[:2] != b"\xff\xd8":
        return 1
    pos = 2
    while pos + 4 <= len(head) and head[pos] == 0xFF:
        marker = head[pos + 1]
        if marker in (0xDA, 0xD9):  # the picture starts: no EXIF before it
            break
        if marker == 0xFF:  # a fill byte before a marker
            pos += 1
            continue
        if marker in _STANDALONE_MARKERS:
            pos += 2
            continue
        size = int.from_bytes(head[pos + 2 : pos + 4], "big")
        if marker == 0xE1 and head[pos + 4 : pos + 10] == b"Exif\0\0":
            return _tiff_orientation(head[pos + 10 : pos + 2 + size])
        pos += 2 + size
    return 1


def orientation_of_file(path: str | Path) -> int:
    """:func:`jpeg_orientation` of a file; 1 when it cannot be read (its decode will say why)."""
    try:
        with open(path, "rb") as handle:
            return jpeg_orientation(handle.read(HEAD_BYTES))
    except OSError:
        return 1


def orientations(paths: Sequence[str | Path]) -> np.ndarray:
    """The EXIF orientation of each file (int32), from its first bytes: about 50 microseconds a file
    (a thread pool was slower: the parsing holds the GIL). The input pipelines are built with it,
    because parsing EXIF inside the TensorFlow graph cost more than the decode itself (0.67 against
    0.53 CPU ms an image)."""
    return np.fromiter((orientation_of_file(p) for p in paths), dtype=np.int32, count=len(paths))


def _jpeg_ends(stream: BinaryIO) -> bool:
    """Whether a JPEG's picture data is followed by its end-of-image marker.

    Walks the marker segments from the start (past an EXIF thumbnail, which has its own markers) to
    the first scan, then looks for the end marker after it, from the end of the file backwards (where
    it is, before any trailer). Pillow decodes a JPEG whose picture data was replaced by zeros without
    complaint, but TensorFlow's decoder fails on it: this is the rule that keeps such a file out.
    """
    pos = 2  # after the start-of-image marker
    stream.seek(pos)
    head = stream.read(4)
    while len(head) == 4 and head[0] == 0xFF:
        marker = head[1]
        if marker == 0xDA:  # start of scan
            break
        if marker == 0xFF:  # a fill byte before a marker
            pos += 1
        elif marker in _STANDALONE_MARKERS:
            pos += 2
        else:
            pos += 2 + int.from_bytes(head[2:4], "big")
        stream.seek(pos)
        head = stream.read(4)
    else:
        return False
    start, end = pos, stream.seek(0, io.SEEK_END)
    while end > start:
        low = max(start, end - _READ_CHUNK)
        stream.seek(low)
        # rfind: the marker is normally the last bytes; one byte past `end` catches a split marker
        if stream.read(end - low + 1).rfind(_EOI) >= 0:
            return True
        end = low
    return False


def _rejected(reason: str, size: int, image: Image.Image | None = None, fmt: str = "") -> ImageCheck:
    width, height = image.size if image is not None else (0, 0)
    return ImageCheck(REJECTED, reason, width, height, fmt, size)


def _open_checked(path: Path, data: bytes | None, pixels: bool) -> tuple[ImageCheck, Image.Image | None]:
    """Open, check and decode one image; the decoded Pillow image when it is usable.

    With ``pixels`` False (the check) a JPEG is decoded at 1/8 scale (Pillow's draft mode: libjpeg
    scales in the inverse DCT). That still decodes every byte of the compressed data, so it refuses
    exactly what a full decode refuses (on 300 damaged JPEGs: flipped bytes, cuts, zero fills, the
    two agreed on every one), at about 60 % of the cost (``bench/bench_index.py``).
    """
    odd = None if data is not None else nonregular_reason(path)
    if odd is not None and odd.startswith("not a regular file"):  # a FIFO would block the open forever
        return ImageCheck(REJECTED, odd), None
    try:
        size = len(data) if data is not None else path.stat().st_size
    except OSError as exc:
        return ImageCheck(REJECTED, f"cannot stat ({exc.strerror})"), None
    if size == 0:
        return ImageCheck(REJECTED, "empty file"), None
    image = None
    try:
        with open(path, "rb") if data is None else io.BytesIO(data) as stream:
            image = Image.open(stream)
            fmt = image.format or "?"
            width, height = image.size
            if fmt not in DECODABLE_FORMATS:
                accepted = ", ".join(sorted(DECODABLE_FORMATS))
                return _rejected(f"{fmt} image: the input pipeline decodes only {accepted}", size, image, fmt), None
            too_large = pixel_limit_reason(width, height)  # the one pixel gate, before any decode
            if too_large is not None:
                return _rejected(too_large, size, image, fmt), None
            if max(width, height) > MAX_ASPECT * min(width, height):
                aspect = f"{width}x{height} pixels, more than {MAX_ASPECT:g}:1"
                return _rejected(f"too narrow ({aspect})", size, image, fmt), None
            if min(width, height) < MIN_SIDE:
                return _rejected(
                    f"too small ({width}x{height} pixels, at least {MIN_SIDE} a side)", size, image, fmt
                ), None
            if not pixels and fmt in JPEG_FORMATS:
                image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
            image.load()
            orientation = 1
            if fmt in JPEG_FORMATS:
                if not _jpeg_ends(stream):
                    reason = "truncated image (no JPEG end marker after the picture data)"
                    return _rejected(reason, size, image, fmt), None
                stream.seek(0)
                orientation = jpeg_orientation(stream.read(HEAD_BYTES))
    except PermissionError as exc:
        return ImageCheck(REJECTED, f"unreadable ({exc.strerror})", bytes=size), None
    except Image.DecompressionBombError as exc:
        return ImageCheck(REJECTED, bomb_reason(exc), bytes=size), None
    except OSError as exc:
        text = str(exc)
        if "truncated" in text.lower() or "broken data stream" in text:
            return ImageCheck(REJECTED, "truncated image", bytes=size), None
        if "cannot identify image file" in text:
            return ImageCheck(REJECTED, "not an image", bytes=size), None
        return ImageCheck(REJECTED, f"cannot decode ({text})", bytes=size), None
    except (ValueError, SyntaxError) as exc:  # Pillow raises these for some malformed headers
        return ImageCheck(REJECTED, f"cannot decode ({exc})", bytes=size), None
    if orientation >= 5:  # turned a quarter: the upright picture is height x width
        width, height = height, width
    return ImageCheck(OK, "", width, height, fmt, size, orientation), image


def check_image(path: Path, data: bytes | None = None) -> ImageCheck:
    """Check an image the way the input pipelines will read it: a decode of all its data, plus rules.

    Rejected, with the reason: an empty or unreadable file, a format TensorFlow does not decode, more
    than :data:`MAX_PIXELS`, a side under :data:`MIN_SIDE` or an aspect beyond :data:`MAX_ASPECT`, a
    picture that does not decode, a JPEG without its end marker (which Pillow decodes but TensorFlow
    does not). JPEGs are decoded at 1/8 scale, which reads every compressed byte (see
    :func:`_open_checked`); the pixels themselves are :func:`read_image`'s job.

    Args:
        path: the image file (named in reasons; read when ``data`` is None).
        data: the file's bytes when the caller has already read them (the index reads each file once).

    Returns:
        The check; ``width``/``height`` are the upright picture's.
    """
    return _open_checked(Path(path), data, pixels=False)[0]


def read_image(path: Path, data: bytes | None = None) -> np.ndarray:
    """Read an image into uint8 RGB ``[height, width, 3]``, upright (EXIF orientation applied).

    The pixels the tf.data pipelines decode from the same file, up to the two JPEG decoders'
    rounding: 16-bit images are scaled into 0..255, grey, palette and CMYK images converted to RGB,
    transparency dropped.

    Args:
        path: the image file (read when ``data`` is None).
        data: the file's bytes, when already read.

    Raises:
        ImageError: the file is refused (``reason`` as the index words it).
    """
    check, image = _open_checked(Path(path), data, pixels=True)
    if image is None:
        raise ImageError(Path(path), check.reason)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit: TensorFlow keeps the high byte; Pillow's own conversion would clip at 255 (white)
        image = Image.fromarray((np.asarray(image).astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8))
    rgb = image.convert("RGB")
    if check.orientation in TRANSPOSE:
        rgb = rgb.transpose(TRANSPOSE[check.orientation])
    return np.asarray(rgb)


def broken_reason(path: Path) -> str:
    """Why a file the tf.data pipeline could not decode is broken: the index's reason when the image
    check now refuses it (it changed since), else that TensorFlow alone fails on it."""
    check = check_image(path)
    return check.reason if check.status == REJECTED else "Pillow decodes it but TensorFlow cannot"
