import hashlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carclf_core import dataset, splitting
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
    assert reasons["notes.txt"] == "ending .txt not in data.extensions (jpeg, jpg)"
    assert index.set_index("path").loc["notes.txt", "status"] == "skipped"
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
    assert splitting.select_classes(counts, top_n=2, min_per_class=3) == ["Audi_A4", "Land Rover_Range Rover"]
    assert splitting.select_classes(counts, top_n=300, min_per_class=14) == [
        "Audi_A4", "Land Rover_Range Rover", "Mercedes-Benz_C-Class"]


def test_split_is_stratified_and_reproducible(tiny_dataset, tmp_path):
    usable = _usable(tiny_dataset)
    classes = splitting.select_classes(dataset.class_counts(usable), 300, 3)
    cfg = SplitConfig(seed=7)
    first = splitting.stratified_split(usable, classes, cfg)
    second = splitting.stratified_split(usable.sample(frac=1, random_state=1), classes, cfg)
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    first.to_csv(a, index=False)
    second.to_csv(b, index=False)
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    other = splitting.stratified_split(usable, classes, SplitConfig(seed=8))
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
    with pytest.raises(dataset.DatasetError, match="train, val and test each need one"):
        splitting.stratified_split(tiny, sorted(set(tiny["label"])), SplitConfig())


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


# --- real photo collections: copies, other files, odd names -------------------------------------

TAIL = "2019_37_17_188_20_4_72_56_187_27_AWD_5_4_4dr"


def _copy(src, dst):
    dst.write_bytes(src.read_bytes())


def test_the_17_name_fields_are_kept_beside_the_pixel_size(tiny_dataset):
    index = dataset.build_index(DataConfig(dir=str(tiny_dataset)))
    ok = index[index["status"] == "ok"]
    # the car's width and height in inches, from the name; the picture's own size in its columns
    assert set(ok["width"].astype(str)) == {"72"} and set(ok["height"].astype(str)) == {"56"}
    assert set(ok["pixel_width"]) == {48} and set(ok["pixel_height"]) == {32}
    assert list(index.columns[:10]) == ["path", "label", "status", "reason", "pixel_width", "pixel_height",
                                        "format", "bytes", "sha", "dup_group"]
    assert [c for c in index.columns[10:]] == list(FIELDS)


def test_byte_identical_copies_form_groups_within_and_across_labels(tiny_dataset):
    audi = sorted(tiny_dataset.glob("Audi_A4_*"))
    ford = sorted(tiny_dataset.glob("Ford_F-150_*"))
    _copy(audi[0], tiny_dataset / f"Audi_A4_{TAIL}_copy1.jpg")  # the same photo, another model year's id
    _copy(audi[0], tiny_dataset / f"Audi_A4_{TAIL}_copy2.jpg")
    _copy(ford[0], tiny_dataset / f"Kia_Rio_{TAIL}_mislabelled.jpg")  # the same photo under two labels
    index = dataset.build_index(DataConfig(dir=str(tiny_dataset))).set_index("path")
    first = audi[0].name
    assert index.loc[[first, f"Audi_A4_{TAIL}_copy1.jpg", f"Audi_A4_{TAIL}_copy2.jpg"], "dup_group"].tolist() == [
        first] * 3
    assert index.loc[f"Kia_Rio_{TAIL}_mislabelled.jpg", "dup_group"] == ford[0].name
    assert index.loc[first, "sha"] == index.loc[f"Audi_A4_{TAIL}_copy2.jpg", "sha"] != index.loc[audi[1].name, "sha"]
    assert len(index.loc[first, "sha"]) == 16
    assert index.loc[audi[1].name, "dup_group"] == ""
    assert dataset.duplicate_summary(index.reset_index()) == (2, 3)  # 3 copies of 2 photos
    assert dataset.label_conflicts(index.reset_index()) == [
        (ford[0].name, ["Ford_F-150", "Kia_Rio"], [ford[0].name, f"Kia_Rio_{TAIL}_mislabelled.jpg"])]


def test_broken_files_with_equal_bytes_are_no_duplicate_group(tiny_dataset):
    for i in range(3):
        (tiny_dataset / f"Audi_A4_{TAIL}_empty{i}.jpg").write_bytes(b"")
    index = dataset.build_index(DataConfig(dir=str(tiny_dataset)))
    assert (index["dup_group"] == "").all()


def _frame(sizes: dict[str, int], copies: dict[str, list[int]] | None = None):
    """Index-like rows: ``sizes[label]`` photos per label, photo i of a label shown ``copies[label][i]``
    times (its copies share a dup_group)."""
    import pandas as pd

    rows = []
    for label, n in sizes.items():
        for i in range(n):
            k = (copies or {}).get(label, [1] * n)[i] if copies and label in copies and i < len(copies[label]) else 1
            first = f"{label}/p{i:03d}_0.jpg"
            for c in range(k):
                rows.append({"path": f"{label}/p{i:03d}_{c}.jpg", "label": label,
                             "dup_group": first if k > 1 else ""})
    return pd.DataFrame(rows)


# val and test images each class gets: round(n * fraction) (Python's round: 2.5 -> 2), pinned
EXACT = {
    (0.8, 0.1, 0.1): {"c10": (1, 1), "c11": (1, 1), "c13": (1, 1), "c40": (4, 4)},
    (0.6, 0.25, 0.15): {"c10": (2, 2), "c11": (3, 2), "c13": (3, 2), "c40": (10, 6)},
    (0.7, 0.15, 0.15): {"c10": (2, 2), "c11": (2, 2), "c13": (2, 2), "c40": (6, 6)},
    (0.5, 0.1, 0.4): {"c10": (1, 4), "c11": (1, 4), "c13": (1, 5), "c40": (4, 16)},
}


@pytest.mark.parametrize("fractions", list(EXACT))
@pytest.mark.parametrize("seed", [0, 42])
def test_split_counts_are_exact_per_class_without_copies(fractions, seed):
    train, val, test = fractions
    frame = _frame({"c10": 10, "c11": 11, "c13": 13, "c40": 40})
    cfg = SplitConfig(train=train, val=val, test=test, seed=seed)
    splits = splitting.stratified_split(frame, ["c10", "c11", "c13", "c40"], cfg)
    assert len(splits) == len(frame)
    for label, (n_val, n_test) in EXACT[fractions].items():
        n = len(frame[frame["label"] == label])
        assert (n_val, n_test) == (round(n * val), round(n * test))
        sizes = splits[splits["label"] == label]["split"].value_counts().to_dict()
        assert sizes == {"train": n - n_val - n_test, "val": n_val, "test": n_test}, (label, sizes)


def test_every_copy_lands_in_the_split_of_its_photo_and_classes_stay_stratified():
    # 30 % of each class's photos have 2 or 3 copies, as on the Car Connection pictures
    copies = {label: [3 if i % 7 == 0 else 2 if i % 3 == 0 else 1 for i in range(n)]
              for label, n in (("c10", 10), ("c11", 11), ("c13", 13), ("c40", 40))}
    frame = _frame({"c10": 10, "c11": 11, "c13": 13, "c40": 40}, copies)
    classes = ["c10", "c11", "c13", "c40"]
    for seed in range(5):
        cfg = SplitConfig(train=0.6, val=0.25, test=0.15, seed=seed, copies_in_train="all")
        splits = splitting.stratified_split(frame, classes, cfg)
        grouped = splits[splits["dup_group"] != ""].groupby("dup_group")["split"].nunique()
        assert (grouped == 1).all()
        assert splitting.copies_across(splits) == {"val_with_train_copy": 0, "test_with_train_copy": 0}
        for label in classes:
            sizes = splitting.split_sizes(splits[splits["label"] == label])
            photos = sum(size["photos"] for size in sizes.values())
            assert photos == len(copies[label])
            # exact counts of photos, one file each in val and test, every copy of a train photo
            assert sizes["val"] == {"photos": round(photos * 0.25), "files": round(photos * 0.25)}, (seed, label)
            assert sizes["test"] == {"photos": round(photos * 0.15), "files": round(photos * 0.15)}, (seed, label)
            train = splits[(splits["label"] == label) & (splits["split"] == "train")]
            in_train = set(splitting.photo_keys(train))
            assert len(train) == len(frame[splitting.photo_keys(frame).isin(in_train)])


def test_without_grouping_copies_leak_and_are_counted():
    copies = {"a": [3] * 20, "b": [3] * 20}
    frame = _frame({"a": 20, "b": 20}, copies)
    splits = splitting.stratified_split(frame, ["a", "b"], SplitConfig(seed=1, group_duplicates=False))
    leaks = splitting.copies_across(splits)
    assert leaks["test_with_train_copy"] > 0 and leaks["val_with_train_copy"] > 0
    test_groups = set(splits.loc[splits["split"] == "test", "dup_group"])
    train_groups = set(splits.loc[splits["split"] == "train", "dup_group"])
    assert leaks["test_with_train_copy"] == splits[(splits["split"] == "test")
                                                   & splits["dup_group"].isin(test_groups & train_groups)].shape[0]


def test_a_class_of_few_photos_with_many_copies_is_refused_by_photos_not_images():
    frame = _frame({"a": 2, "b": 10}, {"a": [5, 5]})
    assert (frame["label"] == "a").sum() == 10
    with pytest.raises(dataset.DatasetError, match=r"'a' has 2 photos \(10 files\); train, val and test each need one"):
        splitting.stratified_split(frame, ["a", "b"], SplitConfig())
    counts = splitting.photo_counts(frame, SplitConfig())
    assert counts.set_index("label").loc["a"].tolist() == [2, 10]


@pytest.mark.parametrize("policy", ["train", "drop"])
def test_a_photo_under_two_labels_never_reaches_val_or_test(policy):
    frame = _frame({"a": 12, "b": 12})
    # photo 0 of a is also filed as b (and kept in b's group), photo 5 of b also as a
    import pandas as pd

    extra = pd.DataFrame([{"path": "b/p900_0.jpg", "label": "b", "dup_group": "a/p000_0.jpg"},
                          {"path": "a/p901_0.jpg", "label": "a", "dup_group": "b/p005_0.jpg"}])
    frame.loc[frame["path"].isin(["a/p000_0.jpg", "b/p005_0.jpg"]), "dup_group"] = frame["path"]
    frame = pd.concat([frame, extra], ignore_index=True)
    mixed = {"a/p000_0.jpg", "b/p900_0.jpg", "b/p005_0.jpg", "a/p901_0.jpg"}
    assert set(frame.loc[splitting.conflicted(frame), "path"]) == mixed
    for seed in range(6):
        splits = splitting.stratified_split(frame, ["a", "b"], SplitConfig(seed=seed, conflicts=policy))
        chosen = splits[splits["path"].isin(mixed)]
        if policy == "train":
            assert len(chosen) == 4 and set(chosen["split"]) == {"train"}
        else:
            assert chosen.empty and len(splits) == len(frame) - 4
        assert (splits["class_index"] == splits["label"].map({"a": 0, "b": 1})).all()
    # the other photos are split as if the conflicts were not there: 10 of 12 photos per class remain
    assert splitting.photo_counts(frame, SplitConfig())["count"].tolist() == [11, 11]


def test_other_endings_and_hidden_files_are_listed_not_silent(tmp_path):
    from .conftest import car_name

    root = tmp_path / "data"
    root.mkdir()
    for i in range(3):
        (root / car_name("Audi", "A4", f"j{i}")).write_bytes(jpeg_bytes((200, 0, 0), seed=i))
        (root / car_name("Audi", "A4", f"p{i}").replace(".jpg", ".png")).write_bytes(jpeg_bytes((0, 0, 200)))
    (root / "README").write_text("about these pictures")
    (root / ("._" + car_name("Audi", "A4", "j0"))).write_bytes(b"\0\5\26\7 AppleDouble")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main")
    index = dataset.build_index(DataConfig(dir=str(root))).set_index("path")
    png = car_name("Audi", "A4", "p0").replace(".jpg", ".png")
    assert index.loc[png, ["status", "reason"]].tolist() == ["skipped", "ending .png not in data.extensions (jpeg, jpg)"]
    assert index.loc["README", "reason"] == "no file ending; data.extensions is jpeg, jpg"
    assert index.loc["._" + car_name("Audi", "A4", "j0"), ["status", "reason"]].tolist() == ["skipped", "hidden file"]
    assert index.loc[".git", "reason"] == "hidden folder, not scanned"
    assert (index["status"] == "ok").sum() == 3 and len(index) == 3 + 3 + 1 + 1 + 1
    hint = dataset.no_images_hint(index.reset_index(), DataConfig(dir=str(root)))
    assert hint == "files of other endings (3 .png) are skipped: set data.extensions: [jpg, jpeg, png] to read them"


@pytest.mark.skipif(os.uname().sysname == "Darwin", reason="macOS refuses names that are not UTF-8")
def test_a_name_that_is_not_utf8_is_rejected_escaped_and_the_scan_goes_on(tiny_dataset, tmp_path):
    good = next(tiny_dataset.iterdir()).read_bytes()
    fd = os.open(os.fsencode(tiny_dataset) + b"/bad\xff_name.jpg", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, good)
    os.close(fd)
    os.mkdir(os.fsencode(tiny_dataset) + b"/Caf\xe9")
    fd = os.open(os.fsencode(tiny_dataset) + b"/Caf\xe9/" + car_name_bytes(), os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, good)
    os.close(fd)
    index = dataset.build_index(DataConfig(dir=str(tiny_dataset)))
    rows = index.set_index("path")
    reason = "name is not valid UTF-8; rename the file or its folder"
    assert rows.loc["bad\\xff_name.jpg", ["status", "reason"]].tolist() == ["rejected", reason]
    assert rows.loc["Caf\\xe9/" + car_name_bytes().decode(), "status"] == "rejected"
    assert (index["status"] == "ok").sum() == 74
    out = tmp_path / "index.csv"
    index.to_csv(out, index=False)
    out.read_bytes().decode("utf-8")  # valid UTF-8 throughout


def car_name_bytes() -> bytes:
    return f"Audi_A4_{TAIL}_x.jpg".encode()


def test_layout_guess_when_names_do_not_parse_but_folders_look_like_classes(tmp_path):
    root = tmp_path / "data"
    for label in ("audi_a4", "bmw_x5", "kia_rio"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            (root / label / f"IMG_{i:04d}.jpg").write_bytes(jpeg_bytes((0, 90, 0), seed=i))
    cfg = DataConfig(dir=str(root), layout="filenames")
    index = dataset.build_index(cfg)
    assert (index["status"] == "rejected").all()
    assert dataset.layout_hint(index, cfg) == (
        "file names do not parse as 17 fields, but the images sit in 3 sub-folders: set data.layout: folders")
    assert "set data.layout: folders" in dataset.no_images_hint(index, cfg)
    # one wrapping folder around the class folders: auto reads it as one class named after the wrapper
    wrapped = tmp_path / "outer"
    wrapped.mkdir()
    root.rename(wrapped / "photos")
    cfg = DataConfig(dir=str(wrapped), layout="filenames")
    hint = dataset.layout_hint(dataset.build_index(cfg), cfg)
    assert hint.endswith(f"3 sub-folders of photos: set data.dir to {wrapped / 'photos'} and data.layout: folders")
    assert dataset.layout_hint(index, DataConfig(dir=str(root), layout="folders")) == ""


def _street_scene(car_x: int, seed: int, size=(320, 212)):
    """A photo-like picture: a sky gradient with sensor noise, a road, and a red car at ``car_x``."""
    import numpy as np
    from PIL import Image, ImageDraw

    width, height = size
    rng = np.random.default_rng(seed)
    sky = np.linspace(230, 120, height)[:, None, None] * np.ones((height, width, 3))
    image = Image.fromarray(np.clip(sky + rng.normal(0, 6, sky.shape), 0, 255).astype("uint8"))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 175, width, height], fill=(90, 90, 90))
    draw.rectangle([car_x, 110, car_x + 150, 160], fill=(150, 20, 20))
    draw.rectangle([car_x + 30, 85, car_x + 110, 112], fill=(120, 20, 20))
    for wheel in (car_x + 15, car_x + 105):
        draw.ellipse([wheel, 145, wheel + 30, 175], fill=(20, 20, 20))
    return image


def _jpeg(image, quality=90) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def test_near_copies_are_grouped_only_when_asked(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    names = {key: car_name_of(key) for key in ("original", "bigger", "smaller", "other1", "other2", "other3")}
    (root / names["original"]).write_bytes(_jpeg(_street_scene(60, seed=0)))
    # the same photo as the site serves it again: resized, re-encoded, with other noise
    (root / names["bigger"]).write_bytes(_jpeg(_street_scene(60, seed=0).resize((640, 424)), quality=70))
    (root / names["smaller"]).write_bytes(_jpeg(_street_scene(60, seed=5).resize((200, 132)), quality=60))
    for key, x in (("other1", 20), ("other2", 100), ("other3", 140)):  # the car elsewhere: other photos
        (root / names[key]).write_bytes(_jpeg(_street_scene(x, seed=1)))
    exact = dataset.build_index(DataConfig(dir=str(root))).set_index("path")
    assert (exact["dup_group"] == "").all() and "phash" not in exact.columns
    fuzzy = dataset.build_index(DataConfig(dir=str(root), near_duplicates=True)).set_index("path")
    groups = fuzzy["dup_group"].to_dict()
    first = min(names["original"], names["bigger"], names["smaller"])
    assert {groups[names[k]] for k in ("original", "bigger", "smaller")} == {first}
    assert [groups[names[k]] for k in ("other1", "other2", "other3")] == ["", "", ""]
    assert all(len(h) == 16 for h in fuzzy["phash"])


def car_name_of(image_id: str) -> str:
    return f"Audi_A4_{TAIL}_{image_id}.jpg"


def test_near_duplicate_pairs_equal_a_brute_force_search():
    import numpy as np

    rng = np.random.default_rng(3)
    base = rng.integers(0, 2**63, 60, dtype=np.uint64)
    flips = [np.uint64(1) << np.uint64(b) for b in rng.integers(0, 64, 200)]
    hashes = np.concatenate([base, base[:40] ^ np.array(flips[:40], dtype=np.uint64),
                             base[:20] ^ np.array(flips[40:60], dtype=np.uint64)
                             ^ np.array(flips[60:80], dtype=np.uint64)
                             ^ np.array(flips[80:100], dtype=np.uint64)])
    for distance in (0, 1, 3, 5):
        found = {tuple(sorted(p)) for p in dataset.near_duplicate_pairs(hashes, distance).tolist()}
        expected = {(i, j) for i in range(len(hashes)) for j in range(i + 1, len(hashes))
                    if bin(int(hashes[i]) ^ int(hashes[j])).count("1") <= distance}
        assert found == expected, distance
        assert distance == 0 or len(expected) >= 40


# --- how photos are placed (splitting.photo_targets, stratified_split), pinned case by case ----


@pytest.mark.parametrize(
    "photos, fractions, expected",
    [
        (10, (0.15, 0.15), (2, 2)),  # round(1.5) = 2 (Python rounds halves to even)
        (40, (0.1, 0.1), (4, 4)),
        (3, (0.05, 0.05), (1, 1)),  # round(0.15) = 0: at least one each
        (4, (0.5, 0.4), (2, 1)),  # 2 + 2 would leave train empty: test is further above 1.6 than val above 2
        (4, (0.45, 0.45), (1, 2)),  # a tie (both 0.2 above): val gives one back
        (5, (0.4, 0.4), (2, 2)),  # 2 + 2 leaves one photo for train: kept
    ],
)
def test_photo_targets_round_each_share_and_leave_train_a_photo(photos, fractions, expected):
    assert splitting.photo_targets(photos, *fractions) == expected


def test_copies_do_not_pull_a_split_off_its_share_of_photos():
    # the old placement put big groups first and singles last, so val and test became copies: here
    # 4 photos of 4 copies and 8 single photos; val and test must each take 2 of the 12 photos (not
    # 2 of 24 files) and hold one file a photo, whichever photos the seed picks
    copies = {"a": [4, 4, 4, 4] + [1] * 8}
    frame = _frame({"a": 12, "b": 12}, copies)
    for seed in range(20):
        splits = splitting.stratified_split(frame, ["a", "b"], SplitConfig(train=0.7, val=0.15, test=0.15, seed=seed))
        part = splits[splits["label"] == "a"]
        sizes = splitting.split_sizes(part)
        assert sizes["val"] == {"photos": 2, "files": 2} and sizes["test"] == {"photos": 2, "files": 2}, seed
        assert sizes["train"]["photos"] == 8
    # over the seeds every photo reaches test sometimes: big groups are not kept out of it
    seen = set()
    for seed in range(60):
        splits = splitting.stratified_split(frame, ["a", "b"], SplitConfig(seed=seed))
        seen |= set(splitting.photo_keys(splits[(splits["split"] == "test") & (splits["label"] == "a")]))
    assert {f"a/p{i:03d}_0.jpg" for i in range(4)} <= seen


def test_each_split_keeps_the_first_file_of_a_photo_unless_asked_for_every_copy():
    frame = _frame({"a": 6}, {"a": [3] * 6})
    cfg = dict(train=0.34, val=0.33, test=0.33, seed=3)
    splits = splitting.stratified_split(frame, ["a"], SplitConfig(**cfg))
    assert splits["path"].str.endswith("_0.jpg").all()
    assert splits["split"].value_counts().to_dict() == {"train": 2, "val": 2, "test": 2}
    # train may keep every copy; the extra copies of val and test photos stay in no split (in train
    # they would be test photos seen in training)
    every_train = splitting.stratified_split(frame, ["a"], SplitConfig(**cfg, copies_in_train="all"))
    assert every_train["split"].value_counts().to_dict() == {"train": 6, "val": 2, "test": 2}
    assert splitting.copies_across(every_train) == {"val_with_train_copy": 0, "test_with_train_copy": 0}
    every = splitting.stratified_split(frame, ["a"], SplitConfig(**cfg, copies_in_eval="all", copies_in_train="all"))
    assert len(every) == 18 and (every["split"] == "test").sum() == 6

    # the same photos land in the same splits whatever the copies settings
    def photos_of(table, name):
        return set(table.loc[table["split"] == name, "dup_group"])

    for name in ("train", "val", "test"):
        assert photos_of(every, name) == photos_of(every_train, name) == photos_of(splits, name)


@pytest.mark.parametrize(
    "n, fractions, expected",
    [
        (3, (0.9, 0.05, 0.05), {"train": 1, "val": 1, "test": 1}),  # round(0.15) = 0: at least one each
        (4, (0.1, 0.5, 0.4), {"train": 1, "val": 2, "test": 1}),  # 2 + 2 would leave train empty: test gives one
        (5, (0.2, 0.4, 0.4), {"train": 1, "val": 2, "test": 2}),  # 2 + 2 leaves one for train: kept
        (6, (0.2, 0.4, 0.4), {"train": 2, "val": 2, "test": 2}),
    ],
)
def test_small_classes_keep_one_image_in_each_split(n, fractions, expected):
    train, val, test = fractions
    splits = splitting.stratified_split(_frame({"a": n}), ["a"], SplitConfig(train=train, val=val, test=test))
    assert splits["split"].value_counts().to_dict() == expected


@settings(max_examples=60, deadline=None)
@given(
    photos=st.lists(st.lists(st.integers(1, 4), min_size=10, max_size=40), min_size=2, max_size=4),
    val=st.floats(0.1, 0.3),
    test=st.floats(0.1, 0.3),
    seed=st.integers(0, 2**32 - 1),
    mislabelled=st.integers(0, 3),
)
def test_any_collection_with_copies_splits_photos_by_their_fractions(photos, val, test, seed, mislabelled):
    """The issue's promise: copies (1 to 4 of a photo, mixed across classes), each split's distinct
    photos per class within one of its fraction, test files = test photos, no photo in two splits."""
    labels = [f"c{i}" for i in range(len(photos))]
    frame = _frame({label: len(counts) for label, counts in zip(labels, photos, strict=True)},
                   dict(zip(labels, photos, strict=True)))
    # a few photos of the first class also filed under the second (copies mixed across classes)
    import pandas as pd

    moved = frame[(frame["label"] == labels[0])].head(mislabelled).assign(label=labels[1])
    moved = moved.assign(path="x/" + moved["path"], dup_group=moved["dup_group"].where(moved["dup_group"] != "",
                                                                                      moved["path"]))
    frame.loc[frame["path"].isin(moved["dup_group"]), "dup_group"] = frame["path"]
    frame = pd.concat([frame, moved], ignore_index=True)
    cfg = SplitConfig(train=1 - val - test, val=val, test=test, seed=seed)
    splits = splitting.stratified_split(frame, labels, cfg)
    keys = splitting.photo_keys(splits)
    assert (keys.groupby(keys).apply(lambda k: splits.loc[k.index, "split"].nunique()) == 1).all()
    mixed = splitting.conflicted(frame)
    for label in labels:
        part = splits[(splits["label"] == label) & ~splits["path"].isin(frame.loc[mixed, "path"])]
        sizes = splitting.split_sizes(part)
        total = sum(size["photos"] for size in sizes.values())
        for name, share in (("train", cfg.train), ("val", val), ("test", test)):
            assert abs(sizes[name]["photos"] - total * share) <= 1 + 1e-9, (label, name, sizes, total)  # 1 - 0.3 - 0.3 is not 0.4
        assert sizes["test"]["files"] == sizes["test"]["photos"] and sizes["val"]["files"] == sizes["val"]["photos"]
    assert set(splits.loc[splits["path"].isin(frame.loc[mixed, "path"]), "split"]) <= {"train"}
