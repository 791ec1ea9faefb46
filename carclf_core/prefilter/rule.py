"""The prefilter's decision rule: pure numpy and pandas, fast, the same for every caller.

An image is a car when its summed probability over the car classes is above a threshold
(``prob_sum``, the reference's ``is_car_acc_prob``) or when a car class is among its top k
(``top_k``). Each row is decided on its own: nothing here looks across rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

NUM_CLASSES = 1000
TOP_STORED = 10
"""Top class indices stored per image (columns ``k1`` .. ``k10``); larger top-k uses the probabilities."""
PROB_COLUMNS = tuple(f"p{i}" for i in range(NUM_CLASSES))
TOP_COLUMNS = tuple(f"k{i + 1}" for i in range(TOP_STORED))
SCORED, BROKEN = "scored", "broken"
"""A scores row's ``status``: the model scored the image, or the file could not be decoded."""
RULES = ("prob_sum", "top_k")


def car_probability(probs: np.ndarray, car_classes: Sequence[int]) -> np.ndarray:
    """Summed probability of ``car_classes`` per row of an ``[n, 1000]`` probability matrix (float64)."""
    # the car columns picked before widening: float16 -> float64 of 15 columns, not of 1000
    return np.asarray(np.asarray(probs)[:, list(car_classes)], dtype=np.float64).sum(axis=1)


def _ordered_bits(probs: np.ndarray) -> np.ndarray | None:
    """float16 probabilities as unsigned 16-bit integers that order as the numbers do, or None when
    they would not (not float16, or holding -0.0, a negative number, inf or NaN).

    Non-negative finite float16 numbers order as their bit patterns, so stored probabilities sort and
    compare as integers: a radix sort, and no conversion (which takes most of the time otherwise).
    """
    if probs.dtype != np.float16:
        return None
    bits = probs.view(np.uint16)
    if (bits & 0x8000).any() or ((bits & 0x7C00) == 0x7C00).any():
        return None
    return bits


def top_indices(probs: np.ndarray, k: int = TOP_STORED) -> np.ndarray:
    """Indices of the ``k`` largest probabilities per row, largest first (ties: lower index first)."""
    probs = np.asarray(probs)
    bits = _ordered_bits(probs)
    if bits is not None:
        order = np.argsort(np.uint16(0xFFFF) - bits, axis=1, kind="stable")  # descending, stable
    else:
        order = np.argsort(-probs.astype(np.float32), axis=1, kind="stable")
    return order[:, :k].astype(np.int16)


def stored_top_hits(top: np.ndarray, car_classes: Sequence[int]) -> np.ndarray:
    """Rows whose stored top class indices (``[n, k]``, the ``k1``.. columns) hold a car class."""
    return np.asarray(np.isin(np.asarray(top), [int(c) for c in car_classes]).any(axis=1), dtype=bool)


def top_k_hits(probs: np.ndarray, car_classes: Sequence[int], top_k: int) -> np.ndarray:
    """Rows of an ``[n, 1000]`` probability matrix with a car class among their ``top_k`` best.

    A car class is in the top k when its probability reaches the k-th largest one (ties count) and is
    above zero: a class the model gives nothing is no prediction. Reaching the k-th largest is the
    same as having fewer than k classes above it, which one comparison counts (a partial sort of
    every row costs several times more).
    """
    probs = np.asarray(probs)
    bits = _ordered_bits(probs)
    probs = bits if bits is not None else probs.astype(np.float32)
    best_car = probs[:, [int(c) for c in car_classes]].max(axis=1)
    above = np.count_nonzero(probs > best_car[:, None], axis=1)
    return (above < top_k) & (best_car > 0)


def apply_rule(scores: pd.DataFrame, rule: str, threshold: float, top_k: int, car_classes: Sequence[int]) -> np.ndarray:
    """Which rows the rule calls a car.

    Args:
        scores: a scores table (see :func:`load_scores`). ``prob_sum`` sums the ``p<i>`` columns of
            ``car_classes`` when the table has them, else uses its ``car_prob`` column. ``top_k`` uses
            the ``k1``.. columns when ``top_k`` <= 10, else ranks the ``p<i>`` columns.
        rule: ``prob_sum`` (summed car probability strictly greater than ``threshold``, the
            reference's ``is_car_acc_prob``) or ``top_k`` (a car class among the ``top_k`` best).
        threshold: for ``prob_sum``, 0..1.
        top_k: for ``top_k``, 1..1000.
        car_classes: ImageNet-1k indices that count as a car.

    Returns:
        Boolean array, one value a row. Broken rows (``status == "broken"``) are never cars.

    Raises:
        ValueError: unknown rule, or a table without the columns the rule needs.
    """
    if rule not in RULES:
        raise ValueError(f"prefilter.rule: expected one of {', '.join(RULES)}, got {rule!r}")
    n = len(scores)
    classes = [int(c) for c in car_classes]
    prob_cols = [f"p{c}" for c in classes]
    if rule == "prob_sum":
        if all(col in scores.columns for col in prob_cols):
            car_prob = scores[prob_cols].to_numpy(dtype=np.float64).sum(axis=1)
        elif "car_prob" in scores.columns:
            car_prob = scores["car_prob"].to_numpy(dtype=np.float64)
        else:
            raise ValueError("scores table has neither car_prob nor per-class probability columns")
        result = car_prob > threshold  # NaN (broken rows) compares False
    else:
        if top_k <= TOP_STORED and all(c in scores.columns for c in TOP_COLUMNS[:top_k]):
            result = stored_top_hits(scores[list(TOP_COLUMNS[:top_k])].to_numpy(), classes)
        elif all(c in scores.columns for c in PROB_COLUMNS):
            result = top_k_hits(scores[list(PROB_COLUMNS)].to_numpy(dtype=np.float32), classes, top_k)
        else:
            raise ValueError(f"scores table lacks the top-{top_k} columns the top_k rule needs")
    result = np.asarray(result, dtype=bool).reshape(n)
    if "status" in scores.columns:
        result &= scores["status"].to_numpy() != BROKEN
    return result


def histogram(car_prob: np.ndarray, bins: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Counts of car probabilities in ``bins`` equal bins over 0..1 (NaN, i.e. broken, left out).

    Returns:
        ``(edges, counts)``: ``bins + 1`` edges and ``bins`` integer counts.
    """
    values = np.asarray(car_prob, dtype=np.float64)
    values = values[~np.isnan(values)]
    counts, edges = np.histogram(np.clip(values, 0.0, 1.0), bins=bins, range=(0.0, 1.0))
    return edges, counts.astype(np.int64)


def examples(
    paths: Sequence[str], car_prob: np.ndarray, threshold: float, n: int = 5
) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """File names just above and just below the threshold: the decisions worth looking at.

    Returns:
        ``(kept, rejected)``: up to ``n`` ``(path, car_prob)`` pairs each, closest to the threshold first.
    """
    values = np.asarray(car_prob, dtype=np.float64)
    valid = ~np.isnan(values)
    above = np.flatnonzero(valid & (values > threshold))
    below = np.flatnonzero(valid & ~(values > threshold))
    above = above[np.argsort(values[above], kind="stable")][:n]
    below = below[np.argsort(-values[below], kind="stable")][:n]
    return (
        [(str(paths[int(i)]), round(float(values[i]), 4)) for i in above],
        [(str(paths[int(i)]), round(float(values[i]), 4)) for i in below],
    )
