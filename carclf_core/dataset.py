"""Dataset index: scan a folder, parse Car Connection file names, check images, find copies.

The split (photos, classes, train/val/test) is :mod:`carclf_core.splitting`.

Pure Python + pandas + Pillow; no TensorFlow. Bad files never raise: they are recorded in the index
with ``status = rejected`` and a ``reason``, so the user sees every refusal.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import stat
import sys
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from .config import INDEX_COLUMNS, DataConfig
from .errors import DatasetError
from .images import OK, REJECTED, check_image

MISSING = "nan"
SKIPPED = "skipped"
"""Index status of a file that is not meant as an image (another ending, hidden); never an error."""


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
    # one string a distinct value (a year, a make, a body style), not one a file: 300,000 names
    # repeat a few hundred values, and the index holds them all at once
    values = {
        key: (None if part.strip() in ("", MISSING) else sys.intern(part.strip()))
        for key, part in zip(fields, parts, strict=True)
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


def display_path(path: Path | str) -> str:
    """``path`` as index.csv and the log show it: a name that is not UTF-8 gets its odd bytes
    backslash-escaped (``bad\\xff.jpg``), so every table and event stays valid UTF-8."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # os.walk hands undecodable bytes over as surrogate escapes
        return os.fsencode(text).decode("utf-8", "backslashreplace")
    return text


def _ending_problem(name: str, wanted: set[str]) -> str | None:
    suffix = Path(name).suffix.lower()
    if suffix in wanted:
        return None
    endings = ", ".join(sorted(e.lstrip(".") for e in wanted))
    if not suffix:
        return f"no file ending; data.extensions is {endings}"
    return f"ending {suffix} not in data.extensions ({endings})"


def scan(root: Path, extensions: Sequence[str]) -> tuple[list[Path], list[tuple[Path, str, str]]]:
    """List every file under ``root``: the images to check, and the rest with why each is left out.

    Follows no directory links, so loops cannot trap it. Hidden files and folders (names starting
    with ``.``, such as macOS's ``._photo.jpg`` resource forks) are skipped, as are files whose
    ending is not in ``extensions``; a path that is not valid UTF-8 is rejected (later stages could
    not name it).

    Returns:
        Image paths, sorted; and ``(path, status, reason)`` for every other entry: ``skipped``
        (hidden, another ending) or ``rejected`` (broken link, linked or unreadable folder, name not
        UTF-8, not a regular file).
    """
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"data.dir: folder {root} does not exist")
    if not root.is_dir():
        raise DatasetError(f"data.dir: {root} is not a folder")
    wanted = {"." + e.lower().lstrip(".") for e in extensions}
    found: list[Path] = []
    others: list[tuple[Path, str, str]] = []

    def on_error(exc: OSError) -> None:
        others.append((Path(exc.filename or root), REJECTED, f"unreadable folder ({exc.strerror})"))

    for folder, dirs, files in os.walk(root, onerror=on_error, followlinks=False):
        base = Path(folder)
        for d in list(dirs):
            if (base / d).is_symlink():
                others.append((base / d, REJECTED, "linked folder not followed"))
            elif d.startswith("."):  # .git, .thumbnails: not part of the data, often huge
                others.append((base / d, SKIPPED, "hidden folder, not scanned"))
                dirs.remove(d)
        dirs.sort()
        for name in sorted(files):
            path = base / name
            if display_path(path) != os.fspath(path):
                others.append((path, REJECTED, "name is not valid UTF-8; rename the file or its folder"))
                continue
            if name.startswith("."):
                others.append((path, SKIPPED, "hidden file"))
                continue
            problem = _ending_problem(name, wanted)
            if problem:
                others.append((path, SKIPPED, problem))
                continue
            try:
                mode = path.stat().st_mode  # follows file links; fails on broken or looping ones
            except OSError as exc:
                others.append((path, REJECTED, f"broken link ({exc.strerror})"))
                continue
            if stat.S_ISREG(mode):
                found.append(path)
            else:
                others.append((path, REJECTED, "not a regular file"))
    return sorted(found), others


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


READ_LIMIT = 64 << 20
"""Largest file read into memory whole, to be hashed and checked from that one read (a 40-megapixel
JPEG is about 20 MB); a larger file is hashed in pieces and checked from the disk."""
HASH_DIGEST = 8
"""Bytes of SHA-256 kept as ``sha``: 16 hex digits; two different files among a million share one with
a chance of about 3e-8. SHA-256 because CPUs hash it in hardware (SHA-NI): hashlib took 35 us for a
35 KB photo on the 2-core test machine, blake2b 63 us, md5 66 us."""
HASH_BITS = 64
"""Bits of the perceptual hash (the 8x8 lowest frequencies of a thumbnail)."""
_THUMB = 32
# DCT-II basis for the thumbnail's side: rows are frequencies (unscaled; only signs against the median count)
_DCT = np.cos(np.pi * (2 * np.arange(_THUMB)[None, :] + 1) * np.arange(_THUMB)[:, None] / (2 * _THUMB))


def _read_hashed(path: Path) -> tuple[bytes | None, str]:
    """The file's bytes (None when larger than READ_LIMIT or unreadable) and their SHA-256, 16 hex
    digits ("" when unreadable: the image check then says why)."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size <= READ_LIMIT:
                # read() sizes its buffer from the file; read(READ_LIMIT) would allocate 64 MB each time
                data = handle.read()
                return data, hashlib.sha256(data).hexdigest()[: 2 * HASH_DIGEST]
            digest = hashlib.sha256()
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
            return None, digest.hexdigest()[: 2 * HASH_DIGEST]
    except OSError:
        return None, ""


def perceptual_hash(source: Path | bytes) -> str:
    """pHash: the signs of the 8x8 lowest frequencies of a 32x32 grayscale thumbnail against their median.

    Re-encoding, resizing and small edits keep nearly every bit (a difference hash of neighbouring
    pixels does not: in flat sky or studio walls its bits follow the noise). The EXIF orientation is
    applied first, so a rotated copy of a photo hashes like it.

    Args:
        source: the image file, or its bytes.

    Returns:
        16 hex digits; "" when the image does not decode.
    """
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            image.draft("L", (2 * _THUMB, 2 * _THUMB))  # JPEG: decode scaled down in the DCT
            thumb = ImageOps.exif_transpose(image).convert("L").resize((_THUMB, _THUMB), Image.Resampling.BOX)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return ""
    coefficients = (_DCT @ np.asarray(thumb, dtype=np.float64) @ _DCT.T)[:8, :8].ravel()
    bits = coefficients > np.median(coefficients[1:])  # the mean brightness (DC) does not set the bar
    return f"{int(np.packbits(bits).view('>u8')[0]):016x}"


class _Columns:
    """Rows added as dicts, kept as one list a column: 300,000 index rows as 27 lists of values
    rather than 300,000 dicts of about 1 KB each. A key a row lacks gets None."""

    def __init__(self) -> None:
        self.columns: dict[str, list] = {}
        self.count = 0

    def add(self, row: dict) -> None:
        for key, value in row.items():
            column = self.columns.get(key)
            if column is None:
                column = self.columns[key] = [None] * self.count
            column.append(value)
        self.count += 1
        for column in self.columns.values():
            if len(column) < self.count:
                column.append(None)

    def frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.columns)
        self.columns = {}
        return frame


def build_index(
    cfg: DataConfig,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    chose_layout: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Scan, parse, check and hash every file under ``cfg.dir``.

    Each image is read once: its bytes are hashed (``sha``, SHA-256) and handed to the image check.
    Usable images with the same bytes (or, with ``cfg.near_duplicates``, perceptual hashes within
    ``cfg.near_duplicate_distance`` bits) form a duplicate group.

    Args:
        cfg: the ``data`` config section.
        progress: called with (done, total) as images are checked.
        cancelled: polled between images; when it returns True the scan stops early and the
            returned table holds only what was checked.
        chose_layout: called with the layout ``data.layout: auto`` chose (``filenames`` or
            ``folders``), before any image is read; not called for a set layout.

    Returns:
        One row per file, sorted by path: ``path`` (relative to the data folder; a name that is not
        UTF-8 escaped), ``label``, ``status`` (``ok``/``rejected``/``skipped``), ``reason``,
        ``pixel_width``, ``pixel_height``, ``format``, ``bytes``, ``sha``, ``dup_group`` (the first
        path of the photo's duplicate group, "" for a photo without copies), the parsed file-name
        fields and, with near duplicates on, ``phash``.
    """
    root = Path(cfg.dir)
    paths, others = scan(root, cfg.extensions)
    layout = resolve_layout(paths, root, cfg)
    if chose_layout is not None and cfg.layout == "auto":
        chose_layout(layout)
    rows = _Columns()
    for p, status, reason in others:
        rows.add(
            {
                "path": display_path(p.relative_to(root) if p.is_relative_to(root) else p),
                "label": "",
                "status": status,
                "reason": reason,
            }
        )

    def one(path: Path) -> dict:
        row: dict = {"path": str(path.relative_to(root))}
        if layout == "folders":
            label = _folder_label(path, root)
            row["label"] = label or ""
            name_problem = None if label else "not inside a class folder"
        else:
            try:
                values = parse_filename(path.name, cfg.fields, cfg.separator)
                row.update(values)
                row["label"] = label_of(values, cfg.label)
                name_problem = None
            except FilenameError as exc:
                row["label"] = ""
                name_problem = f"file name: {exc}"
        data, row["sha"] = _read_hashed(path)
        check = check_image(path, data)
        row.update(pixel_width=check.width, pixel_height=check.height, format=check.format, bytes=check.bytes)
        if name_problem:
            row.update(status=REJECTED, reason=name_problem)
        else:
            row.update(status=check.status, reason=check.reason)
        if cfg.near_duplicates and row["status"] == OK:
            row["phash"] = perceptual_hash(data if data is not None else path)
        return row

    total = len(paths)
    with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
        for done, row in enumerate(_ordered_map(pool, one, paths, cancelled), start=1):
            rows.add(row)
            if progress and (done % 64 == 0 or done == total):
                progress(done, total)
    frame = rows.frame()
    del rows
    numeric = ("pixel_width", "pixel_height", "bytes")
    for column in (*INDEX_COLUMNS, *(("phash",) if cfg.near_duplicates else ())):
        if column not in frame.columns:
            frame[column] = 0 if column in numeric else ""
    ordered = list(INDEX_COLUMNS) + [c for c in cfg.fields if c in frame.columns]
    frame = frame[ordered + [c for c in frame.columns if c not in ordered]]
    frame = frame.sort_values("path", kind="stable").reset_index(drop=True)
    frame[list(numeric)] = frame[list(numeric)].fillna(0).astype("int64")
    for column in ("label", "reason", "format", "sha", *(("phash",) if cfg.near_duplicates else ())):
        frame[column] = frame[column].fillna("")
    frame["label"] = merge_case_variants(frame["label"])
    near = cfg.near_duplicate_distance if cfg.near_duplicates else None
    frame["dup_group"] = duplicate_groups(frame, near)
    return frame


def duplicate_groups(index: pd.DataFrame, near_distance: int | None = None) -> pd.Series:
    """The duplicate group of each usable image: copies of one photo share it.

    Args:
        index: index rows sorted by path, with ``status``, ``sha`` and (for ``near_distance``) ``phash``.
        near_distance: also join images whose perceptual hashes differ in at most this many bits;
            None: byte-identical files only.

    Returns:
        Per row, the path of the first file of its group when the group has two or more members,
        else "" (unique photos, and rows that are not usable images).
    """
    usable = np.flatnonzero(((index["status"] == OK) & (index["sha"] != "")).to_numpy())
    pairs = [_first_of_equal(index["sha"].to_numpy()[usable])]
    if near_distance is not None and "phash" in index.columns:
        hashes = index["phash"].to_numpy()[usable]
        hashed = np.flatnonzero(hashes != "")
        values = np.array([int(h, 16) for h in hashes[hashed]], dtype=np.uint64)
        pairs.append(hashed[near_duplicate_pairs(values, near_distance)])
    roots = _components(len(usable), np.concatenate(pairs))
    sizes = np.bincount(roots, minlength=len(usable))
    groups = np.full(len(index), "", dtype=object)
    paths = index["path"].to_numpy()
    copied = sizes[roots] > 1
    groups[usable[copied]] = paths[usable[roots[copied]]]
    return pd.Series(groups, index=index.index, dtype=object)


def _first_of_equal(values: np.ndarray) -> np.ndarray:
    """Pairs ``(i, first i with the same value)`` for every repeated value: (k, 2) int array."""
    codes, _ = pd.factorize(values)
    first = pd.Series(np.arange(len(values))).groupby(codes).transform("min").to_numpy()
    repeated = np.flatnonzero(first != np.arange(len(values)))
    return np.stack([repeated, first[repeated]], axis=1)


def _components(n: int, pairs: np.ndarray) -> np.ndarray:
    """Connected components of ``n`` items joined by ``pairs``: each item's smallest member index."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs.tolist():
        ra, rb = find(a), find(b)
        if ra != rb:  # the smaller index becomes the root, so a root is its component's first item
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(i) for i in range(n)], dtype=np.int64)


_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between uint64 arrays (broadcast), without numpy 2's bitwise_count."""
    x = np.ascontiguousarray(np.bitwise_xor(a, b))
    return _POPCOUNT8[x.view(np.uint8)].reshape(*x.shape, 8).sum(axis=-1)


def near_duplicate_pairs(hashes: np.ndarray, distance: int) -> np.ndarray:
    """Index pairs ``(i, j)``, i < j, of 64-bit hashes that differ in at most ``distance`` bits.

    Two hashes that close agree exactly on at least one of ``distance + 1`` bands of bits (by the
    pigeonhole principle), so only hashes sharing a band value are compared, not all n^2 pairs.

    Returns:
        A (k, 2) int array; a pair may appear more than once.
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    found = [np.empty((0, 2), dtype=np.int64)]
    bands = distance + 1
    width = -(-HASH_BITS // bands)
    for band in range(bands):
        shift = band * width
        if shift >= HASH_BITS:
            break
        keys = (hashes >> np.uint64(shift)) & np.uint64((1 << min(width, HASH_BITS - shift)) - 1)
        order = np.argsort(keys, kind="stable")
        starts = np.flatnonzero(np.r_[True, keys[order][1:] != keys[order][:-1]])
        ends = np.r_[starts[1:], len(order)]
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            if end - start < 2:
                continue
            members = order[start:end]
            values = hashes[members]
            for row in range(0, len(members), 1024):  # a huge bucket (blank images) in bounded pieces
                close = _hamming(values[row : row + 1024, None], values[None, :]) <= distance
                i, j = np.nonzero(close)
                i += row
                keep = i < j
                found.append(np.stack([members[i[keep]], members[j[keep]]], axis=1))
    return np.concatenate(found)


def duplicate_summary(index: pd.DataFrame) -> tuple[int, int]:
    """``(photos, copies)``: photos that have copies, and the copies beyond the first of each."""
    grouped = index.loc[index["dup_group"] != "", "dup_group"] if "dup_group" in index.columns else pd.Series()
    photos = int(grouped.nunique())
    return photos, int(len(grouped)) - photos


def label_conflicts(index: pd.DataFrame) -> list[tuple[str, list[str], list[str]]]:
    """Duplicate groups filed under more than one label.

    Returns:
        ``(group, labels, paths)`` for each, sorted by group.
    """
    if "dup_group" not in index.columns:
        return []
    copies = index[(index["dup_group"] != "") & (index["label"] != "")]
    out = []
    for group, members in copies.groupby("dup_group", sort=True):
        labels = sorted(set(members["label"]))
        if len(labels) > 1:
            out.append((str(group), labels, sorted(members["path"])))
    return out


def _ordered_map(pool: ThreadPoolExecutor, fn, items: Sequence, cancelled) -> Iterator:
    """``pool.map`` in bounded windows, so a cancel stops within one window."""
    window = 256
    for start in range(0, len(items), window):
        if cancelled and cancelled():
            return
        yield from pool.map(fn, items[start : start + window])


def layout_hint(index: pd.DataFrame, cfg: DataConfig) -> str:
    """Advice when file names do not parse but the images sit in folders that look like classes.

    Returns:
        e.g. "file names do not parse as 17 fields, but the images sit in 3 sub-folders: set
        data.layout: folders"; "" when there is nothing to advise.
    """
    if cfg.layout == "folders":
        return ""
    unparsed = index.loc[index["reason"].str.startswith("file name:"), "path"]
    if unparsed.empty:
        return ""
    parts = [Path(p).parts for p in unparsed]
    prefix = f"file names do not parse as {len(cfg.fields)} fields, but the images sit in"
    folders = {p[0] for p in parts if len(p) >= 2}
    if len(folders) >= 2:
        return f"{prefix} {len(folders)} sub-folders: set data.layout: folders"
    inner = {p[1] for p in parts if len(p) >= 3}
    if len(folders) == 1 and len(inner) >= 2:  # one wrapping folder around the class folders
        (outer,) = folders
        where = Path(cfg.dir) / outer
        return f"{prefix} {len(inner)} sub-folders of {outer}: set data.dir to {where} and data.layout: folders"
    return ""


def no_images_hint(index: pd.DataFrame, cfg: DataConfig) -> str:
    """What to change when the index found no usable image: the endings it skipped, the layout."""
    hints = []
    other = index.loc[(index["status"] == SKIPPED) & index["reason"].str.startswith("ending "), "path"]
    if len(other):
        endings = other.map(lambda p: Path(p).suffix.lower().lstrip(".")).value_counts()
        listed = ", ".join(f"{n} .{ending}" for ending, n in endings.head(3).items())
        wanted = ", ".join([*cfg.extensions, *[e for e in endings.index[:3] if e not in cfg.extensions]])
        hints.append(f"files of other endings ({listed}) are skipped: set data.extensions: [{wanted}] to read them")
    layout = layout_hint(index, cfg)
    if layout:
        hints.append(layout)
    if not hints:
        hints.append(f"data.extensions: {', '.join(cfg.extensions)}; data.layout: {cfg.layout}")
    return "; ".join(hints)


def label_key(label: str) -> str:
    """What two spellings of one class share: the label in Unicode's composed form (NFC), case folded.

    ``Škoda`` typed on a Mac (NFD: ``S`` and a combining caron) and on Linux (NFC: one letter) are the
    same letters on screen but different strings; ``BMW_X5`` and ``bmw_x5`` differ only in case.
    """
    return unicodedata.normalize("NFC", label).casefold()


def merge_case_variants(labels: pd.Series) -> pd.Series:
    """Map labels that differ only in letter case or Unicode normalisation (``BMW_X5`` / ``bmw_x5``;
    ``Škoda`` composed / decomposed) to one spelling, in Unicode's composed form (NFC).

    Scraped names are not consistent in case, file systems not in normalisation (macOS stores names
    decomposed), and two classes that are one car would split its images and confuse each other.
    The spelling used most wins (ties: the first in sort order).
    """
    present = labels[labels != ""]
    if present.empty:
        return labels
    counts = present.value_counts()
    canonical: dict[str, str] = {}
    for label in sorted(counts.index, key=lambda lbl: (-counts[lbl], lbl)):
        canonical.setdefault(label_key(label), unicodedata.normalize("NFC", label))
    mapping = {label: canonical[label_key(label)] for label in counts.index}
    return labels.map(lambda lbl: mapping.get(lbl, lbl))


def _raw_labels(index: pd.DataFrame) -> list[pd.Series]:
    """The spellings a label may have been made from: ``make_model`` and ``make`` of the file-name
    layout, else the class folder (the first part of the path)."""
    if "make" in index.columns and "model" in index.columns:
        make = index["make"].astype(str)
        return [make + "_" + index["model"].astype(str), make]
    return [index["path"].astype(str).str.split("/", n=1).str[0]]


def case_variants(index: pd.DataFrame) -> dict[str, list[str]]:
    """Canonical label -> the other spellings that were merged into it (for a warning): spellings
    that differ in case or Unicode normalisation (:func:`merge_case_variants`)."""
    merged: dict[str, set[str]] = {}
    for raw in _raw_labels(index):
        for original, label in zip(raw, index["label"], strict=True):
            if label and original != label and label_key(original) == label_key(label):
                merged.setdefault(label, set()).add(original)
    return {label: sorted(others) for label, others in sorted(merged.items())}


@functools.lru_cache(maxsize=1)
def _confusable_prototypes() -> dict[str, str]:
    """Each letter Unicode's confusables data lists -> one representative of the letters that look
    like it (the smallest code point of its look-alike group, joined transitively)."""
    from confusable_homoglyphs.confusables import confusables_data

    parent: dict[str, str] = {}

    def find(char: str) -> str:
        while parent.setdefault(char, char) != char:
            parent[char] = parent[parent[char]]
            char = parent[char]
        return char

    for char, homoglyphs in confusables_data.items():
        for glyph in homoglyphs:
            other = glyph["c"].strip("\u200e\u200f")  # the data wraps right-to-left letters in marks
            if len(char) == 1 and len(other) == 1:
                a, b = find(char), find(other)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    return {char: find(char) for char in parent}


def confusable_labels(labels: Iterable[str]) -> list[list[str]]:
    """Groups of two or more labels that look alike but are different letters (Latin ``A`` and
    Cyrillic ``А``, ``0`` and ``O``), by Unicode's confusables data (UTS #39, through the
    ``confusable-homoglyphs`` package): such classes would show as one name everywhere.

    Returns:
        Each group sorted, groups in order of their first label.
    """
    prototypes = _confusable_prototypes()
    groups: dict[str, set[str]] = {}
    for label in labels:
        if label:
            skeleton = "".join(prototypes.get(char, char) for char in unicodedata.normalize("NFC", label))
            groups.setdefault(skeleton, set()).add(label)
    return sorted((sorted(group) for group in groups.values() if len(group) > 1), key=lambda g: g[0])


def class_counts(index: pd.DataFrame) -> pd.DataFrame:
    """Images per label among usable rows, most frequent first, ties by name."""
    usable = index[index["status"] == OK]
    counts = usable.groupby("label").size().rename("count").reset_index()
    return counts.sort_values(["count", "label"], ascending=[False, True], kind="stable").reset_index(drop=True)
