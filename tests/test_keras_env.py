"""Where Keras runs, without a fit: the learning-rate rule for several machines and the precision
policy. (The strategies themselves run in ``test_distributed.py`` and ``test_train.py``.)"""

from __future__ import annotations

import math

import pytest

from carclf_core.keras_env import lr_scale, mixed_policy


@pytest.mark.parametrize(
    "rule, expected",
    [
        ("sqrt", {1: 1.0, 2: math.sqrt(2), 4: 2.0}),  # Adam: x sqrt(machines)
        ("linear", {1: 1.0, 2: 2.0, 4: 4.0}),  # SGD: x machines
        ("none", {1: 1.0, 2: 1.0, 4: 1.0}),
    ],
)
def test_the_learning_rate_rule_for_1_2_and_4_machines(rule, expected):
    assert {machines: lr_scale(rule, machines) for machines in (1, 2, 4)} == pytest.approx(expected)


@pytest.mark.parametrize(
    "mode, gpus, cc_major, policy",
    [
        ("auto", 0, 0, "float32"),  # no GPU: full precision
        ("off", 2, 9, "float32"),
        ("auto", 1, 8, "mixed_bfloat16"),  # Ampere and newer
        ("auto", 1, 7, "mixed_float16"),  # older GPUs: float16 with loss scaling
        ("on", 1, 9, "mixed_bfloat16"),
        ("on", 0, 0, "mixed_bfloat16"),  # forced on a CPU: bfloat16, which CPUs run
    ],
)
def test_the_precision_policy(mode, gpus, cc_major, policy):
    assert mixed_policy(mode, gpus, cc_major) == policy
