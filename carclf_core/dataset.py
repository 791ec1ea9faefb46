"""Dataset index: scan a folder, parse Car Connection file names, check images, pick classes, split.

Pure Python + pandas + Pillow; no TensorFlow. Bad files never raise: they are recorded in the index
with ``status = rejected`` and a ``reason``, so the user sees every refusal.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from .config import DataConfig, SplitConfig
from .errors import DatasetError
from .images import OK, REJECTED, check_image

MISSING = "nan"


class FilenameError(ValueError):
    """A file name that does not parse; the message says why."""


def parse_filename(name: str, fields: Sequence[str], separator: str = "_") -> dict[str, str | None]:
    """Split a Car Connection file name into its fields.

    Fields may contain spaces and hyphens (``Land Rover``, ``Mercedes-Benz``); the literal ``nan``
    becomes ``None``.

    Args:
        name: file name, with or without folders and extension.
        fields: field names in order (17 for Car Connection).
        separator: the field separator.

    Returns:
        Mapping of field name to value (``None`` where missing).

    Raises:
        FilenameError: wrong field count, or an empty or missing make or model.
    """
    stem = Path(name).stem
    parts = stem.split(separator)
    if len(parts) != len(fields):
        raise FilenameError(f"expected {len(fields)} fields separated by {separator!r}, found {len(parts)}")
    values = {
        key: (None if part.strip() in ("", MISSING) else part.strip()) for key, part in zip(fields, parts, strict=True)
    }
    for key in ("make", "model"):
        if values.get(key) is None:
            raise FilenameError(f"{key} is empty")
    return values


def label_of(values: dict[str, str | None], label: str) -> str:
    """``make`` or ``make_model`` from parsed fields."""
    if label == "make":
        return str(values["make"])
    return f"{values['make']}_{values['model']}"


def scan(root: Path, extensions: Sequence[str]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Find image files under ``root`` (following no directory links, so loops cannot trap it).

    Returns:
        Image paths, sorted; and ``(path, reason)`` for entries that were skipped (broken links,
        linked folders, unreadable folders).
    """
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"data.dir: folder {root} does not exist")
    if not root.is_dir():
        raise DatasetError(f"data.dir: {root} is not a folder")
    wanted = {"." + e.lower().lstrip(".") for e in extensions}
    found: list[Path] = []
    skipped: list[tuple[Path, str]] = []

    def on_error(exc: OSError) -> None:
        skipped.append((Path(exc.filename or root), f"unreadable folder ({exc.strerror})"))

    for folder, dirs, files in os.walk(root, onerror=on_error, followlinks=False):
        base = Path(folder)
        for d in dirs:
            if (base / d).is_symlink():
                skipped.append((base / d, "linked folder not followed"))
        dirs.sort()
        for name in sorted(files):
            path = base / name
            if Path(name).suffix.lower() not in wanted:
                continue
            try:
                mode = path.stat().st_mode  # follows file links; fails on broken or looping ones
            except OSError as exc:
                skipped.append((path, f"broken link ({exc.strerror})"))
                continue
            if stat.S_ISREG(mode):
                found.append(path)
            else:
                skipped.append((path, "not a regular file"))
    return sorted(found), skipped


def _folder_label(path: Path, root: Path) -> str | None:
    rel = path.relative_to(root)
    return rel.parts[0] if len(rel.parts) >= 2 else None


def resolve_layout(paths: Sequence[Path], root: Path, cfg: DataConfig) -> str:
    """``filenames`` or ``folders``: what ``auto`` means for these files."""
    if cfg.layout != "auto":
        return cfg.layout
    if not paths:
        return "filenames"
    parsed = 0
    for path in paths[:200]:
        try:
            parse_filename(path.name, cfg.fields, cfg.separator)
            parsed += 1
        except FilenameError:
            pass
    in_folders = all(_folder_label(p, root) for p in paths[:200])
    return "folders" if in_folders and parsed < len(paths[:200]) / 2 else "filenames"


INDEX_COLUMNS = ("path", "label", "status", "reason", "width", "height", "format", "bytes")


def build_index(
    cfg: DataConfig,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> pd.DataFrame:
    """Scan, parse and check every image under ``cfg.dir``.

    Args:
        cfg: the ``data`` config section.
        progress: called with (done, total) as images are checked.
        cancelled: polled between images; when it returns True the scan stops early and the
            returned table holds only what was checked.

    Returns:
        One row per file: ``path`` (relative to the data folder), ``label``, ``status``
        (``ok``/``rejected``), ``reason``, image size and format, and the parsed file-name fields.
    """
    root = Path(cfg.dir)
    paths, skipped = scan(root, cfg.extensions)
    layout = resolve_layout(paths, root, cfg)
    rows: list[dict] = [
        {
            "path": str(p.relative_to(root)) if p.is_relative_to(root) else str(p),
            "label": "",
            "status": REJECTED,
            "reason": reason,
        }
        for p, reason in skipped
    ]

    def one(path: Path) -> dict:
        row: dict = {"path": str(path.relative_to(root))}
        if layout == "folders":
            label = _folder_label(path, root)
            row["label"] = label or ""
            name_problem = None if label else "not inside a class folder"
        else:
            try:
                values = parse_filename(path.name, cfg.fields, cfg.separator)
                row.update({k: v for k, v in values.items() if k not in ("path",)})
                row["label"] = label_of(values, cfg.label)
                name_problem = None
            except FilenameError as exc:
                row["label"] = ""
                name_problem = f"file name: {exc}"
        check = check_image(path)
        row.update(width=check.width, height=check.height, format=check.format, bytes=check.bytes)
        if name_problem:
            row.update(status=REJECTED, reason=name_problem)
        else:
            row.update(status=check.status, reason=check.reason)
        return row

    total = len(paths)
    with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
        for done, row in enumerate(_ordered_map(pool, one, paths, cancelled), start=1):
            rows.append(row)
            if progress and (done % 64 == 0 or done == total):
                progress(done, total)
    frame = pd.DataFrame(rows)
    for column in INDEX_COLUMNS:
        if column not in frame.columns:
            frame[column] = "" if column in ("label", "reason", "format") else 0
    ordered = list(INDEX_COLUMNS) + [c for c in cfg.fields if c in frame.columns and c not in INDEX_COLUMNS]
    frame = frame[ordered + [c for c in frame.columns if c not in ordered]]
    frame = frame.sort_values("path", kind="stable").reset_index(drop=True)
    frame["label"] = merge_case_variants(frame["label"].fillna(""))
    frame[["width", "height", "bytes"]] = frame[["width", "height", "bytes"]].fillna(0).astype("int64")
    frame["reason"] = frame["reason"].fillna("")
    frame["label"] = frame["label"].fillna("")
    return frame


def _ordered_map(pool: ThreadPoolExecutor, fn, items: Sequence, cancelled) -> Iterator:
    """``pool.map`` in bounded windows, so a cancel stops within one window."""
    window = 256
    for start in range(0, len(items), window):
        if cancelled and cancelled():
            return
        yield from pool.map(fn, items[start : start + window])


def merge_case_variants(labels: pd.Series) -> pd.Series:
    """Map labels that differ only in letter case (``BMW_X5`` / ``bmw_x5``) to one spelling.

    Scraped names are not consistent in case, and two classes that are one car would split its
    images and confuse each other. The spelling used most wins (ties: the first in sort order).
    """
    present = labels[labels != ""]
    if present.empty:
        return labels
    counts = present.value_counts()
    canonical: dict[str, str] = {}
    for label in sorted(counts.index, key=lambda lbl: (-counts[lbl], lbl)):
        canonical.setdefault(label.casefold(), label)
    mapping = {label: canonical[label.casefold()] for label in counts.index}
    return labels.map(lambda lbl: mapping.get(lbl, lbl))


def case_variants(index: pd.DataFrame) -> dict[str, list[str]]:
    """Canonical label -> the other spellings that were merged into it (for a warning)."""
    if "make" not in index.columns or "model" not in index.columns:
        return {}
    raw = index["make"].astype(str) + "_" + index["model"].astype(str)
    merged: dict[str, set[str]] = {}
    for original, label in zip(raw, index["label"], strict=True):
        if label and original != label and original.casefold() == label.casefold():
            merged.setdefault(label, set()).add(original)
    return {label: sorted(others) for label, others in sorted(merged.items())}


def class_counts(index: pd.DataFrame) -> pd.DataFrame:
    """Images per label among usable rows, most frequent first, ties by name."""
    usable = index[index["status"] == OK]
    counts = usable.groupby("label").size().rename("count").reset_index()
    return counts.sort_values(["count", "label"], ascending=[False, True], kind="stable").reset_index(drop=True)


def select_classes(counts: pd.DataFrame, top_n: int, min_per_class: int) -> list[str]:
    """The ``top_n`` most frequent labels with at least ``min_per_class`` images, sorted by name."""
    ranked = counts.sort_values(["count", "label"], ascending=[False, True], kind="stable")
    chosen = ranked[ranked["count"] >= min_per_class].head(top_n)
    return sorted(chosen["label"].tolist())


def stratified_split(frame: pd.DataFrame, classes: Sequence[str], cfg: SplitConfig) -> pd.DataFrame:
    """Assign each image of the chosen classes to train, val or test, class by class.

    Within each class the val and test counts are ``round(n * fraction)`` (at least one each), so
    every class's split sizes are within one image of the configured fractions; train takes the rest.
    The result depends only on the seed, the class list and the sorted paths.

    Returns:
        ``path``, ``label``, ``class_index`` and ``split`` for every image of ``classes``, sorted by
        split then path.
    """
    rng = np.random.default_rng(cfg.seed)
    parts = []
    for class_index, label in enumerate(classes):
        paths = np.array(sorted(frame.loc[frame["label"] == label, "path"]), dtype=object)
        n = len(paths)
        if n < 3:
            raise DatasetError(
                f"class {label!r} has {n} image(s); each split needs at least one "
                f"(split.min_per_class keeps such classes out)"
            )
        n_val = max(1, int(round(n * cfg.val)))
        n_test = max(1, int(round(n * cfg.test)))
        if n_val + n_test >= n:
            n_val, n_test = 1, 1
        order = rng.permutation(n)
        assignment = np.empty(n, dtype=object)
        assignment[order[:n_test]] = "test"
        assignment[order[n_test : n_test + n_val]] = "val"
        assignment[order[n_test + n_val :]] = "train"
        parts.append(pd.DataFrame({"path": paths, "label": label, "class_index": class_index, "split": assignment}))
    if not parts:
        raise DatasetError("no classes to split")
    result = pd.concat(parts, ignore_index=True)
    split_order = {"train": 0, "val": 1, "test": 2}
    result["_order"] = result["split"].map(split_order)
    return result.sort_values(["_order", "path"], kind="stable").drop(columns="_order").reset_index(drop=True)
