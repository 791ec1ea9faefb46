"""A synthetic data set at scale: many small real JPEGs in many classes, in the real file-name format.

For measuring the stages whose cost grows with the number of files and classes (index, split, the
prefilter's score store, the confusion heatmap, the dashboard), not accuracy. Each picture is a small
JPEG (64x48) of its class's paint on a plain backdrop, with noise, so every file is a real image the
index checks and decodes, and no two pictures are alike except on purpose. Names carry the 17 Car
Connection fields (``Make_Model_Year_..._ID.jpg``; makes from the real list, body fields from the demo's
classes), and class sizes are imbalanced (from 1.5 to 0.5 times the mean), as in the scraped set.

Duplicate groups as the scraped set has them: :data:`COPY_SHARE` of the files are byte-identical copies
of another file under their own id, and :data:`CROSS_CLASS_SHARE` of those copies are filed under
another class (one photo, two labels). Generated once per size into the cache folder (beside the demo
data), in parallel processes, deterministically: the same sizes give the same bytes.

    python -m carclf_core.synthetic --images 300000 --classes 3000   # prints the folder
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image

from . import demo
from .files import build_once

SYNTHETIC_VERSION = 1
FULL_IMAGES, FULL_CLASSES = 300_000, 3_000
"""The size the scale targets are stated for."""
SMALL_IMAGES, SMALL_CLASSES = 20_000, 200
"""A quick look: the same file and class shape, a fifteenth of the files."""
WIDTH, HEIGHT = 64, 48
COPY_SHARE = 0.02
"""Share of the files that are byte-identical copies of another file."""
CROSS_CLASS_SHARE = 0.1
"""Share of the copies filed under another class than their original."""
TASK_IMAGES = 2_000
"""Files one worker task writes (the unit of progress)."""

MAKES = (
    "Acura", "Alfa Romeo", "Aston Martin", "Audi", "Bentley", "BMW", "Buick", "Cadillac", "Chevrolet",
    "Chrysler", "Dodge", "Ferrari", "FIAT", "Ford", "Genesis", "GMC", "Honda", "Hyundai", "INFINITI",
    "Jaguar", "Jeep", "Kia", "Lamborghini", "Land Rover", "Lexus", "Lincoln", "Maserati", "Mazda",
    "McLaren", "Mercedes-Benz", "MINI", "Mitsubishi", "Nissan", "Porsche", "Ram", "Rolls-Royce", "smart",
    "Subaru", "Tesla", "Toyota", "Volkswagen", "Volvo",
)  # fmt: skip
MODEL_STEMS = ("Series", "Sport", "Range", "Coupe", "Cross", "Tourer", "GT", "Eco", "Max", "City", "Van", "Line")


@dataclasses.dataclass(frozen=True)
class Plan:
    """Which class each file is named for and which picture it holds.

    Files are numbered 0..images-1 and sorted by class; file ``i`` is named for class ``label[i]`` and
    holds the picture of file ``source[i]``: its own (``source[i] == i``), or an original's, whose
    bytes it then repeats exactly.
    """

    classes: int
    label: np.ndarray
    """int32 [images]: the class in the file's name."""
    source: np.ndarray
    """int64 [images]: the file whose picture this file holds."""

    @property
    def images(self) -> int:
        return len(self.label)

    def summary(self) -> dict[str, int]:
        """Counts a generated folder must show: files, classes, copies (of them filed under another
        class) and photos with copies."""
        copies = self.source != np.arange(self.images)
        return {
            "images": self.images,
            "classes": self.classes,
            "copies": int(copies.sum()),
            "cross_class_copies": int((copies & (self.label != self.label[self.source])).sum()),
            "copied_photos": len(np.unique(self.source[copies])),
        }


def class_sizes(images: int, classes: int) -> np.ndarray:
    """Files per class: falling evenly from 1.5 to 0.5 times the mean, summing to ``images``."""
    weights = np.linspace(1.5, 0.5, classes) if classes > 1 else np.ones(1)
    sizes = np.maximum(np.floor(weights * images / weights.sum()).astype(np.int64), 1)
    short = images - int(sizes.sum())
    sizes[: max(short, 0)] += 1  # the rounding's few files go to the largest classes
    while sizes.sum() > images:  # only when many classes were raised to one file
        sizes[np.argmax(sizes)] -= 1
    return sizes


def make_plan(images: int, classes: int) -> Plan:
    """The deterministic plan of a data set of ``images`` files in ``classes`` classes.

    Raises:
        ValueError: fewer than one file a class.
    """
    if classes < 1 or images < classes:
        raise ValueError(f"--images {images:,} must be at least --classes {classes:,} (one file a class)")
    sizes = class_sizes(images, classes)
    label = np.repeat(np.arange(classes, dtype=np.int32), sizes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rng = np.random.default_rng([SYNTHETIC_VERSION, images, classes])
    source = np.arange(images, dtype=np.int64)
    n_copies = int(round(images * COPY_SHARE))
    is_copy = np.zeros(images, dtype=bool)
    # a class's first file stays an original, so every class has one to copy from
    candidates = np.setdiff1d(np.arange(images), starts)
    is_copy[rng.choice(candidates, size=min(n_copies, len(candidates)), replace=False)] = True
    originals = np.flatnonzero(~is_copy)  # sorted, so a class's originals are one slice of it
    first = np.searchsorted(originals, starts)
    last = np.searchsorted(originals, starts + sizes)
    copies = np.flatnonzero(is_copy)
    cross = np.zeros(images, dtype=bool)
    if classes > 1:
        cross[rng.choice(copies, size=int(round(len(copies) * CROSS_CLASS_SHARE)), replace=False)] = True
    for i in copies:
        c = label[i]
        if cross[i]:
            j = originals[rng.integers(len(originals))]
            while label[j] == c:
                j = originals[rng.integers(len(originals))]
        else:
            j = originals[first[c] + rng.integers(last[c] - first[c])]
        source[i] = j
    return Plan(classes, label, source)


def class_name(c: int) -> tuple[str, str]:
    """(make, model) of class ``c``: the makes in turn, each with numbered model lines."""
    m = c // len(MAKES)
    return MAKES[c % len(MAKES)], f"{MODEL_STEMS[m % len(MODEL_STEMS)]}-{m // len(MODEL_STEMS) + 1}"


def file_name(i: int, c: int) -> str:
    """File ``i``'s name in the 17-field format, for class ``c``: the demo's body fields, a model year
    that varies by file, and the file number as the id."""
    make, model = class_name(c)
    fields = demo.CLASSES[c % len(demo.CLASSES)].fields
    year = str(int(fields[0]) - i % 4)
    return "_".join((make, model, year, *fields[1:], f"{i:05x}")) + ".jpg"


def picture(i: int, c: int) -> bytes:
    """The JPEG bytes of file ``i``'s own picture, of class ``c``: the class's paint as a body on a
    backdrop, placed and lit per file, with noise (so no two pictures share their bytes)."""
    rng = np.random.default_rng([SYNTHETIC_VERSION, i])
    paint = (np.array([37, 91, 151]) * (c + 1) + np.array([50, 100, 150])) % 256
    rows = np.linspace(0.0, 1.0, HEIGHT, dtype=np.float32)[:, None, None]
    pixels = 200.0 - 60.0 * rows + np.zeros((HEIGHT, WIDTH, 3), dtype=np.float32)
    x0, y0 = int(rng.integers(2, WIDTH // 3)), int(rng.integers(HEIGHT // 4, HEIGHT // 2))
    pixels[y0 : y0 + HEIGHT // 3, x0 : x0 + WIDTH // 2] = paint * rng.uniform(0.8, 1.1)
    pixels += rng.normal(0.0, 8.0, pixels.shape).astype(np.float32)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def _write_files(
    target: str, ids: np.ndarray, labels: np.ndarray, sources: np.ndarray, source_labels: np.ndarray
) -> int:
    """One worker task: write files ``ids`` (named for ``labels``) with the pictures of ``sources``."""
    folder = Path(target)
    for i, c, s, sc in zip(ids.tolist(), labels.tolist(), sources.tolist(), source_labels.tolist(), strict=True):
        (folder / file_name(i, c)).write_bytes(picture(s, sc))
    return len(ids)


def generate(
    target: Path, plan: Plan, workers: int | None = None, progress: Callable[[int, int], None] | None = None
) -> dict[str, int]:
    """Write the files of ``plan`` into the new folder ``target``, in ``workers`` processes (default:
    one a CPU). ``progress`` hears (files written, files). Returns :meth:`Plan.summary`."""
    target.mkdir(parents=True)
    n = plan.images
    done = 0
    # spawned, not forked: the caller may hold threads (a test runner, TensorFlow) a fork would copy mid-lock
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1, mp_context=get_context("spawn")) as pool:
        futures = [
            pool.submit(
                _write_files,
                str(target),
                np.arange(start, min(start + TASK_IMAGES, n)),
                plan.label[start : start + TASK_IMAGES],
                plan.source[start : start + TASK_IMAGES],
                plan.label[plan.source[start : start + TASK_IMAGES]],
            )
            for start in range(0, n, TASK_IMAGES)
        ]
        for future in as_completed(futures):
            done += future.result()
            if progress is not None:
                progress(done, n)
    summary = plan.summary()
    (target / "synthetic.json").write_text(json.dumps(summary) + "\n", encoding="utf-8")
    return summary


def synthetic_dir(images: int, classes: int) -> Path:
    """The cache folder of the data set of that size (beside the demo data: ``$CARCLF_CACHE``)."""
    return demo.cache_dir().parent / f"synthetic-v{SYNTHETIC_VERSION}-{images}x{classes}"


def ensure_synthetic(
    images: int = FULL_IMAGES,
    classes: int = FULL_CLASSES,
    target: Path | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """The synthetic data set of ``images`` files in ``classes`` classes, generated on the first call.

    Args:
        images, classes: its size (defaults: the full 300,000 in 3,000 classes, 1-1.5 GB on disk).
        target: its folder; default :func:`synthetic_dir`. Generated atomically (a temporary folder
            renamed when whole, marked ``.complete``), so a killed generation is started over.
        workers: generating processes; default one a CPU.
        progress: hears (files written, files) while generating.

    Returns:
        The folder. Besides the pictures it holds ``synthetic.json`` (:meth:`Plan.summary`), which the
        index lists as skipped (not a ``.jpg``).
    """
    plan = make_plan(images, classes)
    folder = Path(target) if target is not None else synthetic_dir(images, classes)
    marker = f"carclf synthetic v{SYNTHETIC_VERSION}: {images} images, {classes} classes\n"
    return build_once(folder, lambda path: generate(path, plan, workers, progress), marker)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Generate (once) the synthetic scale data set; print its folder.")
    parser.add_argument("--images", type=int, default=FULL_IMAGES)
    parser.add_argument("--classes", type=int, default=FULL_CLASSES)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    print(ensure_synthetic(args.images, args.classes, workers=args.workers))


if __name__ == "__main__":
    main()
