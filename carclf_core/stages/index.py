"""The index stage: scan ``data.dir``, parse labels, check every image; writes ``index/index.csv``."""

from __future__ import annotations

import time

import pandas as pd

from .. import dataset
from ..errors import StageError
from ..pipeline import StageContext, StageResult
from ..runs import RunDir, atomic_path


def run(ctx: StageContext) -> StageResult:
    cfg = ctx.config.data
    started = time.monotonic()
    frame = dataset.build_index(
        cfg, progress=lambda done, total: ctx.progress(done, total, started), cancelled=ctx.is_cancelled
    )
    ctx.check_cancelled()
    out = ctx.stage_dir()
    with atomic_path(ctx.run.index_csv) as tmp:
        frame.to_csv(tmp, index=False)
    counts = dataset.class_counts(frame)
    with atomic_path(out / "class_counts.csv") as tmp:
        counts.to_csv(tmp, index=False)
    for label, others in dataset.case_variants(frame).items():
        ctx.log("warning", f"class names differing only in case merged into {label!r}: {', '.join(others)}")
    rejected = frame[frame["status"] == dataset.REJECTED]
    for row in rejected.itertuples():
        ctx.log("warning", f"rejected: {row.reason}", file=str(row.path))
    usable = len(frame) - len(rejected)
    if usable == 0:
        raise StageError(f"data.dir: no usable images in {cfg.dir} ({len(frame)} files, all rejected)")
    summary = f"{usable:,} images in {len(counts):,} classes, {len(rejected):,} rejected"
    return StageResult(
        summary, {"images": usable, "classes": len(counts), "rejected": len(rejected), "files": len(frame)}
    )


def load_index(run: RunDir) -> pd.DataFrame:
    """The index table the index stage wrote (every file, with status and reason)."""
    path = run.index_csv
    if not path.is_file():
        raise StageError(f"{path}: missing; run the index stage first")
    return pd.read_csv(path, dtype={"path": str, "label": str, "reason": str}, keep_default_na=False)
