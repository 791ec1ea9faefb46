"""A prefilter rule learned from the user's labels: which photos are a whole car, by example.

The user labels photos (``car``, or one of the kinds that are not: ``not``, ``interior``, ``part``);
a logistic regression learns from the classifier's stored scores which photos are cars, and decides
every photo at once from those scores, without running the classifier again.

- **Labels** are a CSV (``path, sha, label``): by default ``<run>/prefilter/labels.csv``, or the file
  ``prefilter.labels`` names. A label belongs to a photo's content (the index's ``sha``), so every copy
  of a photo shares it and labels survive a re-index; a row without a ``sha`` labels its path.
- **Features**: ``probs`` (the default when the run kept ``probs.npy``): the log of each of the 1000
  ImageNet probabilities; ``car_probs`` (from ``rule_inputs.npz`` alone): the log of the car classes'
  probabilities. Logs, floored at :data:`FLOOR`, because what tells an interior from a car is often a
  class at 0.01 against one at 0.0001 (``bench/bench_teach.py`` measured both).
- **The model** is scikit-learn's ``LogisticRegression`` (liblinear, balanced class weights, ``C`` =
  :data:`C`), imported only to fit; deciding uses its coefficients alone (numpy), which ``rule.json`` records.

This module is pure (numpy, pandas; scikit-learn when fitting): what a run's files hold reaches it as
arrays, through :mod:`carclf_core.prefilter.scores`.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..runs import write_bytes_atomic

LEARNED = "learned"
"""``prefilter.rule`` for this rule."""
LABELS_CSV = "labels.csv"
"""The run's labels file, in ``<run>/prefilter/``."""
LABEL_COLUMNS = ("path", "sha", "label")
KINDS = {"car": True, "not": False, "interior": False, "part": False}
"""Each label and whether it is a whole car: the model learns car against all the others."""
FEATURES = ("probs", "car_probs")
FLOOR = 1 / 512
"""Added to each probability before its log: half the step of an 8-bit classifier's outputs (1/256),
so a rounded-away class and a tiny one weigh alike."""
C = 1.0
"""Inverse regularisation strength of the logistic regression (scikit-learn's default)."""
FOLDS = 5
"""Cross-validation folds of the estimate (fewer when a kind has fewer labels)."""


def labels_error(path: Path | str, message: str) -> ConfigError:
    return ConfigError(
        "prefilter.labels",
        f"{path}: {message}",
        "a CSV with the columns path, sha, label; labels: car, not, interior, part",
    )


def empty_labels() -> pd.DataFrame:
    return pd.DataFrame({column: pd.Series(dtype=str) for column in LABEL_COLUMNS})


def read_labels(path: Path | str) -> pd.DataFrame:
    """The labels in ``path`` (columns ``path``, ``sha``, ``label``; all text); an empty table when the
    file does not exist.

    Raises:
        ConfigError: (``prefilter.labels``) the file cannot be read, lacks a column or holds an unknown
            label, naming the file and the line.
    """
    path = Path(path)
    if not path.exists():
        return empty_labels()
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise labels_error(path, f"cannot be read ({exc})") from exc
    missing = [column for column in LABEL_COLUMNS if column not in frame.columns]
    if missing:
        raise labels_error(path, f"no column {', '.join(missing)} (columns: {', '.join(map(str, frame.columns))})")
    frame = frame[list(LABEL_COLUMNS)].copy()
    frame["label"] = frame["label"].str.strip().str.lower()
    unknown = ~frame["label"].isin(list(KINDS))
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise labels_error(path, f"line {row + 2}: unknown label {frame['label'].iloc[row]!r}")
    blank = (frame["path"] == "") & (frame["sha"] == "")
    if blank.any():
        raise labels_error(path, f"line {int(np.flatnonzero(blank)[0]) + 2}: neither a path nor a sha")
    return frame.reset_index(drop=True)


def labels_bytes(labels: pd.DataFrame) -> bytes:
    """The CSV text of ``labels``, rows sorted by sha and path (a file that diffs well under version
    control, and the same bytes for the same labels)."""
    ordered = labels.sort_values(["sha", "path"], kind="stable")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(LABEL_COLUMNS)
    writer.writerows(ordered[list(LABEL_COLUMNS)].itertuples(index=False, name=None))
    return out.getvalue().encode("utf-8", "surrogateescape")


def write_labels(path: Path | str, labels: pd.DataFrame) -> None:
    """Write ``labels`` to ``path`` atomically (see :func:`labels_bytes`)."""
    write_bytes_atomic(Path(path), labels_bytes(labels))


def file_sha256(path: Path | str) -> str:
    """SHA-256 of a file's bytes (what ``rule.json`` records of the labels it learned from)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def with_label(labels: pd.DataFrame, path: str, sha: str, label: str | None) -> pd.DataFrame:
    """``labels`` with the photo ``sha`` (every copy of it; ``path`` when it has no sha) labelled
    ``label``, replacing its earlier label; ``None`` removes it."""
    if label is not None and label not in KINDS:
        raise ValueError(f"unknown label {label!r}: one of {', '.join(KINDS)}")
    same = (labels["sha"] == sha) if sha else ((labels["sha"] == "") & (labels["path"] == path))
    rest = labels[~same]
    if label is None:
        return rest.reset_index(drop=True)
    row = pd.DataFrame({"path": [path], "sha": [sha], "label": [label]})
    return pd.concat([rest, row], ignore_index=True)


def targets(labels: pd.DataFrame, paths: Sequence[str], shas: Sequence[str]) -> np.ndarray:
    """Per row (``paths``, ``shas``): 1.0 a car, 0.0 not, NaN unlabelled. A label of a sha labels every
    row with that sha; a label without a sha labels its path. The last label of a photo counts."""
    by_sha = {s: KINDS[label] for s, label in zip(labels["sha"], labels["label"], strict=True) if s}
    by_path = {
        p: KINDS[label] for p, s, label in zip(labels["path"], labels["sha"], labels["label"], strict=True) if not s
    }
    out = np.full(len(paths), np.nan)
    for i, (path, sha) in enumerate(zip(paths, shas, strict=True)):
        value = by_sha.get(sha) if sha else None
        if value is None:
            value = by_path.get(path)
        if value is not None:
            out[i] = 1.0 if value else 0.0
    return out


def transform(values: np.ndarray) -> np.ndarray:
    """The model's features from probabilities (float16 or float, ``[n, k]``): their floored logs."""
    return np.log(np.asarray(values, dtype=np.float32) + np.float32(FLOOR))


@dataclasses.dataclass(frozen=True)
class Model:
    """A fitted logistic regression: ``p(car) = 1 / (1 + exp(-(x @ coef + intercept)))``."""

    features: str
    coef: np.ndarray
    intercept: float

    def decision(self, x: np.ndarray) -> np.ndarray:
        """Signed distance from the boundary (log-odds of a car) per row of features ``x``."""
        return np.asarray(x, dtype=np.float64) @ self.coef + self.intercept

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": self.features,
            "floor": FLOOR,
            "coef": [float(c) for c in self.coef],
            "intercept": float(self.intercept),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Model:
        return cls(str(data["features"]), np.asarray(data["coef"], dtype=np.float64), float(data["intercept"]))


def can_fit(y: np.ndarray) -> bool:
    """Labels of both kinds, the least a model needs."""
    y = y[~np.isnan(y)]
    return bool((y == 1).any() and (y == 0).any())


def fit(x: np.ndarray, y: np.ndarray, features: str) -> Model:
    """Fit the logistic regression on labelled features (``y``: 1 car, 0 not; both present).

    Deterministic: the same labels and scores give the same coefficients.
    """
    from sklearn.linear_model import LogisticRegression  # a second or so to import: only when fitting

    # liblinear: 40x faster than lbfgs on a few dozen rows of 1000 features (0.03 s against 1.2 s here);
    # its seed fixes the coordinate order, so a fit is reproducible
    model = LogisticRegression(C=C, class_weight="balanced", solver="liblinear", random_state=0, max_iter=1000)
    model.fit(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.int64))
    return Model(features, model.coef_[0].astype(np.float64), float(model.intercept_[0]))


def wilson(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95 % by default) of a proportion: honest at a few dozen labels."""
    if trials <= 0:
        return (0.0, 1.0)
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return (max(0.0, centre - half), min(1.0, centre + half))


def estimate(x: np.ndarray, y: np.ndarray, features: str) -> dict[str, Any] | None:
    """Cross-validated precision and recall (for cars) of the model on the labelled photos, with
    95 % Wilson intervals; None until each kind has two labels.

    Each photo is predicted by a model fitted without it (stratified folds, :data:`FOLDS` or as many as
    the rarer kind has labels), and the counts are pooled over the folds.
    """
    y = np.asarray(y, dtype=np.int64)
    folds = min(FOLDS, int((y == 1).sum()), int((y == 0).sum()))
    if folds < 2:
        return None
    from sklearn.model_selection import StratifiedKFold

    predicted = np.zeros(len(y), dtype=bool)
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=0).split(x, y):
        predicted[test] = fit(x[train], y[train], features).decision(x[test]) > 0
    cars = y == 1
    hits = int((predicted & cars).sum())
    kept = int(predicted.sum())
    return {
        "precision": hits / kept if kept else float("nan"),
        "precision_interval": wilson(hits, kept),
        "recall": hits / int(cars.sum()),
        "recall_interval": wilson(hits, int(cars.sum())),
        "kept": kept,
        "cars": int(cars.sum()),
        "labels": len(y),
        "folds": folds,
    }


def first_per_photo(order: np.ndarray, shas: Sequence[str]) -> np.ndarray:
    """``order`` (row indices) with later copies of a photo (same non-empty sha) left out."""
    seen: set[str] = set()
    out = []
    for i in order:
        sha = shas[int(i)]
        if sha and sha in seen:
            continue
        seen.add(sha)
        out.append(int(i))
    return np.array(out, dtype=np.int64)


def queue(uncertainty: np.ndarray, y: np.ndarray, usable: np.ndarray, shas: Sequence[str], n: int) -> np.ndarray:
    """The next ``n`` photos to label: unlabelled, usable (scored) rows, the least certain first
    (uncertainty sampling), one row per photo.

    Args:
        uncertainty: per row, how far the current rule is from deciding it (smaller: less sure).
        y: per row, the label (NaN: unlabelled).
        usable: rows that may be proposed (scored, not broken).
        shas: per row, the photo's content hash (copies share it).
        n: how many.
    """
    candidates = np.flatnonzero(usable & np.isnan(y))
    order = candidates[np.argsort(uncertainty[candidates], kind="stable")]
    return first_per_photo(order, shas)[:n]


def cold_start_uncertainty(car_prob: np.ndarray, threshold: float, y: np.ndarray) -> np.ndarray:
    """The queue's order while the labels do not hold both kinds yet (no model can be fitted).

    With no label yet, the photos nearest the threshold come first (where the threshold rule is least
    sure). Once only cars are labelled, the least car-like photos come first, and once only non-cars,
    the most car-like: the queue goes where the missing kind is, so the first model comes after two or
    three labels (near the threshold the demo has a dozen cars before its first non-car).
    """
    labelled = y[~np.isnan(y)]
    if labelled.size and (labelled == 1).all():
        order = np.asarray(car_prob, dtype=np.float64)
    elif labelled.size and (labelled == 0).all():
        order = -np.asarray(car_prob, dtype=np.float64)
    else:
        order = np.abs(np.log(np.clip(car_prob, 1e-6, 1.0)) - math.log(max(threshold, 1e-6)))
    return np.where(np.isnan(car_prob), np.inf, order)


def probability(odds: float | np.ndarray) -> Any:
    """The probability of a car from log-odds (the logistic function)."""
    return 1.0 / (1.0 + np.exp(-np.asarray(odds, dtype=np.float64)))
