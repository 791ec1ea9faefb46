"""The prefilter's rule functions on hand-made probability rows: what each decides, row by row.

Scores are stored as float32 (chunks and ``probs.npy``), and a stored table is re-decided later
(``reapply``, the dashboard's ``+``/``-``): a decision made from the model's output must be the one
made again from the store, so the rule works at float32 precision throughout.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from carclf_core.prefilter import rule

CARS = (817, 436)


def _rows(*rows: dict[int, float]) -> np.ndarray:
    probs = np.zeros((len(rows), rule.NUM_CLASSES))
    for i, row in enumerate(rows):
        for cls, p in row.items():
            probs[i, cls] = p
    return probs


def test_car_probability_sums_the_car_classes_of_each_row_in_float64():
    probs = _rows({817: 0.25, 436: 0.5, 1: 0.25}, {2: 1.0}, {817: 1e-9, 436: 1.0 - 1e-9})
    got = rule.car_probability(probs.astype(np.float32), CARS)
    assert got.dtype == np.float64 and got.shape == (3,)
    assert got.tolist() == pytest.approx([0.75, 0.0, 1.0], abs=1e-7)
    many = np.full((1, rule.NUM_CLASSES), 1e-4, dtype=np.float32)  # a thousand small parts
    assert rule.car_probability(many, range(1000))[0] == pytest.approx(np.float64(np.float32(1e-4)) * 1000, rel=1e-12)


def test_top_indices_largest_first_ties_by_lower_index_at_stored_precision():
    probs = _rows({5: 0.5, 7: 0.3, 3: 0.3, 9: 0.1}, {})
    top = rule.top_indices(probs, k=4)
    assert np.issubdtype(top.dtype, np.integer) and top.shape == (2, 4)
    assert top[0].tolist() == [5, 3, 7, 9]
    assert top[1].tolist() == [0, 1, 2, 3]  # a row of equal probabilities: lowest indices first
    # 0.3 and 0.3 + 1e-12 are the same float32: a tie, so the stored table ranks them as the model's output did
    close = _rows({7: 0.3 + 1e-12, 3: 0.3})
    assert rule.top_indices(close, k=2)[0].tolist() == [3, 7]
    assert rule.top_indices(close, k=2)[0].tolist() == rule.top_indices(close.astype(np.float32), k=2)[0].tolist()


def test_top_k_hits_count_ties_and_ignore_a_car_class_given_nothing():
    probs = _rows({1: 0.6, 817: 0.2, 2: 0.2},  # car ties with the 2nd best: in the top 2
                  {1: 0.6, 2: 0.3, 817: 0.1},  # car 3rd: not in the top 2
                  {1: 1.0},  # every car class at zero: never a car, however large k
                  {436: 0.3 + 1e-12, 3: 0.3 + 2e-12, 4: 0.4 - 3e-12})  # car tied with class 3 in float32
    assert rule.top_k_hits(probs, CARS, 2).tolist() == [True, False, False, True]
    assert rule.top_k_hits(probs, CARS, 3).tolist() == [True, True, False, True]
    assert rule.top_k_hits(probs, CARS, 1000).tolist() == [True, True, False, True]


def test_apply_rule_on_both_table_shapes_and_broken_rows():
    probs = _rows({817: 0.06, 436: 0.05}, {817: 0.08}, {1: 1.0}, {817: 0.9}).astype(np.float32)
    table = pd.DataFrame(probs, columns=list(rule.PROB_COLUMNS))
    table["status"] = [rule.SCORED, rule.SCORED, rule.SCORED, rule.BROKEN]
    assert rule.apply_rule(table, "prob_sum", 0.1, 5, CARS).tolist() == [True, False, False, False]
    assert rule.apply_rule(table, "top_k", 0.1, 20, CARS).tolist() == [True, True, False, False]
    stored = pd.DataFrame(rule.top_indices(probs), columns=list(rule.TOP_COLUMNS))
    stored["car_prob"] = rule.car_probability(probs, CARS)
    stored["status"] = table["status"]
    assert rule.apply_rule(stored, "prob_sum", 0.1, 5, CARS).tolist() == [True, False, False, False]
    assert rule.apply_rule(stored, "top_k", 0.1, 1, CARS).tolist() == [True, True, False, False]
    with pytest.raises(ValueError, match="lacks the top-20 columns"):
        rule.apply_rule(stored, "top_k", 0.1, 20, CARS)
    with pytest.raises(ValueError, match="prefilter.rule: expected one of prob_sum, top_k, got 'vote'"):
        rule.apply_rule(stored, "vote", 0.1, 1, CARS)


def test_histogram_clips_into_range_leaves_out_broken_and_counts_integers():
    edges, counts = rule.histogram(np.array([0.0, 0.04, 0.5, 1.0, 1.5, -0.2, np.nan]), bins=20)
    assert edges.tolist() == pytest.approx(np.linspace(0, 1, 21).tolist())
    assert np.issubdtype(counts.dtype, np.integer) and counts.sum() == 6
    assert counts[0] == 3 and counts[10] == 1 and counts[-1] == 2  # -0.2 counts as 0, 1.5 as 1


def test_examples_are_the_closest_to_the_threshold_on_each_side():
    paths = [f"{i}.jpg" for i in range(9)]
    probs = np.array([0.11, 0.5, 0.2, 0.3, 0.4, 0.15, 0.15, 0.09, np.nan], dtype=np.float32)
    kept, rejected = rule.examples(paths, probs, 0.1)
    # five by default, nearest first; equal scores keep their order; four decimals
    assert kept == [("0.jpg", 0.11), ("5.jpg", 0.15), ("6.jpg", 0.15), ("2.jpg", 0.2), ("3.jpg", 0.3)]
    assert rejected == [("7.jpg", 0.09)]
    kept, rejected = rule.examples(paths, np.array([0.123456, 0.05] + [0.0] * 7), 0.1, n=2)
    assert kept == [("0.jpg", 0.1235)] and rejected == [("1.jpg", 0.05), ("2.jpg", 0.0)]


def test_top_indices_rank_a_float16_store_like_float32_ties_by_lower_index():
    """The stored probabilities are float16 in the newest store: they must rank exactly as the same
    numbers in float32 do, ties (frequent at float16's precision) by the lower class index."""
    rng = np.random.default_rng(3)
    probs = rng.choice(np.array([0.0, 0.001, 0.25, 0.5]), size=(20, rule.NUM_CLASSES)).astype(np.float16)
    expected = np.array([sorted(range(rule.NUM_CLASSES), key=lambda j, r=row: (-float(r[j]), j))[:10] for row in probs])
    assert (rule.top_indices(probs) == expected).all()
    assert (rule.top_indices(probs.astype(np.float32)) == expected).all()
    odd = np.array([[-0.0, 0.5, np.inf, -1.0, 0.25, 0.0]], dtype=np.float16)  # what no softmax gives, still ranked
    assert rule.top_indices(odd, k=6).tolist() == rule.top_indices(odd.astype(np.float32), k=6).tolist()
    assert rule.top_indices(odd, k=6)[0].tolist() == [2, 1, 4, 0, 5, 3]


def test_histogram_bins_span_zero_to_one_whatever_the_values():
    edges, counts = rule.histogram(np.array([0.25, 0.35, 0.65]), bins=10)
    assert edges.tolist() == pytest.approx(np.linspace(0, 1, 11).tolist())
    assert counts.tolist() == [0, 0, 1, 1, 0, 0, 1, 0, 0, 0]
