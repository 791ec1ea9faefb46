"""The split: pick the classes, then place each class's distinct photos into train, val and test.

A **photo** is one picture, whatever the number of files showing it: the copies of a photo (the
index's ``dup_group``, byte-identical files, or with ``data.near_duplicates`` resized or re-encoded
ones) are one photo, and a file without copies is a photo of its own. The split's fractions apply to
photos, class by class, so a class's val and test hold ``round(photos x fraction)`` distinct photos;
by default (``split.copies_in_eval: one``) val and test hold one file per photo, so every test figure
counts each photo once. Pure pandas and numpy; no TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .config import SplitConfig
from .display import photos_files
from .errors import DatasetError

SPLITS = ("train", "val", "test")


def photo_keys(frame: pd.DataFrame, group_duplicates: bool = True) -> pd.Series:
    """Which photo each row shows: its ``dup_group``, or its own path when it has no copies (or
    grouping is off, or the index predates duplicate groups)."""
    paths = frame["path"].astype(str)
    if not group_duplicates or "dup_group" not in frame.columns:
        return paths
    groups = frame["dup_group"].fillna("").astype(str)
    return groups.where(groups != "", paths)


def conflicted(frame: pd.DataFrame, group_duplicates: bool = True) -> pd.Series:
    """True for rows whose photo also appears under another label (copies filed as two cars)."""
    keys = photo_keys(frame, group_duplicates)
    labels_per_photo = frame["label"].groupby(keys).transform("nunique")
    return labels_per_photo > 1


def photo_counts(frame: pd.DataFrame, cfg: SplitConfig) -> pd.DataFrame:
    """Distinct photos per label (copies count once; conflicted photos, which never reach val or
    test, not at all), most first, ties by name: the ``label``, ``count``, ``images`` table that
    :func:`select_classes` ranks."""
    clean = frame[~conflicted(frame, cfg.group_duplicates)]
    keys = photo_keys(clean, cfg.group_duplicates)
    counts = pd.DataFrame(
        {
            "count": keys.groupby(clean["label"]).nunique(),
            "images": clean.groupby("label").size(),
        }
    ).rename_axis("label")
    counts = counts.reset_index().astype({"count": "int64", "images": "int64"})
    return counts.sort_values(["count", "label"], ascending=[False, True], kind="stable").reset_index(drop=True)


def select_classes(counts: pd.DataFrame, top_n: int, min_per_class: int) -> list[str]:
    """The ``top_n`` most frequent labels with at least ``min_per_class`` photos, sorted by name."""
    ranked = counts.sort_values(["count", "label"], ascending=[False, True], kind="stable")
    chosen = ranked[ranked["count"] >= min_per_class].head(top_n)
    return sorted(chosen["label"].tolist())


def photo_targets(photos: int, val: float, test: float) -> tuple[int, int]:
    """How many of a class's ``photos`` go to val and to test.

    ``round(photos x fraction)`` each (Python's round: 2.5 -> 2), at least one each, and at least one
    photo left for train: when val and test would take them all, the one furthest above its exact
    share gives one back (val on a tie). Each count is then within one photo of its exact share
    whenever that share is at least half a photo.

    Raises:
        ValueError: fewer than 3 photos (train, val and test each need one).
    """
    if photos < 3:
        raise ValueError(f"{photos} photos cannot fill three splits")
    n_val = max(1, round(photos * val))
    n_test = max(1, round(photos * test))
    while n_val + n_test > photos - 1:
        if n_test == 1 or (n_val > 1 and n_val - photos * val >= n_test - photos * test):
            n_val -= 1
        else:
            n_test -= 1
    return n_val, n_test


def _first_of_each(photo: np.ndarray) -> np.ndarray:
    """True for the first row of each photo (rows in path order: the copy with the first path)."""
    first = np.zeros(len(photo), dtype=bool)
    first[np.unique(photo, return_index=True)[1]] = True
    return first


def stratified_split(frame: pd.DataFrame, classes: Sequence[str], cfg: SplitConfig) -> pd.DataFrame:
    """Assign the files of the chosen classes to train, val or test: class by class, photo by photo.

    Within each class the distinct photos are shuffled (seeded) and the first ``n_test`` go to test,
    the next ``n_val`` to val (:func:`photo_targets`), the rest to train: exact counts of photos,
    whatever the number of copies each has. A photo is never in two splits. With
    ``cfg.copies_in_eval == "one"`` a val or test photo keeps only its first file (by path); its other
    copies are in no split (in train they would be a test photo seen in training). With
    ``cfg.copies_in_train == "one"`` a train photo keeps one file too. Photos filed under two labels
    (looked up over all of ``frame``, not only the chosen classes) go to train or are dropped, as
    ``cfg.conflicts`` says. With ``cfg.group_duplicates`` off each file is a photo of its own. The
    result depends only on the seed, the class list and the rows, not their order.

    Args:
        frame: usable index rows: ``path``, ``label`` and, for grouping, ``dup_group``.
        classes: the labels to keep, in class-index order.
        cfg: the ``split`` config section.

    Returns:
        ``path``, ``label``, ``class_index``, ``split`` and ``dup_group`` for every kept file of
        ``classes``, sorted by split then path.

    Raises:
        DatasetError: a class with fewer than 3 distinct photos, or no classes.
    """
    rng = np.random.default_rng(cfg.seed)
    frame = frame.sort_values("path", kind="stable").reset_index(drop=True)
    frame = frame.assign(
        _key=photo_keys(frame, cfg.group_duplicates),
        _conflict=conflicted(frame, cfg.group_duplicates),
        dup_group=frame["dup_group"].fillna("").astype(str) if "dup_group" in frame.columns else "",
    )
    # each class's rows found in one pass (in path order), and decided as arrays: a scan of every
    # row, or a copy of the table, a class is 3,000 of them at 3,000 classes
    positions = frame.groupby("label", sort=False).indices
    keys_all = frame["_key"].to_numpy(dtype=str)
    conflict_all = frame["_conflict"].to_numpy(dtype=bool)
    split = np.full(len(frame), "", dtype=object)
    class_of = np.full(len(frame), -1, dtype=np.int64)
    one_in_train = cfg.copies_in_train == "one"
    for class_index, label in enumerate(classes):
        rows = np.sort(np.asarray(positions.get(label, ()), dtype=np.intp))
        mixed = rows[conflict_all[rows]]
        if cfg.conflicts == "train" and len(mixed):
            if one_in_train:
                mixed = mixed[_first_of_each(keys_all[mixed])]
            split[mixed], class_of[mixed] = "train", class_index
        rows = rows[~conflict_all[rows]]
        keys, photo_of = np.unique(keys_all[rows], return_inverse=True)
        if len(keys) < 3:
            raise DatasetError(
                f"class {label!r} has {photos_files(len(keys), len(rows))}; train, val and test each need one",
                "add images, or keep such classes out with split.min_per_class (minimum 3)",
            )
        n_val, n_test = photo_targets(len(keys), cfg.val, cfg.test)
        place = np.full(len(keys), "train", dtype=object)
        order = rng.permutation(len(keys))
        place[order[:n_test]] = "test"
        place[order[n_test : n_test + n_val]] = "val"
        placed = place[photo_of]
        keep = np.ones(len(rows), dtype=bool)
        first = _first_of_each(photo_of)
        if cfg.copies_in_eval == "one":
            keep &= (placed == "train") | first
        if one_in_train:
            keep &= (placed != "train") | first
        split[rows[keep]], class_of[rows[keep]] = placed[keep], class_index
    chosen = class_of >= 0
    if not chosen.any():
        raise DatasetError("no classes to split")
    result = frame.loc[chosen, ["path", "label"]].assign(
        class_index=class_of[chosen], split=split[chosen], dup_group=frame.loc[chosen, "dup_group"]
    )
    result["_order"] = result["split"].map({name: i for i, name in enumerate(SPLITS)})
    return result.sort_values(["_order", "path"], kind="stable").drop(columns="_order").reset_index(drop=True)


def split_sizes(splits: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Distinct photos and files in each split of a split table.

    Returns:
        ``{"train": {"photos": p, "files": f}, "val": ..., "test": ...}``; a photo is its
        ``dup_group`` (its path when it has none, or the table has no such column).
    """
    keys = photo_keys(splits)
    return {
        name: {"photos": int(keys[splits["split"] == name].nunique()), "files": int((splits["split"] == name).sum())}
        for name in SPLITS
    }


def copies_across(splits: pd.DataFrame) -> dict[str, int]:
    """How many val and test images have a copy (same ``dup_group``) in train: the leak that makes a
    score mean nothing. Zero when the split grouped duplicates.

    Returns:
        ``{"val_with_train_copy": k, "test_with_train_copy": m}``; empty when ``splits`` has no
        ``dup_group`` column (made before duplicates were grouped).
    """
    if "dup_group" not in splits.columns:
        return {}
    groups = splits["dup_group"].fillna("").astype(str)
    in_train = set(groups[(splits["split"] == "train") & (groups != "")])
    return {
        f"{name}_with_train_copy": int(((splits["split"] == name) & groups.isin(in_train) & (groups != "")).sum())
        for name in ("val", "test")
    }
