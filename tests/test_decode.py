"""The input pipeline's decoder against Pillow's own conversion, pixel by pixel.

The README promises that a grayscale, CMYK or 16-bit image (or a PNG, GIF or WebP named ``.jpg``)
is decoded to RGB 0..255. "Decoded to something bright" is not that promise: each case here compares
:func:`carclf_core.inputs.read_rgb` with Pillow's reference conversion of the same file, exactly for
lossless formats, and exactly for JPEG too: the pipeline decodes JPEGs with libjpeg's accurate
integer DCT, which Pillow uses (the export's contract names it, so a client decoding with Pillow gets
the same pixels). CMYK JPEGs are the exception: the two convert CMYK to RGB their own ways.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

tf = pytest.importorskip("tensorflow")  # a third-party package: only the cpu/gpu extras install it

from carclf_core import inputs  # noqa: E402

# A smooth gradient plus noise: a photo-like image (pure noise would be JPEG's worst case).
_Y, _X = np.mgrid[0:48, 0:64]
RGB = np.clip(np.stack([_X * 4, _Y * 5, 255 - _X * 2 - _Y * 2], axis=-1)
              + np.random.default_rng(7).normal(0, 12, (48, 64, 3)), 0, 255).astype(np.uint8)
GRAY16 = (np.random.default_rng(8).integers(0, 65536, (48, 64))).astype(np.uint16)


def _pillow_rgb(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def _sixteen_bit_to_8(image: Image.Image) -> np.ndarray:
    """A 16-bit grey image as 8-bit RGB: the high byte of each value, replicated. (Pillow's own
    ``convert("RGB")`` clips 16-bit values at 255, which would turn this image white.)"""
    high = (np.asarray(image).astype(np.uint32) >> 8).astype(np.uint8)
    return np.repeat(high[..., None], 3, axis=-1)


# name: (image, format written, reference conversion, largest difference allowed in levels). TensorFlow's
# default (fast) DCT was up to 6 levels off on the colour JPEG; the accurate one the pipeline uses is 0.
CASES = {
    "png": (lambda: Image.fromarray(RGB), "PNG", _pillow_rgb, 0),
    "png-rgba": (lambda: Image.fromarray(np.dstack([RGB, RGB[..., :1]])), "PNG", _pillow_rgb, 0),
    "png-gray": (lambda: Image.fromarray(RGB).convert("L"), "PNG", _pillow_rgb, 0),
    "png-palette": (lambda: Image.fromarray(RGB).convert("P"), "PNG", _pillow_rgb, 0),
    "png-16bit": (lambda: Image.fromarray(GRAY16), "PNG", _sixteen_bit_to_8, 0),
    "gif": (lambda: Image.fromarray(RGB).convert("P"), "GIF", _pillow_rgb, 0),
    "webp-lossless": (lambda: Image.fromarray(RGB), "WEBP", _pillow_rgb, 0),
    "jpeg": (lambda: Image.fromarray(RGB), "JPEG", _pillow_rgb, 0),
    "jpeg-gray": (lambda: Image.fromarray(RGB).convert("L"), "JPEG", _pillow_rgb, 0),
    "jpeg-cmyk": (lambda: Image.fromarray(RGB).convert("CMYK"), "JPEG", _pillow_rgb, 3),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_decoded_pixels_match_pillow(tmp_path: Path, case: str):
    make, fmt, reference, tolerance = CASES[case]
    buffer = io.BytesIO()
    make().save(buffer, format=fmt, **({"lossless": True} if fmt == "WEBP" else {"quality": 92} if fmt == "JPEG"
                                        else {}))
    path = tmp_path / f"{case}.jpg"  # named .jpg whatever it is, as in the wild
    path.write_bytes(buffer.getvalue())
    with Image.open(path) as image:
        expected = reference(image).astype(np.int16)
    got = inputs.read_rgb(tf.constant(str(path))).numpy()
    assert got.dtype == np.uint8 and got.shape == expected.shape == (48, 64, 3)
    difference = np.abs(got.astype(np.int16) - expected)
    assert difference.max() <= tolerance, f"{case}: up to {difference.max()} levels off (mean {difference.mean():.2f})"
    assert difference.mean() <= 1.5, f"{case}: {difference.mean():.2f} levels off on average"
    # and the image is not a flat or clipped one that would pass by accident
    assert expected.std() > 20 and 0.01 < (expected > 128).mean() < 0.99
