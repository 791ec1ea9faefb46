"""Index images/s with this round's image check against round one's, measured in the same run.

The index stage checks every image (``images.check_image``): the decode, plus the JPEG end-marker
rule (Pillow decodes a JPEG whose picture data is zeros; TensorFlow does not), the size and aspect
rules and the EXIF orientation. Round one's check (``draft_check`` below, the baseline) decoded
JPEGs at 1/8 scale and nothing more. A third variant decodes every pixel at full size, to show what
the 1/8-scale decode saves (it refuses exactly the same files). Timed: ``dataset.build_index`` on
generated 320x212 JPEGs (the real dataset's size), each variant interleaved after a warm-up; medians
of images/s (wall) and of CPU milliseconds an image (all threads; steadier when other work shares
the cores), and their ratios to the baseline (images/s ratio 0.8: 20 % slower).

Every variant reads each file once and hashes it (SHA-256: the duplicate groups) before the check;
``check_no_hash`` is this round's check on the index without that, the check opening the file itself,
so ``check`` against it is what finding duplicates costs (target: at most ~20 %).

    python bench/bench_index.py [--images 2000] [--repeats 3] [--workers 8]
"""

from __future__ import annotations

import sys
from pathlib import Path as _Path

sys.path.insert(0, str(_Path(__file__).resolve().parent.parent))  # the repository, not only an install

import argparse
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from carclf_core import config as config_mod
from carclf_core import dataset, images


def draft_check(path: Path, data: bytes | None = None) -> images.ImageCheck:
    """The round-one check, as the baseline: JPEGs decoded at 1/8 scale (draft mode), no end-marker,
    size or aspect rule, no orientation."""
    size = len(data) if data is not None else path.stat().st_size
    try:
        with Image.open(io.BytesIO(data) if data is not None else path) as image:
            fmt = image.format or "?"
            width, height = image.size
            if fmt not in images.DECODABLE_FORMATS:
                return images.ImageCheck(images.REJECTED, f"{fmt} image", width, height, fmt, size)
            if width * height > images.MAX_PIXELS:
                return images.ImageCheck(images.REJECTED, "too large", width, height, fmt, size)
            if fmt == "JPEG":
                image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
            image.load()
    except (OSError, ValueError, SyntaxError) as exc:
        return images.ImageCheck(images.REJECTED, f"cannot decode ({exc})", bytes=size)
    return images.ImageCheck(images.OK, "", width, height, fmt, size)


def make_images(folder: Path, count: int) -> None:
    """``count`` 320x212 car-named JPEGs (quality 90, smooth content with noise, as photos compress)."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 160, 320, dtype=np.float32)[None, :, None]
    tail = "2019_37_17_188_20_4_72_56_187_27_AWD_5_4_4dr"
    for i in range(count):
        pixels = np.clip(ramp + rng.normal(60, 20, (212, 320, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"Make{i % 20}_Model_{tail}_{i:05d}.jpg", quality=90)


def full_decode_check(path: Path, data: bytes | None = None) -> images.ImageCheck:
    """This round's check with every pixel decoded at full size (what ``read_image`` decodes)."""
    return images._open_checked(Path(path), data, pixels=True)[0]


VARIANTS = {
    "round_one": draft_check,
    "check": images.check_image,
    "full_decode": full_decode_check,
    "check_no_hash": images.check_image,
}
UNHASHED = {"check_no_hash"}
"""Variants timed without the index's read-and-hash (``dataset._read_hashed`` made a no-op)."""


def timed(cfg: config_mod.DataConfig, check, hashing: bool = True) -> tuple[float, float]:
    """Images/s (wall) and CPU ms an image of one build_index with ``check`` as the image check; with
    ``hashing`` off, as the index was before duplicate groups (no hash, the check reads the file)."""
    original, read_hashed = dataset.check_image, dataset._read_hashed
    dataset.check_image = check
    if not hashing:
        dataset._read_hashed = lambda path: (None, "")
    try:
        started, cpu = time.perf_counter(), time.process_time()
        frame = dataset.build_index(cfg)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        dataset.check_image, dataset._read_hashed = original, read_hashed
    if (frame["status"] != images.OK).any():
        raise SystemExit(f"unexpected rejections: {frame.loc[frame['status'] != images.OK, 'reason'].unique()}")
    return len(frame) / seconds, 1000 * cpu / len(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=8, help="data.workers (index threads)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-index-") as tmp:
        folder = Path(tmp)
        make_images(folder, args.images)
        cfg = config_mod.from_dict({"data": {"dir": str(folder), "workers": args.workers}}).data
        timed(cfg, draft_check)  # page cache and imports warm, not measured
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}
        for _ in range(args.repeats):
            for name, check in VARIANTS.items():
                runs[name].append(timed(cfg, check, hashing=name not in UNHASHED))
    rate = {name: statistics.median(r for r, _ in values) for name, values in runs.items()}
    cpu = {name: statistics.median(c for _, c in values) for name, values in runs.items()}
    base = "round_one"
    print(
        json.dumps(
            {
                "images": args.images,
                "size": "320x212",
                "workers": args.workers,
                "cpus": os.cpu_count(),
                "img_s": {k: round(v, 1) for k, v in rate.items()},
                "cpu_ms_per_image": {k: round(v, 3) for k, v in cpu.items()},
                "ratio_img_s": {k: round(v / rate[base], 3) for k, v in rate.items() if k != base},
                "ratio_cpu": {k: round(cpu[base] / v, 3) for k, v in cpu.items() if k != base},
                "runs": {k: [[round(r, 1), round(c, 3)] for r, c in vs] for k, vs in runs.items()},
            }
        )
    )
    for name in ("check", "full_decode"):
        print(
            f"index: {name} {rate[name]:.0f} images/s vs round one's check {rate[base]:.0f}: ratio "
            f"{rate[name] / rate[base]:.2f}x ({cpu[name]:.2f} vs {cpu[base]:.2f} CPU ms an image: "
            f"{cpu[base] / cpu[name]:.2f}x)"
        )
    print(
        f"index: hashing every file costs check {rate['check']:.0f} images/s vs {rate['check_no_hash']:.0f} "
        f"without: ratio {rate['check'] / rate['check_no_hash']:.2f}x ({cpu['check']:.2f} vs "
        f"{cpu['check_no_hash']:.2f} CPU ms an image)"
    )


if __name__ == "__main__":
    main()
