"""The index stage: scan ``data.dir``, parse labels, check every image; writes ``index/index.csv``."""

from __future__ import annotations

import time

import pandas as pd

from .. import dataset
from ..display import counted
from ..errors import StageError
from ..pipeline import StageContext, StageResult
from ..runs import RunDir, atomic_path

LAYOUT_CHOSEN = {
    "filenames": "data.layout auto: labels from the file names (data.fields); set data.layout: folders for "
    "class folders",
    "folders": "data.layout auto: labels from the class folders (most file names do not parse as data.fields); "
    "set data.layout: filenames to read the names",
}
"""What the log says ``data.layout: auto`` chose."""


def run(ctx: StageContext) -> StageResult:
    cfg = ctx.config.data
    started = time.monotonic()
    frame = dataset.build_index(
        cfg,
        progress=lambda done, total: ctx.progress(done, total, started),
        cancelled=ctx.is_cancelled,
        chose_layout=lambda layout: ctx.log("info", LAYOUT_CHOSEN[layout]),
    )
    ctx.check_cancelled()
    out = ctx.stage_dir()
    with atomic_path(ctx.run.index_csv) as tmp:
        frame.to_csv(tmp, index=False)
    counts = dataset.class_counts(frame)
    with atomic_path(out / "class_counts.csv") as tmp:
        counts.to_csv(tmp, index=False)
    for label, others in dataset.case_variants(frame).items():
        merged = ", ".join(map(ascii, others))  # NFC and NFD spellings look the same on screen: ascii() tells
        ctx.log("warning", f"class names differing only in case or Unicode form merged into {ascii(label)}: {merged}")
    for alike in dataset.confusable_labels(counts["label"]):
        ctx.log(
            "warning",
            f"{len(alike)} classes look alike but are spelled with different letters: {', '.join(map(ascii, alike))}; "
            "they stay separate classes: rename the files or folders of the wrong ones",
        )
    rejected = frame[frame["status"] == dataset.REJECTED]
    for row in rejected.itertuples():
        ctx.log("warning", f"rejected: {row.reason}", file=str(row.path))
    skipped = frame[frame["status"] == dataset.SKIPPED]
    for reason, files in skipped.groupby("reason", sort=True):
        # one line a reason: a photo folder can hold thousands of sidecar files
        ctx.log("info", f"skipped {counted(len(files), 'file')}: {reason} (first: {files['path'].iloc[0]})")
    photos, copies = dataset.duplicate_summary(frame)
    if copies:
        kind = "identical or near-identical" if cfg.near_duplicates else "byte-identical"
        ctx.log("info", f"{copies:,} {kind} copies of {photos:,} photos; the split counts each photo once")
    conflicts = dataset.label_conflicts(frame)
    for group, labels, paths in conflicts:
        ctx.log(
            "warning",
            f"one photo filed under {len(labels)} labels ({', '.join(labels)}): {', '.join(paths)}",
            file=group,
        )
    usable = int((frame["status"] == dataset.OK).sum())
    if usable == 0:
        raise StageError(
            f"data.dir: no usable images in {cfg.dir} ({len(frame):,} files: {len(rejected):,} rejected, "
            f"{len(skipped):,} skipped)",
            dataset.no_images_hint(frame, cfg),
        )
    layout = dataset.layout_hint(frame, cfg)
    if layout:
        ctx.log("warning", layout)
    summary = f"{counted(usable, 'image')} in {counted(len(counts), 'class')}, {len(rejected):,} rejected"
    if len(skipped):
        summary += f", {len(skipped):,} skipped"
    if copies:
        summary += f"; {copies:,} copies of {photos:,} photos"
    data = {
        "images": usable,
        "classes": len(counts),
        "rejected": len(rejected),
        "skipped": len(skipped),
        "files": len(frame),
        "duplicate_photos": photos,
        "duplicate_copies": copies,
        "label_conflicts": len(conflicts),
    }
    return StageResult(summary, data)


def load_index(run: RunDir) -> pd.DataFrame:
    """The index table the index stage wrote (every file, with status and reason)."""
    path = run.index_csv
    if not path.is_file():
        raise StageError(f"{path}: missing; run the index stage first")
    # hashes of digits only and group paths must stay text, not become numbers
    text = {name: str for name in ("path", "label", "status", "reason", "format", "sha", "dup_group", "phash")}
    return pd.read_csv(path, dtype=text, keep_default_na=False)
