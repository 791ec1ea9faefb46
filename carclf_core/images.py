"""The one image reader: checks an image file the way the input pipelines will read it.

Pillow only (no TensorFlow), so the index stage, the prefilter's broken-file reasons and the
dashboard share it.
"""

from __future__ import annotations

import dataclasses
import io
import warnings
from pathlib import Path

from PIL import Image

OK = "ok"
REJECTED = "rejected"
# Formats the tf.data input pipeline can decode (tf.io.decode_image), whatever the file is named.
DECODABLE_FORMATS = {"JPEG", "PNG", "GIF", "BMP", "WEBP"}
# Largest image the pipeline accepts: a 10,000 x 10,000 photo costs 300 MB decoded, and several decode
# in parallel; we refuse it with a reason rather than risk the training process's memory.
MAX_PIXELS = 40_000_000
# Our own MAX_PIXELS check reports large images; Pillow's warning about them would only be noise.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


@dataclasses.dataclass(frozen=True)
class ImageCheck:
    status: str
    reason: str = ""
    width: int = 0
    height: int = 0
    format: str = ""
    bytes: int = 0


def check_image(path: Path, data: bytes | None = None) -> ImageCheck:
    """Decode an image cheaply (JPEG draft mode scales in the DCT) to prove it is whole and usable.

    Args:
        path: the image file.
        data: its bytes, when the caller has read them already (the index hashes them), so the file
            is read once; None reads ``path``.
    """
    try:
        size = len(data) if data is not None else path.stat().st_size
    except OSError as exc:
        return ImageCheck(REJECTED, f"cannot stat ({exc.strerror})")
    if size == 0:
        return ImageCheck(REJECTED, "empty file")
    try:
        with Image.open(io.BytesIO(data) if data is not None else path) as image:
            fmt = image.format or "?"
            width, height = image.size
            if fmt not in DECODABLE_FORMATS:
                return ImageCheck(
                    REJECTED,
                    f"{fmt} image: the input pipeline decodes only {', '.join(sorted(DECODABLE_FORMATS))}",
                    width,
                    height,
                    fmt,
                    size,
                )
            if width * height > MAX_PIXELS:
                return ImageCheck(
                    REJECTED, f"too large ({width}x{height} pixels, limit {MAX_PIXELS:,})", width, height, fmt, size
                )
            if fmt == "JPEG":
                image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
            image.load()
    except PermissionError as exc:
        return ImageCheck(REJECTED, f"unreadable ({exc.strerror})", bytes=size)
    except Image.DecompressionBombError:
        return ImageCheck(REJECTED, "too large (decompression bomb guard)", bytes=size)
    except OSError as exc:
        text = str(exc)
        if "truncated" in text.lower() or "broken data stream" in text:
            return ImageCheck(REJECTED, "truncated image", bytes=size)
        if "cannot identify image file" in text:
            return ImageCheck(REJECTED, "not an image", bytes=size)
        return ImageCheck(REJECTED, f"cannot decode ({text})", bytes=size)
    except (ValueError, SyntaxError) as exc:  # Pillow raises these for some malformed headers
        return ImageCheck(REJECTED, f"cannot decode ({exc})", bytes=size)
    return ImageCheck(OK, "", width, height, fmt, size)
