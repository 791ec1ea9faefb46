import hashlib
import os

import pytest

from carclf_core import dataset
from carclf_core.config import CAR_CONNECTION_FIELDS, DataConfig, SplitConfig

from .conftest import DECODABLE_ODD_IMAGES, jpeg_bytes, write_odd_images

FIELDS = CAR_CONNECTION_FIELDS


class TestParseFilename:
    def test_real_format_with_spaces_hyphens_and_nan(self):
        values = dataset.parse_filename(
            "Land Rover_Range Rover Sport_2018_67_20_340_30_6_78_71_192_nan_AWD_5_4_SUV_Agq.jpg", FIELDS)
        assert values["make"] == "Land Rover"
        assert values["model"] == "Range Rover Sport"
        assert values["gas_mileage"] is None
        assert values["body_style"] == "SUV" and values["id"] == "Agq"
        assert dataset.label_of(values, "model") == "Land Rover_Range Rover Sport"
        assert dataset.label_of(values, "make") == "Land Rover"

    def test_hyphens_and_folders(self):
        values = dataset.parse_filename(
            "sub/dir/Mercedes-Benz_C-Class_2019_41_17_241_20_4_71_56_184_25_RWD_5_4_4dr_xyz.JPG", FIELDS)
        assert dataset.label_of(values, "model") == "Mercedes-Benz_C-Class"

    @pytest.mark.parametrize("name, reason", [
        ("Audi_A4_2019.jpg", "expected 17 fields"),
        ("Audi_A4_2019_37_17_188_20_4_72_56_187_27_AWD_5_4_4dr_abc_extra.jpg", "found 18"),
        ("nan_A4_2019_37_17_188_20_4_72_56_187_27_AWD_5_4_4dr_abc.jpg", "make is empty"),
        ("Audi__2019_37_17_188_20_4_72_56_187_27_AWD_5_4_4dr_abc.jpg", "model is empty"),
    ])
    def test_bad_names(self, name, reason):
        with pytest.raises(dataset.FilenameError, match=reason):
            dataset.parse_filename(name, FIELDS)


def test_broken_files_are_recorded_not_fatal(tiny_dataset):
    good = (tiny_dataset / os.listdir(tiny_dataset)[0]).read_bytes()
    tail = "2019_37_17_188_20_4_72_56_187_27_AWD_5_4_4dr"
    (tiny_dataset / f"Audi_A4_{tail}_empty.jpg").write_bytes(b"")
    (tiny_dataset / f"Audi_A4_{tail}_trunc.jpg").write_bytes(good[: len(good) // 2])
    (tiny_dataset / f"Audi_A4_{tail}_text.jpg").write_text("not an image")
    (tiny_dataset / "Audi_A4_short.jpg").write_bytes(good)
    (tiny_dataset / "notes.txt").write_text("ignored: not an image extension")
    index = dataset.build_index(DataConfig(dir=str(tiny_dataset)))
    reasons = dict(zip(index["path"], index["reason"]))
    assert reasons[f"Audi_A4_{tail}_empty.jpg"] == "empty file"
    assert reasons[f"Audi_A4_{tail}_trunc.jpg"] == "truncated image"
    assert reasons[f"Audi_A4_{tail}_text.jpg"] == "not an image"
    assert reasons["Audi_A4_short.jpg"].startswith("file name: expected 17 fields")
    assert "notes.txt" not in reasons
    assert (index["status"] == "ok").sum() == 74
    counts = dataset.class_counts(index)
    assert counts.iloc[0].tolist() == ["Audi_A4", 30]


def test_folder_layout_and_case_insensitive_extensions(tmp_path):
    root = tmp_path / "data"
    for label, n in (("cats", 3), ("dogs", 4)):
        (root / label).mkdir(parents=True)
        for i in range(n):
            (root / label / f"img{i}.JPEG").write_bytes(jpeg_bytes((10 * i, 0, 0)))
    index = dataset.build_index(DataConfig(dir=str(root)))
    assert sorted(set(index["label"])) == ["cats", "dogs"]
    assert (index["status"] == "ok").all()


def test_symlink_loop_and_missing_folder(tmp_path, tiny_dataset):
    os.symlink(tiny_dataset, tiny_dataset / "loop")
    os.symlink(tiny_dataset / "nowhere.jpg", tiny_dataset / "dangling.jpg")
    index = dataset.build_index(DataConfig(dir=str(tiny_dataset)))
    assert (index["status"] == "ok").sum() == 74
    reasons = dict(zip(index["path"], index["reason"]))
    assert reasons["loop"] == "linked folder not followed"
    assert reasons["dangling.jpg"].startswith("broken link")
    with pytest.raises(dataset.DatasetError, match="data.dir: folder .* does not exist"):
        dataset.build_index(DataConfig(dir=str(tmp_path / "absent")))


def _usable(tiny_dataset):
    index = dataset.build_index(DataConfig(dir=str(tiny_dataset)))
    return index[index["status"] == "ok"]


def test_top_n_keeps_most_frequent_sorted_by_name(tiny_dataset):
    counts = dataset.class_counts(_usable(tiny_dataset))
    assert dataset.select_classes(counts, top_n=2, min_per_class=3) == ["Audi_A4", "Land Rover_Range Rover"]
    assert dataset.select_classes(counts, top_n=300, min_per_class=14) == [
        "Audi_A4", "Land Rover_Range Rover", "Mercedes-Benz_C-Class"]


def test_split_is_stratified_and_reproducible(tiny_dataset, tmp_path):
    usable = _usable(tiny_dataset)
    classes = dataset.select_classes(dataset.class_counts(usable), 300, 3)
    cfg = SplitConfig(seed=7)
    first = dataset.stratified_split(usable, classes, cfg)
    second = dataset.stratified_split(usable.sample(frac=1, random_state=1), classes, cfg)
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    first.to_csv(a, index=False)
    second.to_csv(b, index=False)
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    other = dataset.stratified_split(usable, classes, SplitConfig(seed=8))
    assert not first.equals(other)
    assert set(first["path"]) == set(usable["path"])
    for label, group in first.groupby("label"):
        n = len(group)
        sizes = group["split"].value_counts()
        for split, share in (("train", cfg.train), ("val", cfg.val), ("test", cfg.test)):
            assert abs(sizes.get(split, 0) - n * share) <= 1, (label, split, sizes.to_dict())
    assert first["class_index"].tolist() == [classes.index(lbl) for lbl in first["label"]]


def test_split_rejects_class_too_small_for_three_splits(tiny_dataset):
    usable = _usable(tiny_dataset)
    tiny = usable[usable["label"] != "Audi_A4"].groupby("label").head(2)
    with pytest.raises(dataset.DatasetError, match="each split needs at least one"):
        dataset.stratified_split(tiny, sorted(set(tiny["label"])), SplitConfig())


def test_case_variants_merge_into_the_most_used_spelling(tiny_dataset):
    tail = "2019_37_17_188_20_4_72_56_187_27_AWD_5_4_4dr"
    good = next(tiny_dataset.iterdir()).read_bytes()
    for i in range(3):
        (tiny_dataset / f"audi_a4_{tail}_lc{i}.jpg").write_bytes(good)
    (tiny_dataset / f"Citroën_C4 Picasso_{tail}_nonascii.jpg").write_bytes(good)
    index = dataset.build_index(DataConfig(dir=str(tiny_dataset)))
    assert (index["label"] == "Audi_A4").sum() == 33
    assert "audi_a4" not in set(index["label"])
    assert dataset.case_variants(index) == {"Audi_A4": ["audi_a4"]}
    assert "Citroën_C4 Picasso" in set(index["label"])


def test_odd_image_files_are_accepted_or_refused_with_a_reason(tmp_path):
    """Formats the tf.data pipeline decodes pass whatever their name; the rest say why not."""
    files = write_odd_images(tmp_path)
    checks = {name: dataset.check_image(path) for name, path in files.items()}
    for name in DECODABLE_ODD_IMAGES:
        assert checks[name].status == "ok", (name, checks[name])
    assert checks["tiff"].reason.startswith("TIFF image: the input pipeline decodes only")
    assert checks["huge"].reason == "too large (10000x10000 pixels, limit 40,000,000)"
