"""The split stage: keep the top-N classes and make seeded, stratified train/val/test splits.

Writes ``split/splits.csv`` (path, label, class_index, split) and ``split/classes.json`` (the fixed
class order); :func:`load_splits` and :func:`split_files` are their readers for train and evaluate.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .. import dataset
from ..config import Config
from ..errors import StageError
from ..pipeline import StageContext, StageResult
from ..prefilter.scores import kept_paths
from ..runs import RunDir, atomic_path, write_json_atomic
from .index import load_index


def usable_images(run: RunDir, config: Config) -> pd.DataFrame:
    """Index rows the later stages may use: checked ok, and kept by the prefilter when it filters."""
    index = load_index(run)
    usable = index[index["status"] == dataset.OK]
    kept = kept_paths(run) if config.prefilter.mode == "filter" else None
    if kept is not None:
        usable = usable[usable["path"].isin(kept)]
    return usable


def run(ctx: StageContext) -> StageResult:
    cfg = ctx.config.split
    usable = usable_images(ctx.run, ctx.config)
    counts = dataset.class_counts(usable.assign(status=dataset.OK))
    classes = dataset.select_classes(counts, cfg.top_n, cfg.min_per_class)
    small = counts[counts["count"] < cfg.min_per_class]
    for row in small.itertuples():
        ctx.log("warning", f"class {row.label!r} dropped: {row.count} images < split.min_per_class {cfg.min_per_class}")
    if len(classes) < 2:
        raise StageError(
            f"split: {len(classes)} class(es) left after filtering (need at least 2); "
            f"lower split.min_per_class or add images"
        )
    splits = dataset.stratified_split(usable, classes, cfg)
    with atomic_path(ctx.run.splits_csv) as tmp:
        splits.to_csv(tmp, index=False)
    write_json_atomic(ctx.run.classes_json, list(classes))
    sizes = splits["split"].value_counts().to_dict()
    summary = (
        f"{len(classes)} classes: {sizes.get('train', 0):,} train / {sizes.get('val', 0):,} val / "
        f"{sizes.get('test', 0):,} test"
    )
    return StageResult(summary, {"classes": len(classes), **{str(k): int(v) for k, v in sizes.items()}})


def load_splits(run: RunDir) -> tuple[pd.DataFrame, list[str]]:
    """The split table and class list written by the split stage."""
    for path in (run.splits_csv, run.classes_json):
        if not path.is_file():
            raise StageError(f"{path}: missing; run the split stage first")
    splits = pd.read_csv(run.splits_csv, dtype={"path": str, "label": str, "split": str}, keep_default_na=False)
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
    present = np.array([Path(p).is_file() for p in paths], dtype=bool)
    if not present.all():
        for rel in part["path"].to_numpy()[~present]:
            if ctx is not None:
                ctx.log("warning", f"{split} image missing since indexing, left out", file=str(rel))
        paths = [p for p, ok in zip(paths, present, strict=True) if ok]
        labels = labels[present]
    return paths, labels
