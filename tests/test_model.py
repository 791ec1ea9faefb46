"""The model builder and the cheap callback logic, without a fit (no slow graph builds)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from carclf_core import config as config_mod
from carclf_core import model as model_mod
from carclf_core.callbacks import EventCallback
from carclf_core.errors import ModelError
from carclf_core.events import BatchEnded, EpochStarted
from carclf_core.metrics import confusion_matrix


def train_cfg(**values) -> config_mod.TrainConfig:
    return config_mod.from_dict({"train": {"backbone": "mobilenetv3small", "weights": "null", **values}}).train


def test_balanced_class_weights_match_the_formula():
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
    weights = model_mod.balanced_class_weights(labels, 4)
    assert weights[0] == pytest.approx(10 / (4 * 6)) and weights[1] == pytest.approx(10 / (4 * 3))
    assert weights[2] == pytest.approx(10 / 4) and weights[3] == 1.0  # absent class: neutral
    # weighted, every present class contributes the same total
    totals = {c: weights[c] * n for c, n in ((0, 6), (1, 3), (2, 1))}
    assert len({round(v, 9) for v in totals.values()}) == 1


def test_unknown_backbone_names_the_key():
    with pytest.raises(ModelError, match="train.backbone: unknown backbone 'resnet9000'"):
        model_mod.validate(train_cfg(backbone="resnet9000"))


def test_missing_weights_file_names_the_key(tmp_path):
    with pytest.raises(ModelError, match="train.weights: .*nothing.h5: no such file"):
        model_mod.build_model(train_cfg(weights=str(tmp_path / "nothing.h5")), (32, 48, 3), 3)


def test_weights_file_of_another_backbone_names_the_key(tmp_path):
    other = keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(32, 48, 3),
                                                minimalistic=True)
    path = tmp_path / "other.weights.h5"
    other.save_weights(str(path))
    with pytest.raises(ModelError, match="train.weights: .*does not fit the mobilenetv3small backbone"):
        model_mod.build_model(train_cfg(weights=str(path)), (32, 48, 3), 3)


def test_matching_weights_file_loads(tmp_path):
    base = keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(32, 48, 3))
    path = tmp_path / "base.weights.h5"
    base.save_weights(str(path))
    _, loaded = model_mod.build_model(train_cfg(weights=str(path)), (32, 48, 3), 3)
    for a, b in zip(base.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_offline_imagenet_weights_fail_with_advice():
    try:
        model_mod.build_model(train_cfg(weights="imagenet"), (32, 48, 3), 3)
    except ModelError as exc:
        assert "train.weights" in str(exc)
    else:  # pragma: no cover - only with a network or a warm ~/.keras cache
        pytest.skip("ImageNet weights were available (online or cached)")


def test_vgg_caffe_scaling_and_head_round_trip_in_safe_mode(tmp_path):
    model, base = model_mod.build_model(train_cfg(backbone="vgg16", head="vgg"), (32, 32, 3), 4)
    names = [layer.name for layer in model.layers]
    assert names[1] == "preprocess" and {"head_flatten", "head_dense", "head_dropout", "head_pred"} <= set(names)
    pixels = np.full((1, 32, 32, 3), 200.0, dtype="float32")
    pixels[..., 0] = 10.0  # red channel
    scaled = keras.ops.convert_to_numpy(model.get_layer("preprocess")(pixels))
    # RGB -> BGR, minus the ImageNet means: red lands last
    np.testing.assert_allclose(scaled[0, 0, 0], [200 - 103.939, 200 - 116.779, 10 - 123.68], rtol=1e-5)
    path = tmp_path / "vgg.keras"
    model.save(str(path))
    loaded = model_mod.load_model(path)
    np.testing.assert_allclose(loaded.predict(pixels, verbose=0), model.predict(pixels, verbose=0), rtol=1e-5)
    assert model.get_layer("head_pred").dtype == "float32"


def test_freeze_modes():
    model, base = model_mod.build_model(train_cfg(), (32, 48, 3), 3)
    assert model_mod.apply_freeze(model, base, "base") == len(base.layers)
    assert not base.trainable and model.get_layer("head_pred").trainable
    frozen = model_mod.apply_freeze(model, base, "regex", [r"^expanded_conv_[0-3]_", r"^conv$"])
    matching = [l for l in base.layers if l.name == "conv" or l.name.startswith(
        tuple(f"expanded_conv_{i}_" for i in range(4)))]
    assert frozen == len(matching) > 0 and all(not l.trainable for l in matching)
    assert base.trainable and sum(l.trainable for l in base.layers) == len(base.layers) - frozen
    assert model_mod.apply_freeze(model, base, "none") == 0 and all(l.trainable for l in base.layers)


def test_warmup_view_shares_weights_and_runs_the_base_in_inference_mode():
    model, base = model_mod.build_model(train_cfg(), (32, 48, 3), 3)
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 48, 3)).astype("float32")
    unfrozen = keras.ops.convert_to_numpy(model(x, training=True))
    model_mod.apply_freeze(model, base, "base")
    warm = model_mod.build_frozen_base_model(model, base)
    assert {id(w) for w in warm.weights} == {id(w) for w in model.weights}
    # training=True on the view still runs the base in inference mode (BatchNorm uses moving stats)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(warm(x, training=True)),
                               keras.ops.convert_to_numpy(model(x, training=False)), rtol=1e-4, atol=1e-6)
    # ...which differs from batch statistics (what an unfrozen base in training mode uses)
    assert not np.allclose(unfrozen, keras.ops.convert_to_numpy(warm(x, training=True)), atol=1e-3)


def test_batch_events_are_throttled_to_the_configured_rate():
    events = []
    now = [0.0]
    callback = EventCallback(events.append, batch_size=8, steps=1000, train_images=8000,
                             batch_events_per_second=4.0, total_epochs=3, clock=lambda: now[0])
    callback.set_params({"epochs": 3, "steps": None})
    callback.on_epoch_begin(0)
    for step in range(1000):  # 1000 batches over 10 simulated seconds
        now[0] += 0.01
        callback.on_train_batch_end(step, {"loss": 1.0, "categorical_accuracy": 0.5})
    batches = [e for e in events if isinstance(e, BatchEnded)]
    assert isinstance(events[0], EpochStarted) and events[0].epoch == 1 and events[0].steps == 1000
    assert 38 <= len(batches) <= 41  # 4 a second for 10 s
    last = batches[-1]
    assert last.images_per_s == pytest.approx(last.step * 8 / (last.step * 0.01), rel=0.01)
    assert last.eta_s == pytest.approx((1000 - last.step) * 0.01, rel=0.01)


def test_confusion_matrix_counts():
    m = confusion_matrix(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0]), 3)
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
