"""Confusion and prefilter tabs benchmark: the colour heatmap's cursor move and the pictures' cache.

Run: ``python bench/bench_confusion.py`` (a few seconds on 2 cores). Measures in the same process:

1. heatmap: drawing a 300-class matrix at 200x60 (the grid, 49 blocks a side) as the cursor moves
   (``confusion_grid.render_grid``), against the plain ASCII heatmap of the same matrix and box
   (``carclf_core.heatmap.render``, what the tab drew before): the ratio says what colour, counts and the
   cursor cost. Also the same with the matrix's layout and levels computed again (a new matrix or size).
2. pictures: a thumbnail from the cache, against decoding it (``read_image`` with EXIF, shrink to 256
   pixels) from a 1600x1200 JPEG, the size of a real photo.

Prints the figures and the ratios; nothing is asserted (timings depend on the machine).
"""

from __future__ import annotations

import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from carclf_core import heatmap  # noqa: E402
from carclf_tui.widgets import confusion  # noqa: E402, F401  (confusion_grid imports its names)
from carclf_tui.widgets import confusion_grid as cg  # noqa: E402
from carclf_tui.widgets.pictures import ThumbnailCache  # noqa: E402


def best_of(fn, repeat: int = 20) -> float:
    """The fastest of ``repeat`` calls, in seconds (the least disturbed by other work on the machine)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_heatmap(n: int = 300, width: int = 198, height: int = 50) -> None:
    rng = np.random.default_rng(0)
    counts = rng.poisson(0.2, (n, n))
    counts[np.arange(n), np.arange(n)] += rng.integers(5, 30, n)
    names = [f"Make{i}_Model line {i}" for i in range(n)]
    scale = cg.make_scale(counts, "row share")
    grid = cg.plan_grid(cg.Window((0, n), (0, n)), names, width, height)
    cells = cg.grid_cells(grid, counts, scale)
    ascii_s = best_of(lambda: heatmap.render(counts, names, width, height))
    move_s = best_of(lambda: cg.render_grid(grid, cells, names, scale.top, (3, 4), no_color=False))

    def relayout() -> None:
        new = cg.plan_grid(cg.Window((0, n), (0, n)), names, width, height)
        cg.render_grid(new, cg.grid_cells(new, counts, scale), names, scale.top, (3, 4), no_color=False)

    layout_s = best_of(lambda: (cg.make_scale(counts, "row share"), relayout()))
    print(f"heatmap {n} classes at {width}x{height} ({grid.rows} blocks a side):")
    print(f"  baseline ASCII render       {ascii_s * 1000:7.2f} ms")
    print(f"  cursor move (colour grid)   {move_s * 1000:7.2f} ms   ratio {move_s / ascii_s:5.2f}")
    print(f"  new matrix or size          {layout_s * 1000:7.2f} ms   ratio {layout_s / ascii_s:5.2f}")


def bench_pictures() -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "photo.jpg"
        rng = np.random.default_rng(1)
        pixels = rng.integers(0, 255, (1200, 1600, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        path.write_bytes(buffer.getvalue())
        cold = []
        for _ in range(5):
            cache = ThumbnailCache()
            start = time.perf_counter()
            cache.load(path)
            cold.append(time.perf_counter() - start)
        warm = best_of(lambda: cache.load(path), repeat=200)
    decode_s = min(cold)
    print("thumbnail of a 1600x1200 JPEG:")
    print(f"  baseline decode + shrink    {decode_s * 1000:7.2f} ms")
    print(f"  from the cache              {warm * 1000:7.3f} ms   ratio {warm / decode_s:7.4f}")


if __name__ == "__main__":
    bench_heatmap()
    bench_pictures()
