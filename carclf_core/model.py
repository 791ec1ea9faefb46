"""The transfer model: a Keras application backbone without its top, plus a new classification head.

Pure Keras 3 (no TensorFlow calls), so the same builder runs on the TensorFlow, JAX and PyTorch
backends. The model takes float32 pixels in 0..255 (what ``inputs.make_dataset`` yields and what a
serving client sends); each backbone's own input scaling is a layer inside the model, never a Lambda,
so the exported ``.keras`` file loads in safe mode.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from .config import TrainConfig
from .errors import ModelError

HEAD_PREFIX = "head_"
RANDOM_INIT_BN_MOMENTUM = 0.9


@keras.saving.register_keras_serializable(package="carclf")
class CaffePreprocess(keras.layers.Layer):
    """VGG/ResNet-v1 ("caffe") input scaling: RGB to BGR, then subtract the ImageNet channel means.

    A named, serializable layer rather than a Lambda: Lambda layers hold Python bytecode and do not
    load in Keras's safe mode.
    """

    MEAN_BGR = (103.939, 116.779, 123.68)

    def call(self, inputs):
        bgr = keras.ops.flip(inputs, axis=-1)
        return bgr - keras.ops.convert_to_tensor(self.MEAN_BGR, dtype=bgr.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


def _scale_minus1_1() -> keras.layers.Layer:
    # 0..255 -> -1..1, the "tf" mode of resnet_v2 / mobilenet_v2 preprocess_input
    return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")


@dataclasses.dataclass(frozen=True)
class Backbone:
    """How to build one Keras application and scale its input."""

    factory: Callable[..., keras.Model]
    preprocess: Callable[[], keras.layers.Layer] | None
    """A layer mapping 0..255 pixels to the backbone's input range; None when the application
    scales its input itself (``include_preprocessing=True``, EfficientNet, ConvNeXt, MobileNetV3)."""
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Extra keyword arguments for the application (e.g. ``minimalistic``)."""


def _apps() -> dict[str, Backbone]:
    A = keras.applications
    caffe = lambda: CaffePreprocess(name="preprocess")  # noqa: E731
    table = {
        "resnet50v2": Backbone(A.ResNet50V2, _scale_minus1_1),
        "resnet101v2": Backbone(A.ResNet101V2, _scale_minus1_1),
        "resnet152v2": Backbone(A.ResNet152V2, _scale_minus1_1),
        "vgg16": Backbone(A.VGG16, caffe),
        "vgg19": Backbone(A.VGG19, caffe),
        "mobilenetv2": Backbone(A.MobileNetV2, _scale_minus1_1),
        "mobilenetv3small": Backbone(A.MobileNetV3Small, None),
        "mobilenetv3small_minimalistic": Backbone(A.MobileNetV3Small, None, {"minimalistic": True}),
        "mobilenetv3large": Backbone(A.MobileNetV3Large, None),
        "efficientnetv2b0": Backbone(A.EfficientNetV2B0, None),
        "efficientnetv2b1": Backbone(A.EfficientNetV2B1, None),
        "efficientnetv2b2": Backbone(A.EfficientNetV2B2, None),
        "efficientnetv2b3": Backbone(A.EfficientNetV2B3, None),
        "efficientnetv2s": Backbone(A.EfficientNetV2S, None),
        "efficientnetv2m": Backbone(A.EfficientNetV2M, None),
        "efficientnetv2l": Backbone(A.EfficientNetV2L, None),
        "convnext_tiny": Backbone(A.ConvNeXtTiny, None),
        "convnext_small": Backbone(A.ConvNeXtSmall, None),
        "convnext_base": Backbone(A.ConvNeXtBase, None),
        "convnext_large": Backbone(A.ConvNeXtLarge, None),
    }
    return table


BACKBONE_NAMES: tuple[str, ...] = (
    "resnet50v2",
    "resnet101v2",
    "resnet152v2",
    "vgg16",
    "vgg19",
    "mobilenetv2",
    "mobilenetv3small",
    "mobilenetv3small_minimalistic",
    "mobilenetv3large",
    "efficientnetv2b0",
    "efficientnetv2b1",
    "efficientnetv2b2",
    "efficientnetv2b3",
    "efficientnetv2s",
    "efficientnetv2m",
    "efficientnetv2l",
    "convnext_tiny",
    "convnext_small",
    "convnext_base",
    "convnext_large",
)


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "").replace(" ", "")


def validate(cfg: TrainConfig) -> None:
    """Check the model keys before any expensive work; errors name the config key.

    Raises:
        StageError: unknown ``train.backbone``, missing ``train.weights`` file, bad ``train.freeze_patterns``.
    """
    if _normalise(cfg.backbone) not in BACKBONE_NAMES:
        raise ModelError(f"train.backbone: unknown backbone {cfg.backbone!r} (known: {', '.join(BACKBONE_NAMES)})")
    if cfg.weights not in ("imagenet", "null") and not Path(cfg.weights).is_file():
        raise ModelError(
            f"train.weights: {cfg.weights}: no such file (use `imagenet`, `null` or a "
            f"weights file of the {cfg.backbone} backbone without its top)"
        )
    for pattern in cfg.freeze_patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ModelError(f"train.freeze_patterns: {pattern!r} is not a regular expression ({exc})") from exc


def build_base(cfg: TrainConfig, input_shape: tuple[int, int, int]) -> keras.Model:
    """The backbone application with ``include_top=False`` and the configured weights.

    Raises:
        StageError: offline ImageNet download, or a weights file that does not fit (names ``train.weights``).
    """
    validate(cfg)
    spec = _apps()[_normalise(cfg.backbone)]
    weights = None if cfg.weights == "null" else cfg.weights
    kwargs = dict(include_top=False, weights=weights, input_shape=input_shape, **spec.extra)
    try:
        return spec.factory(**kwargs)
    except Exception as exc:  # Keras raises plain Exception subclasses for both cases below
        if weights == "imagenet":
            text = str(exc)
            if any(s in text for s in ("URL", "fetch", "urlopen", "resolution", "Network", "HTTP")):
                raise ModelError(
                    f"train.weights: cannot download the ImageNet weights of {cfg.backbone} ({text.strip()[:200]}); "
                    "connect once so Keras caches them in ~/.keras/models, copy the cached file there, "
                    "or set train.weights to a local weights file or null"
                ) from exc
            raise ModelError(
                f"train.weights: imagenet weights for {cfg.backbone} at input {input_shape}: {exc}"
            ) from exc
        if weights is not None:
            raise ModelError(
                f"train.weights: {weights} does not fit the {cfg.backbone} backbone without "
                f"its top ({type(exc).__name__}: {str(exc)[:300]})"
            ) from exc
        raise


def build_model(
    cfg: TrainConfig, input_shape: tuple[int, int, int], num_classes: int
) -> tuple[keras.Model, keras.Model]:
    """Build the whole classifier: 0..255 input, backbone scaling, backbone, head, softmax.

    Args:
        cfg: the ``train`` section (backbone, weights, head).
        input_shape: (height, width, 3).
        num_classes: number of output classes.

    Returns:
        ``(model, base)``: the classifier and its backbone (for freezing).
    """
    base = build_base(cfg, input_shape)
    if cfg.weights == "null":
        # Keras applications use BatchNorm momentum 0.99-0.999, right for pretrained statistics that
        # should barely move; from random init those moving averages lag far behind the batch
        # statistics for hundreds of steps and validation predicts one class. 0.9 catches up in ~20.
        for layer in base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = RANDOM_INIT_BN_MOMENTUM
    spec = _apps()[_normalise(cfg.backbone)]
    inputs = keras.Input(shape=input_shape, name="image", dtype="float32")
    x = spec.preprocess()(inputs) if spec.preprocess else inputs
    # training=None lets fit() use training mode; freezing passes training=False through
    # the `base_training` flag below only for the warm-up phase, where it matters for BatchNorm.
    x = base(x)
    if cfg.head == "vgg":
        x = keras.layers.Flatten(name="head_flatten")(x)
        x = keras.layers.Dense(1024, activation="relu", name="head_dense")(x)
        x = keras.layers.Dropout(0.3, name="head_dropout")(x)
    else:
        x = keras.layers.GlobalAveragePooling2D(name="head_gap")(x)
    # float32 output even under mixed precision: softmax in half precision loses small probabilities
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="head_pred")(x)
    model = keras.Model(inputs, outputs, name=f"carclf_{_normalise(cfg.backbone)}")
    return model, base


def build_frozen_base_model(model: keras.Model, base: keras.Model) -> keras.Model:
    """A view of ``model`` whose backbone is called with ``training=False`` (head warm-up).

    The keras-io transfer-learning recipe: with the base frozen *and* in inference mode, its
    BatchNorm layers keep their statistics, so unfreezing later does not wreck what the base knows.
    (Keras 3's functional models let the outer ``training`` flag override the one given here, but a
    BatchNormalization layer whose ``trainable`` is False always runs in inference mode, so freeze
    the base with :func:`apply_freeze` first.) The returned model shares every layer with ``model``.
    """
    inputs = model.inputs[0]
    x = inputs
    for layer in model.layers[1:]:
        if layer is base:
            x = layer(x, training=False)
        else:
            x = layer(x)
    return keras.Model(inputs, x, name=model.name + "_warmup")


def apply_freeze(model: keras.Model, base: keras.Model, mode: str, patterns: Sequence[str] = ()) -> int:
    """Set trainable flags: ``none`` (all), ``base`` (head only) or ``regex`` (freeze matching layers).

    Patterns are matched with ``re.search`` against the backbone's layer names.

    Returns:
        The number of backbone layers frozen.
    """
    model.trainable = True
    base.trainable = True
    for layer in base.layers:
        layer.trainable = True  # setting base.trainable does not undo an earlier per-layer freeze
    frozen = 0
    if mode == "base":
        base.trainable = False
        frozen = len(base.layers)
    elif mode == "regex":
        compiled = [re.compile(p) for p in patterns]
        for layer in base.layers:
            if any(c.search(layer.name) for c in compiled):
                layer.trainable = False
                frozen += 1
    return frozen


def compile_model(model: keras.Model, learning_rate: float) -> None:
    """Adam, categorical cross-entropy, categorical and top-5 accuracy (the reference's recipe + top-5)."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="categorical_crossentropy",
        metrics=["categorical_accuracy", keras.metrics.TopKCategoricalAccuracy(5, name="top5")],
    )


def optimizer_state(model: keras.Model) -> list[np.ndarray]:
    """The compiled ``model``'s optimizer variables as arrays (step count, learning rate, Adam's
    moments), for a checkpoint a resume continues from: about 10x faster to write than ``model.save``
    (a ``.keras`` zip of the model, its config and the same arrays)."""
    return [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]


def restore_optimizer_state(model: keras.Model, arrays: Sequence[np.ndarray]) -> str | None:
    """Put :func:`optimizer_state`'s arrays back into the freshly compiled ``model``'s optimizer; None
    when done, else why not (the model or its trainable layers differ from the checkpoint's). The
    learning rate is the one compiled now: a resume after ``train.learning_rate`` changed uses the new
    one, as a weights-only resume does."""
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    variables = optimizer.variables
    if len(variables) != len(arrays):
        return f"the checkpoint has {len(arrays)} optimizer variables, the model {len(variables)}"
    for variable, array in zip(variables, arrays, strict=True):
        saved, now = tuple(np.shape(array)), tuple(variable.shape)
        if saved != now:
            return f"optimizer variable {variable.path}: shape {saved} in the checkpoint, {now} now"
    for variable, array in zip(variables, arrays, strict=True):
        if not variable.path.endswith("learning_rate"):
            variable.assign(array)
    return None


def balanced_class_weights(labels: Sequence[int] | np.ndarray, num_classes: int) -> dict[int, float]:
    """``n_samples / (n_classes * n_class)`` per class from the training labels (scikit-learn's
    ``balanced``); a class absent from the labels gets weight 1.0 (it never contributes anyway)."""
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=num_classes)
    n = float(len(labels))
    return {i: (n / (num_classes * c) if c else 1.0) for i, c in enumerate(counts.tolist())}


def load_model(path: Path | str) -> keras.Model:
    """Load an exported or checkpointed ``.keras`` file in safe mode (custom layers registered here)."""
    return keras.saving.load_model(str(path), safe_mode=True)
