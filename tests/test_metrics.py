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
