"""Index and split stages on what real photo collections hold: copies of one photo (under one label or
two), other files beside the pictures, class folders, names that are not UTF-8, relative paths."""

import os
from pathlib import Path

import pandas as pd
import pytest

from carclf_core import config as config_mod
from carclf_core.pipeline import StageContext
from carclf_core.registry import run_all
from carclf_core.runs import create_run, open_run
from carclf_core.stages import index as index_stage
from carclf_core.stages.index import load_index
from carclf_core.stages.split import load_splits

from .conftest import car_name, jpeg_bytes, make_dataset


def _run(tmp_path, data, *overrides, stages=("index", "split")):
    config = config_mod.load(None, [f"data.dir={data}", f"run.root={tmp_path / 'runs'}", "prefilter.mode=off",
                                    *overrides])
    run = create_run(config)
    seen: list = []
    status = run_all(StageContext(config=run.load_config(), run=run, emit=seen.append), list(stages))
    return status, run, seen


def _finished(events, stage):
    return next(e for e in events if e.kind == "stage_finished" and e.stage == stage)


def _failure(events):
    return next(e for e in events if e.kind == "stage_failed")


def _warnings(events):
    return [e for e in events if e.kind == "log" and e.level == "warning"]


def test_copies_are_counted_named_when_mislabelled_and_kept_in_one_split(tmp_path):
    data = make_dataset(tmp_path / "data", {("Audi", "A4"): 12, ("BMW", "X5"): 12, ("Kia", "Rio"): 12})
    audi = sorted(data.glob("Audi_A4_*"))
    for i in range(4):  # 4 photos reused twice more each, as the source site does across model years
        for year in (2020, 2021):
            (data / car_name("Audi", "A4", f"y{year}n{i}")).write_bytes(audi[i].read_bytes())
    kia = sorted(data.glob("Kia_Rio_*"))[0]
    (data / car_name("BMW", "X5", "mislabelled")).write_bytes(kia.read_bytes())
    status, run, events = _run(tmp_path, data, "split.min_per_class=3")
    assert status == "done"
    index = _finished(events, "index")
    assert index.summary == "45 images in 3 classes, 0 rejected; 9 copies of 5 photos"
    assert index.result["duplicate_photos"] == 5 and index.result["duplicate_copies"] == 9
    assert index.result["label_conflicts"] == 1
    conflict = next(w for w in _warnings(events) if "filed under 2 labels" in w.message)
    assert conflict.message == (f"one photo filed under 2 labels (BMW_X5, Kia_Rio): "
                                f"{car_name('BMW', 'X5', 'mislabelled')}, {kia.name}")
    assert conflict.file == car_name("BMW", "X5", "mislabelled")  # the group: its first path
    splits, _ = load_splits(run)
    together = splits[splits["dup_group"] != ""].groupby("dup_group")["split"].agg(set)
    assert together[car_name("BMW", "X5", "mislabelled")] == {"train"}  # never in val or test
    assert all(len(s) == 1 for s in together)
    split = _finished(events, "split")
    assert split.result["test_with_train_copy"] == 0 and split.result["conflicted_images"] == 2


def test_turning_grouping_off_splits_copies_apart_and_says_so(tmp_path):
    data = make_dataset(tmp_path / "data", {("Audi", "A4"): 10, ("BMW", "X5"): 10})
    for path in sorted(data.glob("*.jpg")):
        for k in range(2):
            (data / (path.stem + f"c{k}.jpg")).write_bytes(path.read_bytes())
    status, run, events = _run(tmp_path, data, "split.min_per_class=3", "split.group_duplicates=false")
    assert status == "done"
    split = _finished(events, "split")
    assert split.result["test_with_train_copy"] > 0
    assert f"; {split.result['test_with_train_copy']} test images have a copy in train" in split.summary


def test_a_folder_of_other_endings_says_which_key_reads_them(tmp_path):
    data = tmp_path / "pngs"
    data.mkdir()
    for i in range(4):
        (data / car_name("Audi", "A4", f"{i}").replace(".jpg", ".png")).write_bytes(jpeg_bytes((9, 9, 9)))
    status, run, events = _run(tmp_path, data)
    assert status == "failed"
    assert _failure(events).error == (
        f"data.dir: no usable images in {data} (4 files: 0 rejected, 4 skipped); files of other endings "
        "(4 .png) are skipped: set data.extensions: [jpg, jpeg, png] to read them")
    index = load_index(run)  # written before failing: every file is listed with why
    assert set(index["status"]) == {"skipped"}
    status, run, events = _run(tmp_path, data, "data.extensions=[png]", stages=("index",))
    assert status == "done" and _finished(events, "index").result["images"] == 4


def test_class_folders_read_as_file_names_get_the_layout_advice(tmp_path):
    data = tmp_path / "cars"
    for k, label in enumerate(("audi_a4", "bmw_x5")):
        (data / label).mkdir(parents=True)
        for i in range(3):
            (data / label / f"photo{i}.jpg").write_bytes(jpeg_bytes((0, 0, 90), seed=10 * k + i))
    status, run, events = _run(tmp_path, data, "data.layout=filenames")
    assert status == "failed"
    assert _failure(events).error.endswith(
        "file names do not parse as 17 fields, but the images sit in 2 sub-folders: set data.layout: folders")
    status, run, events = _run(tmp_path, data, "data.layout=folders", "split.min_per_class=3")
    assert status == "done"
    assert not any("data.layout auto" in e.message for e in events if e.kind == "log")  # a set layout: no word
    # auto says which layout it chose, and how to choose the other
    status, run, events = _run(tmp_path, data, "data.layout=auto", "split.min_per_class=3")
    assert status == "done"
    chosen = [e.message for e in events if e.kind == "log" and e.message.startswith("data.layout auto")]
    assert chosen == [index_stage.LAYOUT_CHOSEN["folders"]] and "set data.layout: filenames" in chosen[0]
    named = make_dataset(tmp_path / "named", {("Audi", "A4"): 3, ("BMW", "X5"): 3})
    status, run, events = _run(tmp_path, named, "data.layout=auto", "split.min_per_class=3")
    assert [e.message for e in events if e.kind == "log" and e.message.startswith("data.layout auto")] == [
        index_stage.LAYOUT_CHOSEN["filenames"]]


def test_one_image_per_class_gets_advice_the_config_accepts(tmp_path):
    data = make_dataset(tmp_path / "data", {("Audi", "A4"): 1, ("BMW", "X5"): 1, ("Kia", "Rio"): 1})
    status, run, events = _run(tmp_path, data)
    error = _failure(events).error
    assert error == ("split: 0 classes left after filtering (need at least 2); add images: each class needs "
                     "at least 3 distinct photos (one each for train, val and test), and 0 classes have that many")
    assert "lower" not in error


def test_a_lower_min_per_class_is_advised_only_when_it_would_help(tmp_path):
    data = make_dataset(tmp_path / "data", {("Audi", "A4"): 6, ("BMW", "X5"): 4, ("Kia", "Rio"): 2})
    status, run, events = _run(tmp_path, data)
    error = _failure(events).error
    assert error.endswith("; lower split.min_per_class to 4 (minimum 3), or add images")
    config_mod.load(None, ["split.min_per_class=4"])  # what it advises is a value the config takes
    status, run, events = _run(tmp_path, data, "split.min_per_class=4")
    assert status == "done"


def test_copies_do_not_count_towards_min_per_class(tmp_path):
    data = make_dataset(tmp_path / "data", {("Audi", "A4"): 2, ("BMW", "X5"): 5, ("Kia", "Rio"): 5})
    for path in sorted(data.glob("Audi_A4_*")):
        for k in range(3):
            (data / (path.stem + f"c{k}.jpg")).write_bytes(path.read_bytes())
    status, run, events = _run(tmp_path, data, "split.min_per_class=3")
    assert status == "done"
    dropped = [w.message for w in _warnings(events) if "dropped" in w.message]
    assert dropped == ["class 'Audi_A4' dropped: 2 photos (8 files) < split.min_per_class 3"]


def test_a_relative_data_dir_is_the_same_data_from_another_directory(tmp_path, monkeypatch):
    home, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    make_dataset(home / "data", {("Audi", "A4"): 6, ("BMW", "X5"): 6})
    make_dataset(elsewhere / "data", {("Kia", "Rio"): 5, ("Fiat", "500"): 5})  # a trap: same relative name
    monkeypatch.chdir(home)
    config = config_mod.load(None, ["data.dir=data", "run.root=runs", "prefilter.mode=off",
                                    "split.min_per_class=3"])
    run = create_run(config)
    assert run.path.parent == home / "runs"
    text = run.config_path.read_text()
    assert f'# data.dir: typed "data", resolved to "{home / "data"}"' in text
    assert config_mod.load(run.typed_config_path).data.dir == "data"
    assert run.load_config().data.dir == str(home / "data")
    first: list = []
    assert run_all(StageContext(config=run.load_config(), run=run, emit=first.append), ["index"]) == "done"

    monkeypatch.chdir(elsewhere)
    again = open_run(run.path)
    later: list = []
    assert run_all(StageContext(config=again.load_config(), run=again, emit=later.append), ["index", "split"]) == "done"
    labels = set(load_index(again)["label"])
    assert labels == {"Audi_A4", "BMW_X5"}
    assert _finished(later, "index").result == _finished(first, "index").result


@pytest.mark.skipif(os.uname().sysname == "Darwin", reason="macOS refuses names that are not UTF-8")
def test_a_name_that_is_not_utf8_fails_nothing(tmp_path):
    data = make_dataset(tmp_path / "data", {("Audi", "A4"): 5, ("BMW", "X5"): 5})
    fd = os.open(os.fsencode(data) + b"/bad\xff_name.jpg", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, jpeg_bytes((1, 2, 3)))
    os.close(fd)
    status, run, events = _run(tmp_path, data, "split.min_per_class=3")
    assert status == "done"
    named = {w.file: w.message for w in _warnings(events)}
    assert named["bad\\xff_name.jpg"] == "rejected: name is not valid UTF-8; rename the file or its folder"
    Path(run.index_csv).read_bytes().decode("utf-8")
    assert len(pd.read_csv(run.index_csv)) == 11


def test_the_split_refuses_images_the_prefilter_has_not_decided_on(tmp_path):
    """`--stage index --stage split` with the prefilter filtering used to split every indexed image,
    interiors included, silently; now the split names the stage to run and the key to change."""
    data = make_dataset(tmp_path / "data", {("Audi", "A4"): 5, ("BMW", "X5"): 5})
    status, run, events = _run(tmp_path, data, "prefilter.mode=filter", "split.min_per_class=3")
    assert status == "failed"
    failure = _failure(events)
    assert failure.stage == "split"
    assert "prefilter.mode is filter, but the prefilter has not decided" in failure.error
    assert f"--resume {run.path} --stage prefilter" in failure.error and "prefilter.mode: off" in failure.error
    assert not run.splits_csv.exists()
    # scoring only (or off) splits every indexed image, as asked
    status, run, events = _run(tmp_path, data, "prefilter.mode=score", "split.min_per_class=3")
    assert status == "done" and len(load_splits(run)[0]) == 10
