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


def _train(**values):
    from carclf_core import config as config_mod

    return config_mod.from_dict({"train": values}).train


def test_the_strategy_for_each_distribute_mode_on_one_cpu():
    from carclf_core.cluster import Cluster
    from carclf_core.errors import ConfigError
    from carclf_core.keras_env import distribution

    assert distribution(_train(distribute="none")) is None
    assert distribution(_train(distribute="auto")) is None  # one machine, no GPU: Keras's default
    alone = Cluster(workers=("localhost:1",), rank=0)
    assert distribution(_train(distribute="auto"), alone) is None  # TF_CONFIG naming one machine
    with pytest.raises(ConfigError, match="train.distribute: multi_worker needs the environment variable") as no:
        distribution(_train(distribute="multi_worker"))
    assert no.value.hint == "see README, Training on several machines"
    import tensorflow as tf

    mirrored = distribution(_train(distribute="mirrored"))  # no GPU: mirrors over the CPU (how tests run it)
    assert isinstance(mirrored, tf.distribute.MirroredStrategy)
    assert [d.split("/")[-1] for d in mirrored.extended.worker_devices] == ["device:CPU:0"]


@pytest.mark.parametrize("mode, machines", [("mirrored", 1), ("multi_worker", 2), ("auto", 2)])
def test_a_strategy_on_another_keras_backend_is_refused_naming_the_mode_and_the_backend(monkeypatch, mode, machines):
    """Only TensorFlow has ``tf.distribute``: a strategy asked for (or implied, ``auto`` with several
    machines in TF_CONFIG) on JAX or PyTorch is refused before any TensorFlow runs. (Only TensorFlow is
    installed here, so the backend's name is what changes.)"""
    import keras

    from carclf_core.cluster import Cluster
    from carclf_core.errors import StageError
    from carclf_core.keras_env import distribution

    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    cluster = Cluster(workers=tuple(f"host{i}:2222" for i in range(machines)), rank=0)
    with pytest.raises(StageError, match=rf"train.distribute: `{mode}` needs the TensorFlow Keras backend "
                                         r"\(KERAS_BACKEND is jax\)"):
        distribution(_train(distribute=mode), cluster)


def test_auto_on_one_machine_of_another_backend_keeps_its_default(monkeypatch):
    import keras

    from carclf_core.cluster import Cluster
    from carclf_core.keras_env import distribution

    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    assert distribution(_train(distribute="auto")) is None
    assert distribution(_train(distribute="auto"), Cluster(workers=("localhost:1",), rank=0)) is None


def test_a_machine_without_a_gpu_reports_none_and_trains_in_float32():
    import tensorflow as tf

    from carclf_core.keras_env import gpu_info

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    assert gpu_info() == (0, 0)
    assert mixed_policy("auto", *gpu_info()) == "float32"


def test_whole_batches_never_hand_a_machine_a_short_batch():
    import numpy as np
    import tensorflow as tf

    from carclf_core.keras_env import whole_batches

    rows = tf.data.Dataset.from_tensor_slices(np.arange(10)).batch(4)  # 4, 4 and a short 2
    assert [b.tolist() for b in whole_batches(rows, 4).as_numpy_iterator()] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    share = whole_batches(rows, 4, own_share=True)  # repeats: an epoch is counted in steps
    assert [b.tolist() for b in share.take(3).as_numpy_iterator()] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1]]
    assert share.options().experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.OFF
