"""The prefilter tab: pictures of the files on both sides of the threshold being tried, labelled
with their make and model, decoded off the UI thread; the threshold line and the footer at 80x24."""

from __future__ import annotations

import csv
import shutil
import threading
from pathlib import Path

import pytest
from textual.widgets import Footer

from carclf_core.runs import RunDir
from carclf_tui.panes import PrefilterPane
from carclf_tui.widgets import pictures
from carclf_tui.widgets.pictures import PictureCard, PictureStrip
from carclf_tui.widgets.prefilter import ExamplesView, PrefilterSummary

from .conftest import frozen_clock, make_app, pictures_done, rendered, wait_until
from .test_app import show_tab

# textual-image reads pixels with a Pillow call deprecated for Pillow 14; nothing of ours to change
pytestmark = pytest.mark.filterwarnings("ignore:Image.Image.getdata:DeprecationWarning")

def scores(run) -> list[tuple[str, float]]:
    with open(Path(run.path) / "prefilter" / "scores.csv", newline="", encoding="utf-8") as handle:
        return [(row["path"], float(row["car_prob"])) for row in csv.DictReader(handle)]


def labels(run) -> dict[str, str]:
    with open(run.index_csv, newline="", encoding="utf-8") as handle:
        return {row["path"]: row["label"] for row in csv.DictReader(handle)}


def nearest(run, threshold: float) -> tuple[list[str], list[str]]:
    """The files nearest ``threshold`` on each side, worked out here from scores.csv by hand."""
    rows = scores(run)
    above = sorted((p, path) for path, p in rows if p > threshold)
    below = sorted(((p, path) for path, p in rows if p <= threshold), key=lambda x: -x[0])
    return [path for _, path in above], [path for _, path in below]


async def open_prefilter(pilot, threshold: float) -> PrefilterPane:
    screen = pilot.app.screen
    await wait_until(pilot, lambda: screen.state.run_status == "done")
    await show_tab(pilot, "4")
    pane = screen.query_one(PrefilterPane)
    await wait_until(pilot, lambda: pane.examples_threshold == threshold and pictures_done(pane))
    return pane


def shown(pane: PrefilterPane, side: str) -> list[str]:
    """The files whose pictures the ``side`` strip shows, in order."""
    strip = pane.query_one(f"#examples-{side}").query_one(PictureStrip)
    data_dir = Path(pane.app.run_dir.load_config().data.dir)
    return [str(card.path.relative_to(data_dir)) for card in strip.query(PictureCard)]


async def test_the_pictures_follow_the_threshold_being_tried(picture_run):
    app = make_app(picture_run, clock=frozen_clock)
    async with app.run_test(size=(200, 60)) as pilot:
        pane = await open_prefilter(pilot, 0.1)
        above, below = nearest(picture_run, 0.1)
        kept, rejected = shown(pane, "kept"), shown(pane, "rejected")
        assert len(kept) >= 3 and kept == above[: len(kept)] and rejected == below[: len(rejected)]
        await pilot.press("plus", "plus", "plus")  # 0.25, not the threshold the stage used
        await wait_until(pilot, lambda: pane.examples_threshold == 0.25 and pictures_done(pane))
        above, below = nearest(picture_run, 0.25)
        assert shown(pane, "kept") == above[: len(kept)] and shown(pane, "rejected") == below[: len(rejected)]
        title = rendered(pane.query_one("#examples-kept").query_one(".examples-title"))
        assert "just above 0.25" in title


async def test_each_picture_says_its_make_and_model(picture_run):
    names = labels(picture_run)
    app = make_app(picture_run, clock=frozen_clock)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = await open_prefilter(pilot, 0.1)
        data_dir = Path(app.run_dir.load_config().data.dir)
        cards = list(pane.query(PictureCard))
        assert cards and all(card.image is not None and not card.note for card in cards)
        for card in cards:
            make, _, model = names[str(card.path.relative_to(data_dir))].partition("_")
            caption = card.query_one(".picture-caption").render().plain
            assert caption.split("\n")[0].endswith(make) and caption.split("\n")[1] == model, caption


async def test_pictures_are_decoded_in_a_worker_thread_once(picture_run, monkeypatch):
    """The decoder runs off the UI thread, and the LRU means moving the threshold back decodes nothing."""
    threads: set[str] = set()
    decode = pictures.decode_thumbnail

    def watched(path, *args, **kwargs):
        threads.add(threading.current_thread().name)
        return decode(path, *args, **kwargs)

    monkeypatch.setattr(pictures, "decode_thumbnail", watched)
    app = make_app(picture_run, clock=frozen_clock)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = await open_prefilter(pilot, 0.1)
        assert threads and threading.main_thread().name not in threads
        decoded = pane.cache.decoded
        await pilot.press("plus")
        await wait_until(pilot, lambda: pane.examples_threshold == 0.15 and pictures_done(pane))
        assert pane.cache.decoded > decoded
        await pilot.press("minus")
        await wait_until(pilot, lambda: pane.examples_threshold == 0.1 and pictures_done(pane))
        after = pane.cache.decoded
        await pilot.press("plus")
        await wait_until(pilot, lambda: pane.examples_threshold == 0.15 and pictures_done(pane))
        assert pane.cache.decoded == after  # both sides of both thresholds came from the cache


async def test_a_missing_or_broken_file_says_so_in_its_place(picture_run, tmp_path):
    run_copy = tmp_path / "runs"
    shutil.copytree(Path(picture_run.path).parent, run_copy)
    run = RunDir(run_copy / Path(picture_run.path).name)
    data_dir = run_copy / f"{run.path.name}-data"
    # the copy's config still names the original data folder: point it at the copy's
    config_text = Path(run.config_path).read_text().replace(str(Path(picture_run.load_config().data.dir)),
                                                            str(data_dir))
    Path(run.config_path).write_text(config_text)
    above, below = nearest(run, 0.1)
    (data_dir / above[0]).unlink()
    (data_dir / below[0]).write_bytes(b"\xff\xd8 not a jpeg")
    app = make_app(run, clock=frozen_clock)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = await open_prefilter(pilot, 0.1)
        cards = {str(card.path.name): card for card in pane.query(PictureCard)}
        assert cards[Path(above[0]).name].note.startswith("file not found")
        assert cards[Path(below[0]).name].note.startswith("cannot show it")
        assert sum(1 for card in cards.values() if card.image is not None) == len(cards) - 2


async def test_a_run_without_labels_shows_the_file_name(finished_run):
    """The recorded 8-class run has no index.csv and file names that do not parse: the caption says the
    label is unknown and names the file instead (and the missing pictures say why)."""
    app = make_app(finished_run, clock=frozen_clock)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = await open_prefilter(pilot, 0.1)
        card = pane.query(PictureCard).first()
        assert card.query_one(".picture-caption").render().plain.split("\n")[1].startswith("img_")
        assert card.note.startswith("file not found")


async def test_at_80x24_the_threshold_line_fits_and_the_footer_keeps_help_and_quit(picture_run):
    app = make_app(picture_run, clock=frozen_clock)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await open_prefilter(pilot, 0.1)
        await pilot.press("plus")
        await wait_until(pilot, lambda: pane.trial is not None and not pane.trial_pending)
        lines = rendered(pane.query_one(PrefilterSummary)).split("\n")
        threshold = [line for line in lines if line.startswith("threshold")]
        assert threshold and "(run used 0.10)" in threshold[0] and "→ kept" in threshold[0]
        assert all(len(line) <= 78 for line in lines)
        footer = app.screen.query_one(Footer)
        keys = {key.key: key for key in footer.query("FooterKey")}
        assert {"question_mark", "q", "plus", "w"} <= set(keys)
        assert all(key.region.right <= 80 and key.region.width > 0 for key in keys.values())
        for view in pane.query(ExamplesView):
            assert view.region.bottom <= 23  # above the footer
            assert list(view.query(PictureCard))  # at least one picture a side


async def test_with_a_stale_stage_every_footer_key_fits_80_columns(picture_run, tmp_path):
    """The widest footer: a stage stale (u shows) and a threshold being tried (+/- and w), on the
    prefilter tab at 80 columns; s (stop) shows only while a stage runs, when u does not."""
    from carclf_core.eventlog import JsonlSink
    from carclf_core.events import StagesStale

    shutil.copytree(Path(picture_run.path).parent, tmp_path / "runs")
    run = RunDir(tmp_path / "runs" / Path(picture_run.path).name)
    log = JsonlSink(run.events_path)
    log(StagesStale(stale={"evaluate": "evaluate.top_k changed: 5 -> 3"}))
    log.close()
    app = make_app(run, clock=frozen_clock)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await open_prefilter(pilot, 0.1)
        await pilot.press("plus")
        await wait_until(pilot, lambda: pane.trial is not None and not pane.trial_pending)
        keys = {key.key: key for key in app.screen.query_one(Footer).query("FooterKey")}
        assert set(keys) == {"r", "a", "u", "n", "plus", "w", "question_mark", "q"}
        assert all(key.region.right <= 80 and key.region.width > 0 for key in keys.values())
        app.runner.is_busy = lambda: True  # as while a runner holds the run's lock
        await wait_until(pilot, lambda: app.screen.busy)
        await pilot.pause()
        keys = {key.key for key in app.screen.query_one(Footer).query("FooterKey")}
        assert "s" in keys and "u" not in keys


async def test_on_a_new_run_the_footer_keeps_help_and_quit(empty_run):
    """Before the prefilter reports a threshold its keys stay out of the footer, and the colour-scale
    key is named by the heatmap's legend: with u (resume) shown too, ? and q still fit 80 columns."""
    app = make_app(empty_run)
    async with app.run_test(size=(80, 24)) as pilot:
        for tab in "34":
            await show_tab(pilot, tab)
            keys = {key.key: key for key in app.screen.query_one(Footer).query("FooterKey")}
            assert {"u", "question_mark", "q"} <= set(keys) and not {"plus", "w", "c"} & set(keys)
            assert all(key.region.right <= 80 and key.region.width > 0 for key in keys.values())
