"""Shared fixtures: tiny real datasets made of real JPEG files."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Keep TensorFlow quiet and on the CPU in every test process (and the subprocesses they start).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

FIELDS_TAIL = "2019_37_17_188_20_4_72_56_187_27_AWD_5_4_4dr"


def car_name(make: str, model: str, image_id: str, tail: str = FIELDS_TAIL) -> str:
    """A Car Connection style file name with 17 fields."""
    return f"{make}_{model}_{tail}_{image_id}.jpg"


def jpeg_bytes(colour: tuple[int, int, int], size: tuple[int, int] = (48, 32), seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour, dtype=np.float32) + rng.normal(0, 8, (size[1], size[0], 3)), 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def make_dataset(root: Path, counts: dict[tuple[str, str], int], size: tuple[int, int] = (48, 32)) -> Path:
    """Write ``counts[(make, model)]`` real JPEGs per class, each class its own colour."""
    root.mkdir(parents=True, exist_ok=True)
    palette = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (200, 30, 200), (30, 200, 200)]
    for k, ((make, model), n) in enumerate(sorted(counts.items())):
        for i in range(n):
            name = car_name(make, model, f"{k:02d}{i:03d}")
            (root / name).write_bytes(jpeg_bytes(palette[k % len(palette)], size, seed=k * 1000 + i))
    return root


DECODABLE_ODD_IMAGES = ("png", "gif", "webp", "gray", "cmyk", "png16")


def demo_subset(folder: Path, makes: tuple[str, ...] = ("Audi_A4", "BMW_X5", "Volvo_V90"), per_make: int = 16) -> Path:
    """``folder`` made and filled with the first ``per_make`` demo photos of each of ``makes`` (real
    car pictures, few enough for a tiny real training)."""
    from carclf_core import demo

    source = demo.ensure_demo_data()
    folder.mkdir(parents=True)
    for make in makes:
        for path in sorted(source.glob(f"{make}_*.jpg"))[:per_make]:
            (folder / path.name).write_bytes(path.read_bytes())
    return folder


def odd_rgb() -> np.ndarray:
    """The 40x60 noise picture :func:`write_odd_images` saves in each format: its channels differ in
    mean (red ~127, green ~64, blue ~182), so a swapped or dropped channel shows; the 16-bit PNG is
    its red channel x 257."""
    noise = np.random.default_rng(0).uniform(0, 1, (40, 60, 3))
    return (noise * [255, 128, 146] + [0, 0, 109]).astype("uint8")


def write_odd_images(folder: Path) -> dict[str, Path]:
    """Images in awkward formats, all named ``.jpg``: the decodable ones, a TIFF and a 10k x 10k JPEG."""
    rgb = odd_rgb()
    cases = {
        "png": (Image.fromarray(rgb), "PNG"), "gif": (Image.fromarray(rgb).convert("P"), "GIF"),
        "webp": (Image.fromarray(rgb), "WEBP"), "gray": (Image.fromarray(rgb).convert("L"), "JPEG"),
        "cmyk": (Image.fromarray(rgb).convert("CMYK"), "JPEG"),
        "png16": (Image.fromarray(rgb[..., 0].astype("uint16") * 257), "PNG"),
        "tiff": (Image.fromarray(rgb), "TIFF"),
        "huge": (Image.new("L", (10_000, 10_000)), "JPEG"),
    }
    paths = {}
    for name, (image, fmt) in cases.items():
        buffer = io.BytesIO()
        image.save(buffer, format=fmt)
        paths[name] = folder / f"{name}.jpg"
        paths[name].write_bytes(buffer.getvalue())
    return paths


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """Four classes (with spaces and hyphens in names), imbalanced, 10-30 images each."""
    return make_dataset(tmp_path / "data", {("Audi", "A4"): 30, ("Land Rover", "Range Rover"): 20,
                                            ("Mercedes-Benz", "C-Class"): 14, ("Ford", "F-150"): 10})
