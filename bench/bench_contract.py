"""How far a Pillow client's preparation is from the pipeline's, step by step, on real photos.

scikit-image's photos are saved as JPEG at three sizes (a third, as is, three times: 100 to 4,233
pixels), two qualities and two chroma subsamplings. Printed per photo: the largest difference in grey
levels between Pillow's decode and TensorFlow's with its default (fast) DCT and with the accurate
integer DCT the pipeline uses (``carclf_core.inputs.JPEG_DCT``); and between TensorFlow's resize and
the contract's client resize (Pillow's BILINEAR on float channels when antialiased, plain numpy
bilinear otherwise) at several input sizes. The README quotes the maxima.

    python bench/bench_contract.py          # ~1 min on 2 cores
"""

from __future__ import annotations

import sys
from pathlib import Path as _Path

sys.path.insert(0, str(_Path(__file__).resolve().parent.parent))  # the repository, not only an install

import io
import json

import numpy as np
import skimage.data
import tensorflow as tf
from PIL import Image

from carclf_core.inputs import JPEG_DCT

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina")
SIZES = ((212, 320), (106, 160), (48, 72), (1000, 1500), (100, 100), (37, 300))


def pillow_bilinear(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Pillow's BILINEAR resize of float channels (``F`` mode): antialiased when shrinking."""
    return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(pixels[..., c]), "F")
                                .resize((size[1], size[0]), Image.Resampling.BILINEAR)) for c in range(3)], -1)


def numpy_bilinear(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Plain bilinear, half-pixel centres, edges clamped (the README client's ``bilinear``)."""
    def axis(n_in: int, n_out: int):
        x = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
        low = np.floor(x)
        return np.clip(low, 0, n_in - 1).astype(int), np.clip(low + 1, 0, n_in - 1).astype(int), x - low

    y0, y1, fy = axis(pixels.shape[0], size[0])
    x0, x1, fx = axis(pixels.shape[1], size[1])
    fx, fy = fx[None, :, None], fy[:, None, None]
    top = pixels[y0][:, x0] * (1 - fx) + pixels[y0][:, x1] * fx
    bottom = pixels[y1][:, x0] * (1 - fx) + pixels[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


def main() -> None:
    worst = {"fast_dct": 0, "accurate_dct": 0, "antialiased": 0.0, "plain": 0.0}
    for name in PHOTOS:
        pixels = getattr(skimage.data, name)()[..., :3]
        row = {"photo": name, "fast_dct": 0, "accurate_dct": 0}
        for scale in (1 / 3, 1, 3):
            image = Image.fromarray(pixels)
            if scale != 1:
                size = (round(image.width * scale), round(image.height * scale))
                image = image.resize(size, Image.Resampling.LANCZOS)
            for quality, subsampling in ((90, 2), (75, 0)):
                buffer = io.BytesIO()
                image.save(buffer, "JPEG", quality=quality, subsampling=subsampling)
                data = buffer.getvalue()
                reference = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
                fast = tf.io.decode_jpeg(data, channels=3).numpy().astype(int)
                accurate = tf.io.decode_jpeg(data, channels=3, dct_method=JPEG_DCT).numpy().astype(int)
                row["fast_dct"] = max(row["fast_dct"], int(np.abs(fast - reference).max()))
                row["accurate_dct"] = max(row["accurate_dct"], int(np.abs(accurate - reference).max()))
        floats = pixels.astype(np.float32)
        row["antialiased"] = max(float(np.abs(tf.image.resize(floats, s, antialias=True).numpy()
                                              - pillow_bilinear(floats, s)).max()) for s in SIZES)
        row["plain"] = max(float(np.abs(tf.image.resize(floats, s).numpy() - numpy_bilinear(floats, s)).max())
                           for s in SIZES)
        for key in worst:
            worst[key] = max(worst[key], row[key])
        print(json.dumps(row))
    print(f"largest differences in grey levels: decode, TensorFlow's default DCT {worst['fast_dct']}, accurate "
          f"DCT {worst['accurate_dct']}; resize, antialiased {worst['antialiased']:.4f}, plain {worst['plain']:.4f}")


if __name__ == "__main__":
    main()
