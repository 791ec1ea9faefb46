"""The confusion tab: the colour heatmap and its scale, the cell cursor, zooming into blocks, the
views, and the drill-down into a cell's test images, on a recorded 300-class run with real JPEGs."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from rich.color import ColorSystem
from rich.style import Style

from carclf_core import events as ev
from carclf_core import heatmap
from carclf_tui.sample_run import make_run_dir, run_events, write_events
from carclf_tui.screens.main import MainScreen
from carclf_tui.screens.pairs import PairScreen
from carclf_tui.widgets import confusion_grid as cg
from carclf_tui.widgets.confusion import ConfusionView
from carclf_tui.widgets.pictures import PictureCard

from .conftest import frozen_clock, make_app, pictures_done, rendered, wait_until
from .test_app import show_tab

# textual-image reads pixels with a Pillow call deprecated for Pillow 14; nothing of ours to change
pytestmark = pytest.mark.filterwarnings("ignore:Image.Image.getdata:DeprecationWarning")

def predictions(run) -> list[dict[str, str]]:
    with open(Path(run.path) / "evaluate" / "predictions.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


async def open_confusion(pilot) -> ConfusionView:
    screen = pilot.app.screen
    await wait_until(pilot, lambda: screen.state.run_status == "done")
    await show_tab(pilot, "3")
    view = screen.query_one(ConfusionView)
    await wait_until(pilot, lambda: view.heatmap.grid is not None)
    return view


def backgrounds(text) -> set:
    """The background colours of a rendered heatmap."""
    return {Style.parse(str(span.style)).bgcolor if isinstance(span.style, str) else span.style.bgcolor
            for span in text.spans} - {None}


# --- the scale and the layout, without an app ---------------------------------------------------------------
def test_the_palette_stays_six_colours_in_256_and_in_16():
    """Rich downsamples each level's colour to the terminal's colours: every level keeps its own colour,
    and none becomes the terminal's black or default background."""
    styles = cg.level_styles(6)[1:]
    for system in (ColorSystem.EIGHT_BIT, ColorSystem.STANDARD):
        numbers = [style.bgcolor.downgrade(system).number for style in styles]
        assert len(set(numbers)) == 6, (system, numbers)
        assert 0 not in numbers and None not in numbers
    # text on a cell reads: light levels carry black counts, dark levels white ones
    assert [style.color.name for style in styles] == ["white"] * 4 + ["black"] * 2


def test_fewer_levels_still_end_on_the_strongest_colour():
    assert cg.palette_index(1, 1) == len(cg.PALETTE) - 1
    assert [cg.palette_index(level, 3) for level in (1, 2, 3)] == [0, 3, 5]


@pytest.mark.parametrize("n", [8, 300])
@pytest.mark.parametrize("size", [(80, 12), (198, 50), (40, 8)])
def test_the_grid_fits_its_box_and_fills_it(n, size):
    width, height = size
    names = [f"Make{i}_Model with a long name {i}" for i in range(n)]
    rng = np.random.default_rng(0)
    counts = rng.poisson(0.3, (n, n))
    counts[np.arange(n), np.arange(n)] += 20
    scale = cg.make_scale(counts, "row share")
    grid = cg.plan_grid(cg.Window((0, n), (0, n)), names, width, height)
    text = cg.render_grid(grid, cg.grid_cells(grid, counts, scale), names, scale.top, (0, 0), no_color=False)
    lines = text.plain.split("\n")
    assert len(lines) <= height and all(len(line) <= width for line in lines)
    used_w, used_h = grid.prefix_w + grid.cols * grid.cell_w, 1 + grid.rows * grid.cell_h
    if n == 8 and size == (198, 50):  # a few classes on a big screen: big cells, not a corner
        assert grid.cell_w >= 10 and grid.cell_h >= 5 and used_h >= height * 0.8
        assert grid.label_w == len(names[0])  # full class names
    if n == 300:
        assert grid.blocked and grid.rows == grid.cols == min(height - 1, grid.rows)
        assert used_w >= width // 2 or used_h >= height - 1


def test_blocks_show_their_largest_cell_and_where_the_diagonal_runs():
    n = 300
    counts = np.zeros((n, n), dtype=np.int64)
    counts[np.arange(n), np.arange(n)] = 10
    counts[250, 10] = 4
    scale = cg.make_scale(counts, "count")
    grid = cg.plan_grid(cg.Window((0, n), (0, n)), [f"c{i}" for i in range(n)], 80, 20)
    cells = cg.grid_cells(grid, counts, scale)
    row = int(np.searchsorted(grid.row_starts, 250, side="right") - 1)
    col = int(np.searchsorted(grid.col_starts, 10, side="right") - 1)
    assert cells.counts[row, col] == 4 and cells.levels[row, col] == heatmap.levels([4], scale.edges)[0]
    assert cells.diagonal.diagonal().all() and cells.diagonal.sum() >= grid.rows
    assert (cells.counts[~cells.diagonal] > 0).sum() == 1


def test_zooming_reaches_single_cells_and_the_arrows_pan():
    n = 300
    grid = cg.plan_grid(cg.Window((0, n), (0, n)), [f"c{i}" for i in range(n)], 80, 14)
    window = cg.zoom_window(grid, (12, 3), n, 14)
    assert window.rows[1] - window.rows[0] == 13 and window.rows[0] == grid.row_starts[12]
    zoomed = cg.plan_grid(window, [f"c{i}" for i in range(n)], 80, 14)
    assert not zoomed.blocked
    assert cg.pan(window, 1000, -1000, n) == cg.Window((n - 13, n), (0, 13))


def test_the_header_gives_a_validation_sample_its_interval_and_names_a_sink():
    from carclf_core import runstate as rs

    classes = tuple(f"c{i}" for i in range(10))
    m = np.diag(np.full(10, 8))
    m[1:6, 0] = 2  # five classes answered as c0: the dark column of a sink
    cells = tuple((int(i), int(j), int(m[i, j])) for i, j in zip(*np.nonzero(m), strict=True))
    confusion = rs.Confusion(epoch=3, classes=classes, cells=cells, split="val", sample=int(m.sum()))
    text = cg.header_text(confusion, m, {}, "heatmap", None, 200).plain
    # 80 of 90 right: Wilson's 95 % interval, computed from the sample itself
    assert "accuracy 0.889 [0.81, 0.94]" in text and "majority 0.111 (cleared)" in text
    assert text.split("\n")[-1] == "sink: c0 takes errors from 5 classes (100% of errors)"
    plain = cg.header_text(rs.Confusion(epoch=3, classes=classes, cells=tuple((i, i, 8) for i in range(10)),
                                        split="val", sample=80), np.diag(np.full(10, 8)), {}, "heatmap", None, 200)
    assert "sink" not in plain.plain


def test_the_legend_names_each_level_and_packs_into_the_width():
    counts = np.array([[9, 1, 0], [0, 5, 5], [2, 0, 30]])
    for kind, first, last in (("row share", "≤2%", ">50%"), ("count", "1", "16-30")):
        scale = cg.make_scale(counts, kind)
        text = cg.legend_text(scale, None, no_color=False, width=60)
        assert first in text.plain and last in text.plain
        assert all(len(line) <= 60 for line in text.plain.split("\n"))
    shaded = cg.legend_text(cg.make_scale(counts, "row share"), None, no_color=True, width=200).plain
    assert all(shade * 2 in shaded for shade in heatmap.level_shades(6)[1:])


# --- the tab, on a recorded 300-class run ------------------------------------------------------------------
async def test_300_classes_in_colour_with_the_test_numbers_in_the_header(picture_run):
    app = make_app(picture_run, clock=frozen_clock)
    async with app.run_test(size=(200, 60)) as pilot:
        view = await open_confusion(pilot)
        info = app.screen.state.stages["evaluate"].info
        header = rendered(view.query_one("#confusion-header"))
        assert "of the test split · 300 classes · 600 photos" in header
        for label, key in (("accuracy", "accuracy"), ("balanced", "balanced_accuracy"), ("top-5", "top5"),
                           ("chance", "chance"), ("majority", "majority_baseline"), ("top-5 chance", "top5_chance")):
            assert f"{label} {info[key]:.3f}" in header, label
        # each accuracy with its 95 % interval, and whether the accuracy's clears the majority baseline
        for key in ("accuracy", "balanced_accuracy", "top5"):
            assert f"{info[key]:.3f} [{info[key + '_ci'][0]:.2f}, {info[key + '_ci'][1]:.2f}]" in header, key
        assert f"majority {info['majority_baseline']:.3f} (cleared)" in header
        grid = view.heatmap.grid
        assert grid.blocked and grid.rows >= 45 and grid.prefix_w + grid.cols * grid.cell_w >= 140
        drawn = view.heatmap.render()
        colours = backgrounds(drawn)
        palette = {style.bgcolor for style in cg.level_styles(6)[1:]}
        assert colours <= palette and len(colours) >= 2  # the diagonal blocks and the confused ones
        assert "its largest of ~6" in rendered(view.query_one("#confusion-legend"))
        assert ">50%" in rendered(view.query_one("#confusion-legend"))
        await pilot.press("c")
        await pilot.pause()
        assert view.scale == "count" and "(c) images" in rendered(view.query_one("#confusion-legend"))


async def test_enter_zooms_into_a_block_then_opens_a_cells_images(picture_run):
    rows = [r for r in predictions(picture_run) if r["label"] != r["predicted"]]
    confused = rows[0]  # class 1's first picture, taken for class 2
    app = make_app(picture_run, clock=frozen_clock)
    async with app.run_test(size=(80, 24)) as pilot:
        view = await open_confusion(pilot)
        heatmap = view.heatmap
        assert heatmap.grid.blocked
        await pilot.press("enter")
        # a loaded machine may need more than one pause for a key's redraw: wait for what it shows
        await wait_until(pilot, lambda: heatmap.zoomed is not None)
        assert not heatmap.grid.blocked and heatmap.cursor == (0, 0)
        await pilot.press("right")
        cursor_line = f"predicted 2 {confused['predicted']}"
        await wait_until(pilot, lambda: cursor_line in rendered(view.query_one("#confusion-cursor")))
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, PairScreen) and app.screen.rows is not None, timeout=30)
        pair = app.screen
        assert (pair.true, pair.predicted) == (confused["label"], confused["predicted"])
        assert [row["path"] for row in pair.rows] == [confused["path"]]
        await wait_until(pilot, lambda: pictures_done(pair), timeout=30)
        card = pair.query_one(PictureCard)
        assert card.path == Path(picture_run.load_config().data.dir) / confused["path"] and not card.note
        assert f"{float(confused['probability']):.3f}" in card.query_one(".picture-caption").render().plain
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))
        assert heatmap.zoomed is not None  # still where it was
        await pilot.press("escape")
        await wait_until(pilot, lambda: heatmap.zoomed is None)
        assert heatmap.grid.blocked


async def test_a_correct_cells_pictures_are_upright_and_decoded_once(picture_run):
    """Class 1's diagonal cell holds the picture stored sideways with an EXIF orientation: it shows
    upright (landscape), and opening the cell again decodes nothing."""
    app = make_app(picture_run, clock=frozen_clock)
    async with app.run_test(size=(120, 40)) as pilot:
        view = await open_confusion(pilot)
        pane = app.screen.active_pane
        await pilot.press("enter")  # zoom: the cursor stays on the first class's diagonal cell
        await pilot.pause()
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, PairScreen) and pictures_done(app.screen))
        cards = list(app.screen.query(PictureCard))
        assert len(cards) == 1  # class 1 has one right answer: its other picture was taken for class 2
        assert cards[0].image.width > cards[0].image.height  # raw 48x64 on disk, upright 64x48
        decoded = pane.thumbnails.decoded
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, PairScreen) and pictures_done(app.screen))
        assert pane.thumbnails.decoded == decoded
        assert view.heatmap.zoomed is not None


async def test_v_switches_views_without_toasts_and_enter_on_a_pair_opens_it(picture_run):
    app = make_app(picture_run, clock=frozen_clock)
    async with app.run_test(size=(100, 30)) as pilot:
        view = await open_confusion(pilot)
        await pilot.press("v")
        await pilot.pause()
        pairs = view.query_one("#confusion-pairs")
        assert view.mode == "most confused" and app.focused is pairs and not app._notifications
        assert " most confused " in rendered(view.query_one("#confusion-header"))
        confused = sum(r["label"] != r["predicted"] for r in predictions(picture_run))
        assert pairs.row_count == confused  # every confusion of this run is a pair of its own
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, PairScreen) and app.screen.rows is not None)
        assert len(app.screen.rows) == 1 and app.screen.true != app.screen.predicted
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))
        await pilot.press("v")
        await pilot.pause()
        classes = view.query_one("#confusion-classes")
        assert view.mode == "per class" and app.focused is classes and classes.row_count == 300
        first = str(classes.get_row_at(0)[0])
        assert first.startswith("1 ")  # class 1 lost a picture to class 2: the worst recall first
        await pilot.press("v")
        await pilot.pause()
        assert view.mode == "heatmap" and app.focused is view.heatmap and not app._notifications


async def test_a_validation_matrix_says_where_images_come_from(finished_run):
    """The train stage's validation sample has no per-image predictions: Enter says so instead of
    opening an empty list."""
    app = make_app(finished_run, clock=frozen_clock)
    async with app.run_test(size=(100, 30)) as pilot:
        view = await open_confusion(pilot)
        assert not view.heatmap.grid.blocked and view.heatmap.grid.cell_w >= 4
        assert "of the val sample · 8 classes" in rendered(view.query_one("#confusion-header"))
        said: list[str] = []
        app.screen.active_pane.notify = lambda message, **kwargs: said.append(message)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen) and said and "test split" in said[0]


async def test_class_names_from_outside_are_shown_escaped(tmp_path):
    run = make_run_dir(tmp_path / "runs")
    classes = ("Audi\x1b]0;owned\x07_A4", "BMW\u202e_3", "[bold]Ford[/bold]_F-150")
    events = [e for e in run_events(epochs=2, steps=4) if not isinstance(e, ev.ConfusionReady)]
    matrix = ((5, 1, 0), (0, 4, 2), (1, 0, 6))
    events.insert(-2, ev.ConfusionReady(t=1.0, epoch=2, classes=classes, matrix=matrix, split="val", sample=19))
    write_events(run, events)
    app = make_app(run, clock=frozen_clock)
    async with app.run_test(size=(100, 30)) as pilot:
        view = await open_confusion(pilot)
        drawn = view.heatmap.render().plain
        assert "Audi\\x1b]0;owned\\x07_A4" in drawn and "BMW\\u202e_3" in drawn and "[bold]Ford" in drawn
        assert "\x1b" not in drawn and "\u202e" not in drawn
        await pilot.press("v")
        await pilot.pause()
        row = [str(cell) for cell in view.query_one("#confusion-pairs").get_row_at(0)]
        assert all("\x1b" not in cell for cell in row)


async def test_no_color_draws_shades_instead_of_colours(picture_run, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(picture_run, clock=frozen_clock)
    assert app.no_color
    async with app.run_test(size=(80, 24)) as pilot:
        view = await open_confusion(pilot)
        drawn = view.heatmap.render()
        assert not backgrounds(drawn)
        assert heatmap.level_shades(6)[-1] in drawn.plain  # the diagonal blocks: over 50 % of their row
        legend = rendered(view.query_one("#confusion-legend"))
        assert "@@ >50%" in legend and ":: ≤2%" in legend


def test_the_run_writer_made_what_the_tab_reads(picture_run):
    """The recorded run is self-consistent: every prediction's file exists under data.dir, and the test
    matrix in the event log counts exactly the predictions."""
    rows = predictions(picture_run)
    data_dir = Path(picture_run.load_config().data.dir)
    assert len(rows) == 600 and all((data_dir / r["path"]).is_file() for r in rows)
    confusion = [ev.from_dict(json.loads(line)) for line in Path(picture_run.events_path).read_text().splitlines()
                 if '"confusion"' in line]
    names = list(confusion[-1].classes)
    matrix = np.zeros((300, 300), dtype=int)
    for r in rows:
        matrix[names.index(r["label"]), names.index(r["predicted"])] += 1
    assert matrix.tolist() == confusion[-1].counts().tolist()
    assert dataclasses.asdict(confusion[-1])["split"] == "test"


def test_wide_characters_in_class_names_keep_the_grid_aligned():
    """Names in scripts whose characters take two columns are measured and cut by columns, not characters."""
    from rich.cells import cell_len

    names = ["丰田_卡罗拉 (Toyota Corolla)", "Audi_A4", "本田_雅阁"]
    counts = np.array([[3, 1, 0], [0, 4, 0], [1, 0, 2]])
    scale = cg.make_scale(counts, "count")
    for width in (30, 80):
        grid = cg.plan_grid(cg.Window((0, 3), (0, 3)), names, width, 8)
        lines = cg.render_grid(grid, cg.grid_cells(grid, counts, scale), names, scale.top, None, False).plain
        assert len({cell_len(line) for line in lines.split("\n")}) == 1
        assert len({cell_len(line[: line.index("│")]) for line in lines.split("\n")}) == 1  # one column
