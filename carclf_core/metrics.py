"""Classification metrics from labels, probabilities and confusion matrices: numpy only.

Shared by training (the per-epoch validation confusion matrix), evaluation, the headless console
and the dashboard, so it imports neither Keras nor any UI library.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def as_matrix(matrix) -> np.ndarray:
    """``matrix`` as a square int64 array; ValueError for any other shape."""
    m = np.asarray(matrix, dtype=np.int64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"expected a square matrix, got shape {m.shape}")
    return m


def confusion_matrix(true: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts, rows true class, columns predicted class (int64)."""
    index = np.asarray(true, dtype=np.int64) * num_classes + np.asarray(pred, dtype=np.int64)
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def top_k_accuracy(probs: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    """Share of rows whose true label is among the ``k`` highest probabilities."""
    if len(labels) == 0:
        return 0.0
    k = min(k, probs.shape[1])
    top = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def most_confused(matrix, classes: Sequence[str], k: int = 20, min_count: int = 1) -> list[tuple[str, str, int]]:
    """The ``k`` largest off-diagonal cells, like fastai's ``ClassificationInterpretation.most_confused``.

    Returns:
        ``(true class, predicted class, count)`` sorted by count descending, then names.
    """
    m = as_matrix(matrix).copy()
    np.fill_diagonal(m, 0)
    rows, cols = np.nonzero(m >= max(min_count, 1))
    pairs = [(classes[r], classes[c], int(m[r, c])) for r, c in zip(rows.tolist(), cols.tolist(), strict=True)]
    pairs.sort(key=lambda p: (-p[2], p[0], p[1]))
    return pairs[:k]


def per_class_metrics(matrix, classes: Sequence[str]) -> list[tuple[str, float, float, float, int]]:
    """Precision, recall, F1 and support per class (0.0 where undefined, as scikit-learn's
    ``zero_division=0``).

    Returns:
        Rows ``(class, precision, recall, f1, support)`` in class order.
    """
    m = as_matrix(matrix).astype(np.float64)
    tp = np.diag(m)
    predicted = m.sum(axis=0)
    support = m.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return [
        (classes[i], float(precision[i]), float(recall[i]), float(f1[i]), int(support[i])) for i in range(m.shape[0])
    ]


def summary_metrics(matrix) -> dict[str, float]:
    """Accuracy and balanced accuracy (mean recall over classes with support) from a matrix."""
    m = as_matrix(matrix).astype(np.float64)
    total = m.sum()
    support = m.sum(axis=1)
    recall = np.diag(m)[support > 0] / support[support > 0]
    return {
        "accuracy": float(np.trace(m) / total) if total else 0.0,
        "balanced_accuracy": float(recall.mean()) if recall.size else 0.0,
    }


def baselines(labels: np.ndarray, num_classes: int, k: int = 5) -> dict[str, float]:
    """The scores a model must beat on ``labels``, to set beside its accuracies.

    On imbalanced data the bar is not chance: always answering the most frequent class scores its
    share. Top-k has its own chance, ``min(k, classes) / classes``.

    Args:
        labels: the true class indices of the evaluated images.
        num_classes: how many classes the model chooses from.
        k: the k of top-k accuracy.

    Returns:
        ``chance`` (1 / classes), ``majority_baseline`` (share of the most frequent class among
        ``labels``), ``top{k}_chance`` and ``top{k}_majority_baseline`` (share of the k most frequent
        classes); 0.0 for the shares when ``labels`` is empty.
    """
    counts = np.sort(np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes))[::-1]
    total = counts.sum()
    return {
        "chance": 1.0 / num_classes,
        "majority_baseline": float(counts[0] / total) if total else 0.0,
        f"top{k}_chance": min(k, num_classes) / num_classes,
        f"top{k}_majority_baseline": float(counts[:k].sum() / total) if total else 0.0,
    }


Z95 = 1.959963984540054
"""The standard normal quantile of a two-sided 95 % interval."""
BOOTSTRAP_RESAMPLES = 1000
"""Resamples of the bootstrap interval: its ends move by about 0.005 between seeds at 1,000."""


def wilson_interval(successes: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval of a proportion ``successes / n`` (95 % by default).

    Unlike the normal approximation it stays inside [0, 1] and is not empty at 0 or n successes,
    which matters for the few dozen photos a test split of a class holds.

    Returns:
        ``(low, high)``; ``(0.0, 1.0)`` when ``n`` is 0 (nothing was measured).
    """
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # all or none right: that end is exactly 1 or 0 (the formula leaves 0.9999999999999999)
    low = 0.0 if successes <= 0 else float(max(0.0, centre - half))
    high = 1.0 if successes >= n else float(min(1.0, centre + half))
    return low, high


def pairs_of(matrix) -> tuple[np.ndarray, np.ndarray]:
    """The ``(true, predicted)`` class of every counted item of a confusion matrix (rows true)."""
    m = as_matrix(matrix)
    true, pred = np.nonzero(m)
    counts = m[true, pred]
    return np.repeat(true, counts), np.repeat(pred, counts)


def bootstrap_balanced_accuracy(
    true: np.ndarray,
    pred: np.ndarray,
    num_classes: int,
    seed: int = 0,
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the balanced accuracy, resampling the photos.

    Each resample draws as many photos as there are, with replacement, and takes the mean recall over
    the classes it holds (as :func:`summary_metrics` does), so a class of few photos widens the
    interval as it should. Seeded: the same photos and seed give the same interval.

    Args:
        true: each photo's true class.
        pred: each photo's predicted class.
        num_classes: the classes of the model.
        seed: the resampling seed.
        resamples: how many resamples.
        level: the interval's coverage.

    Returns:
        ``(low, high)``; ``(0.0, 1.0)`` when there is no photo.
    """
    true = np.asarray(true, dtype=np.int64)
    correct = (true == np.asarray(pred, dtype=np.int64)).astype(np.float64)
    n = len(true)
    if n == 0:
        return 0.0, 1.0
    rng = np.random.default_rng(seed)
    values = np.empty(resamples)
    chunk = max(1, (1 << 22) // n)  # about 32 MB of indices at a time, whatever the test split's size
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        picked = rng.integers(0, n, size=(b, n))
        slot = (np.arange(b)[:, None] * num_classes + true[picked]).ravel()
        support = np.bincount(slot, minlength=b * num_classes).reshape(b, num_classes)
        hits = np.bincount(slot, weights=correct[picked].ravel(), minlength=b * num_classes).reshape(b, num_classes)
        with np.errstate(divide="ignore", invalid="ignore"):
            recall = np.where(support > 0, hits / np.maximum(support, 1), np.nan)
        values[start : start + b] = np.nanmean(recall, axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def recall_intervals(matrix) -> list[tuple[float, float]]:
    """Wilson interval of each class's recall (its correct photos of its photos), in class order."""
    m = as_matrix(matrix)
    return [wilson_interval(float(m[i, i]), float(m[i].sum())) for i in range(m.shape[0])]


def with_intervals(
    metrics: dict, matrix: np.ndarray | None, photos: int, top5_hits: float | None = None, seed: int = 0
) -> dict[str, object]:
    """95 % intervals for the accuracies of ``metrics`` and whether accuracy clears the majority baseline.

    Args:
        metrics: ``accuracy``, ``balanced_accuracy``, optionally ``top5`` and ``majority_baseline``.
        matrix: the confusion matrix of the photos (rows true), for the balanced accuracy's bootstrap;
            None: no balanced accuracy interval.
        photos: how many photos the accuracies count (the proportions' n).
        top5_hits: photos whose true class was among the top 5; None: from ``metrics["top5"]``.
        seed: the bootstrap's seed.

    Returns:
        ``accuracy_ci``, ``balanced_accuracy_ci``, ``top5_ci`` (where ``top5`` is given) as
        ``[low, high]``, ``interval`` (what they are), and ``clears_majority``: True when the whole
        accuracy interval lies above the majority baseline (the model beats always answering the most
        frequent class, beyond the sampling noise of this many photos).
    """
    out: dict[str, object] = {
        "accuracy_ci": list(wilson_interval(metrics["accuracy"] * photos, photos)),
        "interval": f"95 %: Wilson for proportions, percentile bootstrap over photos ({BOOTSTRAP_RESAMPLES} "
        f"resamples, seed {seed}) for balanced accuracy",
    }
    if matrix is not None:
        m = as_matrix(matrix)
        out["balanced_accuracy_ci"] = list(bootstrap_balanced_accuracy(*pairs_of(m), m.shape[0], seed=seed))
    if "top5" in metrics and metrics["top5"] is not None:
        hits = metrics["top5"] * photos if top5_hits is None else top5_hits
        out["top5_ci"] = list(wilson_interval(hits, photos))
    if "majority_baseline" in metrics:
        out["clears_majority"] = bool(out["accuracy_ci"][0] > metrics["majority_baseline"])  # type: ignore[index]
    return out


SINK_MIN_SOURCES = 3
"""A sink receives errors from at least this many true classes (or a tenth of the classes, if more)."""
SINK_SHARE_FACTOR = 3.0
"""... and at least this many times its even share of all errors (errors / classes)."""


def sink_classes(matrix, classes: Sequence[str]) -> list[dict[str, object]]:
    """Predicted classes that absorb errors from many true classes: a dark column of the heatmap.

    A class is a sink when its column receives wrong predictions from at least
    ``max(SINK_MIN_SOURCES, classes / 10)`` distinct true classes and at least ``SINK_SHARE_FACTOR``
    times its even share of all the errors (all errors / number of classes). A model that leans on
    one answer when unsure shows one; errors spread over many columns do not.

    Returns:
        ``{"class", "sources", "errors", "share"}`` (share: of all errors) per sink, most errors first.
    """
    m = as_matrix(matrix).copy()
    n = m.shape[0]
    np.fill_diagonal(m, 0)
    total = int(m.sum())
    if total == 0 or n < 3:
        return []
    received = m.sum(axis=0)
    sources = (m > 0).sum(axis=0)
    need = max(SINK_MIN_SOURCES, int(np.ceil(n / 10)))
    found = np.flatnonzero((sources >= need) & (received >= SINK_SHARE_FACTOR * total / n))
    found = found[np.argsort(-received[found], kind="stable")]
    return [
        {
            "class": classes[c],
            "sources": int(sources[c]),
            "errors": int(received[c]),
            "share": float(received[c] / total),
        }
        for c in found.tolist()
    ]


def sink_text(sinks: Sequence[dict]) -> str:
    """One phrase for the summaries: ``sink: BMW_X5 takes errors from 7 classes (41 % of errors)``."""
    if not sinks:
        return ""
    parts = [f"{s['class']} takes errors from {s['sources']} classes ({s['share']:.0%} of errors)" for s in sinks[:3]]
    more = f" and {len(sinks) - 3} more" if len(sinks) > 3 else ""
    return ("sink: " if len(sinks) == 1 else "sinks: ") + "; ".join(parts) + more


def _ci(pair: Sequence[float]) -> str:
    return f"[{pair[0]:.3f}, {pair[1]:.3f}]"


def result_line(split: str, m: dict) -> str:
    """``test accuracy 0.500 [0.336, 0.664] (chance 0.125; majority 0.250: cleared), top-5 ...``: each
    figure with its 95 % interval, and whether the accuracy's interval clears the majority baseline."""
    text = f"{split} accuracy {m['accuracy']:.3f} {_ci(m['accuracy_ci'])} (chance {m['chance']:.3f}"
    if "majority_baseline" in m:
        verdict = "cleared" if m.get("clears_majority") else "not cleared by the interval"
        text += f"; majority {m['majority_baseline']:.3f}: {verdict}"
    text += ")"
    if m.get("top5") is not None and "top5_ci" in m:
        text += f", top-5 {m['top5']:.3f} {_ci(m['top5_ci'])}"
        if "top5_chance" in m:
            text += f" (chance {m['top5_chance']:.3f})"
    if m.get("balanced_accuracy") is not None and "balanced_accuracy_ci" in m:
        text += f", balanced {m['balanced_accuracy']:.3f} {_ci(m['balanced_accuracy_ci'])}"
    return text
