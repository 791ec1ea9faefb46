"""The ASCII confusion heatmap and the confusion-matrix summaries (pure numpy, no TensorFlow)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from carclf_core import heatmap, metrics


def noisy_matrix(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = rng.poisson(0.2, (n, n))
    m[np.arange(n), np.arange(n)] += rng.integers(5, 30, n)
    return m


@pytest.mark.parametrize("n", [3, 30, 300])
@pytest.mark.parametrize("box", [(80, 24), (40, 12), (200, 60), (12, 5)])
def test_render_fits_its_box(n, box):
    width, height = box
    classes = [f"Make{i}_Model with a long name {i}" for i in range(n)]
    lines = heatmap.render(noisy_matrix(n), classes, width, height)
    assert 1 <= len(lines) <= height
    assert all(len(line) <= width for line in lines), [len(l) for l in lines]


def test_small_matrix_shows_every_class_and_the_legend():
    classes = ["Audi_A4", "BMW_3", "Ford_F-150"]
    m = np.array([[9, 0, 2], [0, 7, 0], [5, 0, 6]])
    lines = heatmap.render(m, classes, 60, 10)
    assert len(lines) == 5  # ruler, 3 rows, legend
    assert "0[" in lines[-1] and "]5+" in lines[-1]
    body = lines[1:4]
    assert body[0].startswith("1 Audi_A4") and body[2].startswith("3 Ford_F-150")
    grid = [line.split("|", 1)[1] for line in body]
    # clipped at 5: 9, 7, 6 and 5 share the densest shade; 2 is lighter; 0 is blank
    assert grid[0][0] == grid[1][1] == grid[2][0] == grid[2][2] == heatmap.SHADES[-1]
    assert grid[0][2] not in (" ", heatmap.SHADES[-1]) and grid[0][1] == " "
    assert not any("blocks" in line for line in lines)


def test_many_classes_are_aggregated_into_blocks_and_say_so():
    n = 300
    m = np.zeros((n, n), dtype=int)
    m[np.arange(n), np.arange(n)] = 10
    m[250, 10] = 4  # one confusion far off the diagonal
    lines = heatmap.render(m, [f"c{i}" for i in range(n)], 80, 24)
    note = [line for line in lines if "blocks" in line]
    assert note and "300 classes" in note[0]
    grid = [line.split("|", 1)[1] for line in lines[1:] if "|" in line]
    cells = len(grid)
    assert cells < n and all(len(row) == cells for row in grid)
    # the diagonal blocks are dense, the confusion shows in its block, the rest is blank
    assert all(grid[i][i] == heatmap.SHADES[-1] for i in range(cells))
    row, col = 250 * cells // n, 10 * cells // n
    assert grid[row][col] not in (" ", heatmap.SHADES[-1])
    blank = sum(ch == " " for r in grid for ch in r)
    assert blank == cells * cells - cells - 1


def test_most_confused_sorted_by_count_then_names():
    classes = ["a", "b", "c"]
    m = np.array([[5, 2, 3], [3, 4, 0], [1, 3, 9]])
    assert metrics.most_confused(m, classes) == [("a", "c", 3), ("b", "a", 3), ("c", "b", 3), ("a", "b", 2),
                                                 ("c", "a", 1)]
    assert metrics.most_confused(m, classes, k=2, min_count=3) == [("a", "c", 3), ("b", "a", 3)]


def test_per_class_metrics_by_hand():
    classes = ["a", "b", "c"]
    m = np.array([[5, 2, 3], [3, 4, 0], [0, 0, 0]])
    rows = metrics.per_class_metrics(m, classes)
    a, b, c = rows
    assert a[0] == "a" and a[1] == pytest.approx(5 / 8) and a[2] == pytest.approx(5 / 10)
    assert a[3] == pytest.approx(2 * (5 / 8) * 0.5 / (5 / 8 + 0.5)) and a[4] == 10
    assert b[1] == pytest.approx(4 / 6) and b[2] == pytest.approx(4 / 7) and b[4] == 7
    assert c[1:] == (0.0, 0.0, 0.0, 0)  # never predicted, no support: zero, not NaN
    summary = metrics.summary_metrics(m)
    assert summary["accuracy"] == pytest.approx(9 / 17)
    assert summary["balanced_accuracy"] == pytest.approx((0.5 + 4 / 7) / 2)  # classes with support only


def test_rejects_a_non_square_matrix_and_mismatched_names():
    with pytest.raises(ValueError, match="square"):
        heatmap.render(np.zeros((2, 3)), ["a", "b"], 40, 10)
    with pytest.raises(ValueError, match="class names"):
        heatmap.render(np.zeros((2, 2)), ["a"], 40, 10)


def test_heatmap_imports_no_tensorflow_or_ui():
    code = ("import sys, carclf_core.heatmap; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'textual', 'rich') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_block_shows_its_largest_count_not_its_sum():
    """Three scattered single confusions in one block look like one confusion of 1, exactly as an
    unaggregated cell of 1 does; a block holding a 4 looks like a 4. Summed, the first block would
    read as a 3 (a denser glyph) and every diagonal block would saturate the clip range."""
    n = 300
    m = np.zeros((n, n), dtype=int)
    m[np.arange(n), np.arange(n)] = 2  # light diagonal: a sum over a block's classes would be 20 or more
    m[200, 11], m[201, 12], m[202, 10] = 1, 1, 1  # three 1s in one block (rows 200-202, columns 10-12)
    m[100, 250] = 4
    lines = heatmap.render(m, [f"c{i}" for i in range(n)], 80, 24)
    grid = [line.split("|", 1)[1] for line in lines[1:] if "|" in line]
    cells = len(grid)
    assert cells <= n // 10  # at least ten classes a block

    def alone(count: int) -> str:
        """The glyph of ``count`` in a 3x3 matrix, where nothing is aggregated."""
        small = np.zeros((3, 3), dtype=int)
        small[0, 1] = count
        return heatmap.render(small, ["a", "b", "c"], 40, 10)[1].split("|", 1)[1][1]

    assert len({alone(1), alone(2), alone(3), alone(4)}) == 4  # four counts, four glyphs
    assert grid[200 * cells // n][10 * cells // n] == alone(1)
    assert grid[100 * cells // n][250 * cells // n] == alone(4)
    assert all(grid[i][i] == alone(2) for i in range(cells))


def test_levels_put_each_value_in_its_bin_and_nothing_in_level_zero():
    edges = heatmap.SHARE_EDGES
    values = np.array([0.0, 0.001, 0.02, 0.021, 0.05, 0.3, 0.5, 0.51, 1.0, -1.0])
    assert heatmap.levels(values, edges).tolist() == [0, 1, 1, 2, 2, 5, 5, 6, 6, 0]
    assert heatmap.level_names(edges, share=True) == ["≤2%", "2-5%", "5-10%", "10-25%", "25-50%", ">50%"]


def test_count_levels_scale_with_the_largest_count():
    assert heatmap.count_edges(40) == (1, 2, 4, 10, 20)
    assert heatmap.level_names((1, 2, 4, 10, 20), share=False, high=40) == ["1", "2", "3-4", "5-10", "11-20",
                                                                              "21-40"]
    assert heatmap.count_edges(3) == (1, 2)  # few counts: one level each
    assert heatmap.level_names((1, 2), share=False, high=3) == ["1", "2", "3"]
    assert heatmap.count_edges(1) == () and heatmap.levels(np.array([0, 1]), ()).tolist() == [0, 1]


def test_row_shares_and_rectangular_blocks():
    m = np.array([[3, 1, 0], [0, 0, 0], [1, 1, 2]])
    shares = heatmap.row_shares(m)
    assert shares[0].tolist() == [0.75, 0.25, 0.0] and shares[1].tolist() == [0.0, 0.0, 0.0]
    starts = heatmap.group_starts(7, 3)
    assert starts.tolist() == [0, 2, 4]
    big = np.arange(49).reshape(7, 7)
    assert heatmap.block_max(big, starts, np.array([0, 5])).tolist() == [[11, 13], [25, 27], [46, 48]]


def test_level_shades_run_from_blank_to_densest():
    for count in (1, 3, 6, 9):
        shades = heatmap.level_shades(count)
        assert len(shades) == count + 1 and shades[0] == " " and shades[-1] == heatmap.SHADES[-1]
        assert len(set(shades)) == count + 1
