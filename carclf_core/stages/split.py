"""The split stage: keep the top-N classes and make seeded, stratified train/val/test splits.

Writes ``split/splits.csv`` (path, label, class_index, split, dup_group: one row a file in a split;
the extra copies of val and test photos are in none, see :mod:`carclf_core.splitting`) and
``split/classes.json`` (the fixed class order); :func:`load_splits` and :func:`split_files` are their
readers for train and evaluate.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .. import dataset, splitting
from ..config import Config, SplitConfig
from ..display import counted, photos_files
from ..errors import StageError
from ..files import nonregular_reason
from ..pipeline import StageContext, StageResult
from ..prefilter.scores import kept_paths
from ..runs import RunDir, atomic_path, write_json_atomic
from .index import load_index


def usable_images(run: RunDir, config: Config) -> pd.DataFrame:
    """Index rows the later stages may use: checked ok, and kept by the prefilter when it filters.

    Raises:
        StageError: ``prefilter.mode`` is ``filter`` and the run has no prefilter decision yet
            (splitting every indexed image instead would put the pictures the prefilter drops,
            interiors and close-ups, into the test split without a word).
    """
    index = load_index(run)
    usable = index[index["status"] == dataset.OK]
    if config.prefilter.mode != "filter":
        return usable
    kept = kept_paths(run)
    if kept is None:
        raise StageError(
            f"split: prefilter.mode is filter, but the prefilter has not decided which images to keep "
            f"({run.kept_csv} is missing)",
            f"run the prefilter stage first (carclf-tui --resume {run.path} --stage prefilter), "
            "or set prefilter.mode: off to split every indexed image",
        )
    return usable[usable["path"].isin(kept)]


def run(ctx: StageContext) -> StageResult:
    cfg = ctx.config.split
    usable = usable_images(ctx.run, ctx.config)
    counts = splitting.photo_counts(usable, cfg)
    classes = splitting.select_classes(counts, cfg.top_n, cfg.min_per_class)
    small = counts[counts["count"] < cfg.min_per_class]
    for label, photos, files in zip(small["label"], small["count"].tolist(), small["images"].tolist(), strict=True):
        size = counted(photos, "image") if photos == files else photos_files(photos, files)
        ctx.log("warning", f"class {label!r} dropped: {size} < split.min_per_class {cfg.min_per_class}")
    if len(classes) < 2:
        raise StageError(
            f"split: {counted(len(classes), 'class')} left after filtering (need at least 2)",
            _too_few_classes_hint(counts, cfg),
        )
    mixed = usable["label"].isin(classes) & splitting.conflicted(usable, cfg.group_duplicates)
    if mixed.any():
        where = "put in train only" if cfg.conflicts == "train" else "left out"
        ctx.log(
            "warning",
            f"{int(mixed.sum())} images are copies of a photo filed under two or more labels: {where} "
            "(split.conflicts; the index stage named them)",
        )
    splits = splitting.stratified_split(usable, classes, cfg)
    with atomic_path(ctx.run.splits_csv) as tmp:
        splits.to_csv(tmp, index=False)
    write_json_atomic(ctx.run.classes_json, list(classes))
    sizes = splitting.split_sizes(splits)
    # files of the chosen classes in no split: the extra copies of val and test photos (and of train
    # photos with split.copies_in_train: one); conflicted files are counted on their own
    chosen = int(usable["label"].isin(classes).sum())
    conflicts_dropped = int(mixed.sum()) if cfg.conflicts == "drop" else 0
    copies_left_out = chosen - len(splits) - conflicts_dropped
    if copies_left_out:
        ctx.log(
            "info",
            f"{counted(copies_left_out, 'copy', 'copies')} of photos already in a split left out "
            f"(split.copies_in_eval: {cfg.copies_in_eval}, split.copies_in_train: {cfg.copies_in_train})",
        )
    leaks = splitting.copies_across(splits)
    summary = f"{counted(len(classes), 'class')}: " + " / ".join(
        f"{name} {photos_files(sizes[name]['photos'], sizes[name]['files'])}" for name in splitting.SPLITS
    )
    if leaks.get("test_with_train_copy"):
        summary += f"; {leaks['test_with_train_copy']:,} test images have a copy in train (split.group_duplicates off)"
        ctx.log("warning", summary.split("; ", 1)[1])
    data: dict = {"classes": len(classes)}
    for name in splitting.SPLITS:
        data[name] = sizes[name]["files"]
        data[f"{name}_photos"] = sizes[name]["photos"]
    data.update(leaks)
    data["copies_left_out"] = copies_left_out
    data["conflicted_images"] = int(mixed.sum())
    return StageResult(summary, data)


def _too_few_classes_hint(counts: pd.DataFrame, cfg: SplitConfig) -> str:
    """Advice a user can follow when fewer than two classes are left: a setting that would help, or
    more images when no allowed setting would."""
    if cfg.top_n < 2:
        return "raise split.top_n to 2 or more"
    # the second-largest class decides whether two classes can pass split.min_per_class
    second = int(counts["count"].iloc[1]) if len(counts) >= 2 else 0
    if second >= 3:
        return f"lower split.min_per_class to {second} (minimum 3), or add images"
    enough = int((counts["count"] >= 3).sum())
    return (
        "add images: each class needs at least 3 distinct photos (one each for train, val and test), "
        f"and {counted(enough, 'class')} {'has' if enough == 1 else 'have'} that many"
    )


def load_splits(run: RunDir) -> tuple[pd.DataFrame, list[str]]:
    """The split table and class list written by the split stage."""
    for path in (run.splits_csv, run.classes_json):
        if not path.is_file():
            raise StageError(f"{path}: missing; run the split stage first")
    splits = pd.read_csv(
        run.splits_csv, dtype={"path": str, "label": str, "split": str, "dup_group": str}, keep_default_na=False
    )
    classes = json.loads(run.classes_json.read_text(encoding="utf-8"))
    return splits, list(classes)


def split_files(
    splits: pd.DataFrame, split: str, data_dir: str, ctx: StageContext | None = None
) -> tuple[list[str], np.ndarray]:
    """Paths (joined with ``data.dir``) and class indices of one split, in saved order.

    Files that vanished since the index stage are left out, each named in a warning through ``ctx``,
    so a deleted image costs one sample rather than the epoch (or misaligned test predictions).
    """
    part = splits[splits["split"] == split]
    root = Path(data_dir)
    paths = [str(root / p) for p in part["path"]]
    labels = part["class_index"].to_numpy(dtype=np.int32)
    # stat, not open: a name replaced by a FIFO would block the tf.data read for good
    problems = [nonregular_reason(p) for p in paths]
    present = np.array([problem is None for problem in problems], dtype=bool)
    if not present.all():
        for rel, problem in zip(part["path"].to_numpy()[~present], filter(None, problems), strict=True):
            if ctx is not None:
                what = "missing since indexing" if problem == "missing" else f"now {problem}"
                ctx.log("warning", f"{split} image {what}, left out", file=str(rel))
        paths = [p for p, ok in zip(paths, present, strict=True) if ok]
        labels = labels[present]
    return paths, labels
