"""Baselines set beside the accuracies: chance, the majority class, top-5 chance."""

import numpy as np
import pytest

from carclf_core import metrics


def test_majority_baseline_is_the_share_of_the_most_frequent_class():
    # 10 test images over 7 classes: class 2 holds 6 of them
    labels = np.array([2, 2, 2, 2, 2, 2, 0, 1, 5, 5])
    out = metrics.baselines(labels, num_classes=7)
    assert out["chance"] == pytest.approx(1 / 7)
    assert out["majority_baseline"] == pytest.approx(0.6)
    assert out["top5_chance"] == pytest.approx(5 / 7)
    assert out["top5_majority_baseline"] == pytest.approx(1.0)  # classes 2, 5, 0, 1 cover every image
    # answering the majority class always scores exactly the baseline
    confusion = metrics.confusion_matrix(labels, np.full(len(labels), 2), 7)
    assert metrics.summary_metrics(confusion)["accuracy"] == pytest.approx(out["majority_baseline"])


def test_top5_chance_is_min_of_5_and_classes_over_classes():
    labels = np.array([0, 1, 2])
    assert metrics.baselines(labels, 3)["top5_chance"] == 1.0
    assert metrics.baselines(np.arange(300) % 300, 300)["top5_chance"] == pytest.approx(5 / 300)
    many = metrics.baselines(np.array([0] * 3 + [1] * 2 + list(range(2, 12))), 12)
    assert many["top5_majority_baseline"] == pytest.approx((3 + 2 + 1 + 1 + 1) / 15)


def test_top5_of_a_model_that_always_ranks_the_frequent_classes_first_is_the_top5_majority():
    rng = np.random.default_rng(0)
    labels = rng.choice(8, size=200, p=[0.4, 0.2, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05])
    probs = np.tile(np.bincount(labels, minlength=8).astype(float), (len(labels), 1))
    out = metrics.baselines(labels, 8)
    assert metrics.top_k_accuracy(probs, labels, 5) == pytest.approx(out["top5_majority_baseline"])


def test_no_labels_gives_zero_shares_not_a_division_error():
    out = metrics.baselines(np.array([], dtype=int), 4)
    assert out["majority_baseline"] == 0.0 and out["chance"] == 0.25


# --- every figure with its uncertainty ------------------------------------------------------------


@pytest.mark.parametrize(
    "hits, n, expected",
    [
        (16, 32, (0.3363, 0.6637)),  # the 16 of 32 test photos: about +-0.17
        (0, 10, (0.0, 3.8415 / 13.8415)),  # no success: the upper end is z^2 / (n + z^2), not 0
        (10, 10, (10 / 13.8415, 1.0)),
        (81, 263, (0.2553, 0.3662)),  # Wilson (1927) as statistics texts tabulate it
    ],
)
def test_wilson_interval_matches_known_values(hits, n, expected):
    low, high = metrics.wilson_interval(hits, n)
    assert (low, high) == pytest.approx(expected, abs=1e-4)


def test_an_interval_of_nothing_measured_is_everything():
    assert metrics.wilson_interval(0, 0) == (0.0, 1.0)
    assert metrics.bootstrap_balanced_accuracy(np.array([]), np.array([]), 3) == (0.0, 1.0)


def test_bootstrap_balanced_accuracy_is_seeded_and_as_wide_as_the_normal_interval():
    rng = np.random.default_rng(5)
    true = np.repeat([0, 1], 200)
    pred = np.where(rng.random(400) < 0.75, true, 1 - true)
    balanced = metrics.summary_metrics(metrics.confusion_matrix(true, pred, 2))["balanced_accuracy"]
    low, high = metrics.bootstrap_balanced_accuracy(true, pred, 2, seed=1)
    assert (low, high) == metrics.bootstrap_balanced_accuracy(true, pred, 2, seed=1)
    assert low < balanced < high
    # two classes of equal size: the balanced accuracy is nearly a proportion of 400 photos
    half = 1.96 * np.sqrt(balanced * (1 - balanced) / 400)
    assert (high - low) / 2 == pytest.approx(half, abs=0.008)
    # a perfect model has no doubt; a small class widens the interval
    assert metrics.bootstrap_balanced_accuracy(true, true, 2) == (1.0, 1.0)
    few = np.r_[np.zeros(200, dtype=int), np.ones(8, dtype=int)]
    few_pred = np.r_[pred[:200], np.array([1, 1, 1, 1, 1, 1, 0, 0])]
    wide = metrics.bootstrap_balanced_accuracy(few, few_pred, 2)
    assert wide[1] - wide[0] > high - low


def test_intervals_say_whether_the_accuracy_clears_the_majority_baseline():
    # 16 of 32 correct against a majority baseline of 0.25 (cleared) and of 0.4 (not: 0.336 < 0.4)
    matrix = np.array([[8, 8], [8, 8]])
    figures = {"accuracy": 0.5, "balanced_accuracy": 0.5, "top5": 1.0, "majority_baseline": 0.25}
    out = metrics.with_intervals(figures, matrix, 32, seed=0)
    assert out["accuracy_ci"] == pytest.approx([0.3363, 0.6637], abs=1e-4) and out["clears_majority"] is True
    assert out["top5_ci"][1] == 1.0 and out["top5_ci"][0] == pytest.approx(32 / (32 + 1.959964**2), abs=1e-4)
    assert out["balanced_accuracy_ci"][0] < 0.5 < out["balanced_accuracy_ci"][1]
    assert metrics.with_intervals({**figures, "majority_baseline": 0.4}, matrix, 32)["clears_majority"] is False
    line = metrics.result_line("test", {**figures, **out, "chance": 0.5})
    assert line.startswith("test accuracy 0.500 [0.336, 0.664] (chance 0.500; majority 0.250: cleared)")


def test_each_class_recall_has_its_wilson_interval():
    matrix = np.array([[16, 16, 0], [0, 10, 0], [0, 0, 0]])
    (a_low, a_high), (b_low, b_high), empty = metrics.recall_intervals(matrix)
    assert (a_low, a_high) == pytest.approx((0.3363, 0.6637), abs=1e-4)
    assert b_high == 1.0 and b_low == pytest.approx(10 / 13.8415, abs=1e-4)
    assert empty == (0.0, 1.0)


# --- sink classes -----------------------------------------------------------------------------------


def test_a_column_that_absorbs_many_classes_is_a_sink_and_spread_errors_are_not():
    classes = [f"c{i}" for i in range(10)]
    m = np.diag(np.full(10, 8))
    m[1:6, 0] = 2  # five classes send errors to c0: 10 of the 14 errors
    m[6, 7] = m[8, 9] = m[9, 8] = m[7, 6] = 1
    (sink,) = metrics.sink_classes(m, classes)
    assert sink == {"class": "c0", "sources": 5, "errors": 10, "share": pytest.approx(10 / 14)}
    assert metrics.sink_text([sink]) == "sink: c0 takes errors from 5 classes (71% of errors)"
    # every class confused with two others, evenly: a poor model, but no sink
    spread = np.diag(np.full(10, 8))
    for i in range(10):
        spread[i, (i + 1) % 10] = spread[i, (i + 2) % 10] = 2
    assert metrics.sink_classes(spread, classes) == []
    # a single big confusion (one true class) is a confused pair, not a sink
    pair = np.diag(np.full(10, 8))
    pair[3, 4] = 20
    assert metrics.sink_classes(pair, classes) == []
    assert metrics.sink_classes(np.diag(np.full(10, 8)), classes) == []
