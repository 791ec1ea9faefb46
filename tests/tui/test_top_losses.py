"""The confusion tab's ``l`` (the test photos the model got most wrong, worst first) and ``b`` (a batch of
test photos with their predictions), as pictures with true class, prediction and probability, at 80x24
and 200x60, on a recorded 300-class run with real JPEGs."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from carclf_tui.screens.main import MainScreen
from carclf_tui.screens.pairs import PredictionsScreen
from carclf_tui.widgets.pictures import PictureCard

from .conftest import frozen_clock, make_app, pictures_done, rendered, wait_until
from .test_confusion_tab import open_confusion

pytestmark = pytest.mark.filterwarnings("ignore:Image.Image.getdata:DeprecationWarning")
SIZES = [(80, 24), (200, 60)]


def rows_of(run, name: str) -> list[dict[str, str]]:
    with open(Path(run.path) / "evaluate" / name, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def table_lines(screen) -> list[str]:
    table = screen.query_one("#pair-table")
    return ["".join(strip.text for strip in [table.render_line(y)]) for y in range(table.size.height)]


def captions(screen) -> list[str]:
    return [rendered(card.query_one(".picture-caption")) for card in screen.query(PictureCard)]


@pytest.mark.parametrize("size", SIZES)
async def test_l_shows_the_worst_test_photos_first_with_true_and_predicted_class(picture_run, size):
    rows = rows_of(picture_run, "predictions.csv")
    worst = sorted(rows, key=lambda r: -math.log(float(r["true_probability"])), reverse=True)
    app = make_app(picture_run, clock=frozen_clock)
    async with app.run_test(size=size) as pilot:
        view = await open_confusion(pilot)
        assert "l: worst photos · b: a batch" in rendered(view.query_one("#confusion-legend"))
        await pilot.press("l")
        await wait_until(pilot, lambda: isinstance(app.screen, PredictionsScreen) and pictures_done(app.screen),
                         timeout=30)
        screen = app.screen
        assert [r["path"] for r in screen.rows[:20]] == [r["path"] for r in worst[:20]]
        wrong = sum(r["correct"] == "False" for r in rows)
        assert all(not r["correct"] for r in screen.rows[:wrong])  # the wrong ones come first here
        title = rendered(screen.query_one("#pair-title"))
        assert title.startswith(f"the test photos most wrong, worst first · 200 shown, {wrong} wrong")
        first = captions(screen)[0]
        assert first.startswith(f"✗ {float(worst[0]['probability']):.2f} {worst[0]['predicted'][:5]}")
        assert f"true {worst[0]['label'][:5]}" in first
        cards = list(screen.query(PictureCard))
        assert cards[0].path == Path(picture_run.load_config().data.dir) / worst[0]["path"] and not cards[0].note
        assert len(cards) >= (1 if size[0] < 100 else 4)
        lines = table_lines(screen)
        assert all(len(line.rstrip()) <= size[0] for line in lines)
        assert worst[0]["path"][-12:] in "".join(lines)  # the file's end: where the names differ
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))


@pytest.mark.parametrize("size", SIZES)
async def test_b_shows_a_batch_of_test_photos_with_their_predictions(picture_run, size):
    batch = rows_of(picture_run, "batch_predictions.csv")
    app = make_app(picture_run, clock=frozen_clock)
    async with app.run_test(size=size) as pilot:
        await open_confusion(pilot)
        await pilot.press("b")
        await wait_until(pilot, lambda: isinstance(app.screen, PredictionsScreen) and pictures_done(app.screen),
                         timeout=30)
        screen = app.screen
        assert [r["path"] for r in screen.rows] == [r["path"] for r in batch]  # in the batch's order
        wrong = sum(r["correct"] == "False" for r in batch)
        assert 0 < wrong < len(batch)
        assert f"{len(batch)} shown, {wrong} wrong" in rendered(screen.query_one("#pair-title"))
        for caption, row in zip(captions(screen), batch, strict=False):
            assert caption.startswith(("✓ " if row["correct"] == "True" else "✗ ") + f"{float(row['probability']):.2f}")


async def test_without_an_evaluate_stage_the_listing_says_so(finished_run):
    app = make_app(finished_run, clock=frozen_clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_confusion(pilot)
        await pilot.press("b")
        await wait_until(pilot, lambda: isinstance(app.screen, PredictionsScreen) and app.screen.error)
        title = rendered(app.screen.query_one("#pair-title"))
        assert "batch_predictions.csv: not there; the evaluate stage writes it" in title
