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
