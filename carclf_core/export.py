"""The exported model and its contract: what any program needs to use it the way training did.

``evaluate/export/`` holds ``model.keras``, ``contract.json`` (input size, resize mode, pixel range,
class names in order, the run it came from, its test metrics, library versions), ``classes.json``
and, by option, a TensorFlow SavedModel for TF Serving (signature ``serving_default``: input
``image``, float32 RGB pixels 0..255 at the contract's size; output ``probabilities``) and a TFLite
file checked to predict like the Keras model.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .config import Config
from .errors import RunError
from .images import ANTIALIAS_SHRINK, TRANSPOSE
from .quiet import captured_output, worth_showing
from .runs import REPLACING, RunDir, atomic_path, write_json_atomic

CONTRACT_FILE = "contract.json"
CONTRACT_VERSION = 2
"""2: the decoder, the EXIF rule, the scaled size, the resize method and the antialias rule spelled out."""
EXIF_TRANSPOSE = {str(orientation): turn.name for orientation, turn in TRANSPOSE.items()}
"""EXIF orientation -> the name of Pillow's ``Image.Transpose`` that turns the picture upright."""


def preparation() -> dict[str, Any]:
    """How a photo becomes the model's input, step by step, precisely enough for a client to repeat
    with Pillow and numpy (``tests/test_use.py`` does, and the README's serving example is that code):
    what ``carclf_core.inputs.decode_image`` does for training, evaluation and ``predict``."""
    return {
        "decode": {
            "jpeg": "libjpeg with the accurate integer inverse DCT (JDCT_ISLOW) and fancy upsampling: "
            "Pillow's Image.open(...).convert('RGB'), TensorFlow's tf.io.decode_jpeg(dct_method='INTEGER_ACCURATE')",
            "other": "PNG, GIF (first frame), BMP, WebP: Pillow's convert('RGB'); 16-bit images keep the high byte",
        },
        "exif_orientation": {
            "rule": "JPEG only: tag 0x0112 of the first Exif APP1 segment (Pillow's getexif()); 2..8 turn the "
            "picture upright before anything else, other values and other formats leave it as stored",
            "transpose": dict(EXIF_TRANSPOSE),
        },
        "scaled_size": {
            "pad": "fit inside: if height * w <= width * h then (height, max(1, w * height // h)) else "
            "(max(1, h * width // w), width)",
            "crop": "cover: if height * w >= width * h then (height, ceil(w * height / h)) else "
            "(ceil(h * width / w), width)",
            "stretch": "(height, width)",
            "note": "h, w: the upright picture's size, (sh, sw) the scaled size; integer arithmetic, // floors",
        },
        "interpolation": {
            "method": "bilinear on float32 pixels, half-pixel centres (source x = (i + 0.5) * in / out - 0.5), "
            "edges clamped, each axis scaled by its own in / out",
            "antialias": f"when {ANTIALIAS_SHRINK} * a scaled side < the same upright side: the bilinear "
            "(triangle) kernel widened by in / out, as Pillow's Image.resize(size, BILINEAR) on float 'F' "
            "channels; otherwise plain bilinear between the 4 nearest pixels",
            "antialias_shrink": ANTIALIAS_SHRINK,
        },
        "place": {
            "pad": "the scaled picture at row (height - sh) // 2, column (width - sw) // 2 of a zero "
            "(black) height x width image",
            "crop": "the height x width window at row (sh - height) // 2, column (sw - width) // 2",
            "stretch": "as scaled",
        },
        "clip": [0, 255],
    }


SIGNATURE_INPUT, SIGNATURE_OUTPUT = "image", "probabilities"
TFLITE_TOLERANCE = 1e-4
"""Largest probability difference allowed between the TFLite and the Keras model on the test images."""


@dataclasses.dataclass(frozen=True)
class Contract:
    """How an exported model must be fed, and what it answers (``contract.json``)."""

    height: int
    width: int
    resize: str
    """``pad``, ``crop`` or ``stretch``: how a photo of any size becomes ``height`` x ``width``."""
    classes: tuple[str, ...]
    run: str = ""
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    versions: dict[str, str] = dataclasses.field(default_factory=dict)
    prefilter: dict[str, Any] = dataclasses.field(default_factory=dict)
    """The run's prefilter model and rule, for ``predict --prefilter``."""
    files: dict[str, str] = dataclasses.field(default_factory=dict)
    """What the export folder holds: ``keras``, ``savedmodel``, ``tflite`` (relative names)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "format": CONTRACT_VERSION,
            "input": {
                "height": self.height,
                "width": self.width,
                "resize": self.resize,
                "channels": "RGB",
                "dtype": "float32",
                "pixel_range": [0, 255],
                **preparation(),
            },
            "classes": list(self.classes),
            "run": self.run,
            "metrics": self.metrics,
            "versions": self.versions,
            "prefilter": self.prefilter,
            "files": self.files,
            "serving": {"signature": "serving_default", "input": SIGNATURE_INPUT, "output": SIGNATURE_OUTPUT},
            "written": time.time(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Contract:
        shape = data["input"]
        return cls(
            height=int(shape["height"]),
            width=int(shape["width"]),
            resize=str(shape["resize"]),
            classes=tuple(str(c) for c in data["classes"]),
            run=str(data.get("run", "")),
            metrics=dict(data.get("metrics", {})),
            versions=dict(data.get("versions", {})),
            prefilter=dict(data.get("prefilter", {})),
            files=dict(data.get("files", {})),
        )


def export_dir(run: RunDir) -> Path:
    return run.evaluate_dir / "export"


def _no_export_hint(run: RunDir) -> str:
    """What to do about a missing export: run evaluate, or finish its re-run (its earlier export kept)."""
    try:
        entry = run.read_state()["stages"].get("evaluate", {})
    except RunError:
        entry = {}
    status = entry.get("status")
    if status in (None, "done") or not isinstance(status, str):
        return "run the evaluate stage first"
    earlier = entry.get(REPLACING)
    kept = f"; the earlier export is in {run.path / earlier / 'export'}" if isinstance(earlier, str) else ""
    return f"the evaluate stage is {status}{kept}: carclf-tui --resume {run.path} runs it"


def read_contract(run: RunDir) -> Contract:
    """The contract of a run's export.

    Raises:
        RunError: the run has no export (evaluate not run) or its contract is damaged.
    """
    path = export_dir(run) / CONTRACT_FILE
    if not path.is_file():
        raise RunError(f"{run.path}: no exported model ({path} is missing)", _no_export_hint(run))
    try:
        return Contract.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as exc:
        raise RunError(f"{path}: damaged export contract ({exc})") from exc


def load_exported(run: RunDir):
    """The run's exported Keras model and its contract.

    Raises:
        RunError: no export, a damaged contract, or a model file that does not load.
    """
    contract = read_contract(run)  # first: a run without an export is refused without loading Keras
    from .model import load_model  # Keras, and the project's own layers registered for safe loading

    path = export_dir(run) / contract.files.get("keras", "model.keras")
    try:
        return load_model(path), contract
    except Exception as exc:  # Keras wraps file and format errors in several types
        raise RunError(f"{path}: cannot load the exported model ({type(exc).__name__}: {exc})") from exc


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("carclf", "keras", "tensorflow", "tensorflow-cpu"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def make_contract(run: RunDir, config: Config, classes: list[str], metrics: dict[str, Any]) -> Contract:
    p = config.prefilter
    prefilter = (
        {}
        if p.mode == "off"
        else {
            "model": p.model,
            "weights": p.weights,
            "rule": p.rule,
            "threshold": p.threshold,
            "top_k": p.top_k,
            "car_classes": list(p.car_classes),
            "input_size": p.input_size,
            "resize": p.resize,
        }
    )
    if prefilter and p.rule == "learned":  # the model itself, so predict --prefilter decides as the run did
        try:
            record = json.loads((run.prefilter_dir / "rule.json").read_text(encoding="utf-8"))["learned"]
            prefilter["learned"] = {k: record[k] for k in ("features", "floor", "coef", "intercept")}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RunError(
                f"{run.prefilter_dir / 'rule.json'}: no learned rule to export ({exc})",
                "run the prefilter stage again (carclf-tui --resume RUN --stage prefilter)",
            ) from exc
    kept: dict[str, Any] = {
        k: metrics[k] for k in ("accuracy", "top5", "balanced_accuracy", "images", "chance") if k in metrics
    }
    return Contract(
        height=config.input.height,
        width=config.input.width,
        resize=config.input.resize,
        classes=tuple(classes),
        run=str(run.path),
        metrics=kept,
        versions=versions(),
        prefilter=prefilter,
    )


def write_export(
    model, run: RunDir, contract: Contract, savedmodel: bool, tflite: bool, check_images: np.ndarray | None = None
) -> Contract:
    """Write ``model.keras``, the optional SavedModel and TFLite files, then the contract naming them.

    Args:
        check_images: float32 batch at the contract's size; the TFLite file must give the Keras
            model's probabilities on them (within :data:`TFLITE_TOLERANCE`), or it is not kept.

    Returns:
        The contract as written (its ``files`` filled in).
    """
    folder = export_dir(run)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "model.keras") as tmp:
        model.save(str(tmp))
    files = {"keras": "model.keras"}
    write_json_atomic(folder / "classes.json", list(contract.classes))
    if savedmodel:
        export_savedmodel(model, folder / "savedmodel", contract)
        files["savedmodel"] = "savedmodel"
    if tflite:
        export_tflite(model, folder / "model.tflite", check_images)
        files["tflite"] = "model.tflite"
    contract = dataclasses.replace(contract, files=files)
    write_json_atomic(folder / CONTRACT_FILE, contract.to_json())
    return contract


def export_savedmodel(model, folder: Path, contract: Contract) -> None:
    """A SavedModel for TF Serving whose ``serving_default`` takes raw pixels named ``image`` and
    answers ``probabilities``; it replaces ``folder`` only when complete."""
    import keras
    import tensorflow as tf

    folder = Path(folder)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-savedmodel-", dir=folder.parent))
    try:
        archive = keras.export.ExportArchive()
        archive.track(model)
        spec = tf.TensorSpec((None, contract.height, contract.width, 3), tf.float32, name=SIGNATURE_INPUT)
        archive.add_endpoint(
            name="serve", fn=lambda image: {SIGNATURE_OUTPUT: model(image, training=False)}, input_signature=[spec]
        )
        archive.write_out(str(tmp / "savedmodel"), verbose=False)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp / "savedmodel", folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def export_tflite(model, path: Path, check_images: np.ndarray | None) -> float:
    """Convert to TFLite (float32) and check it predicts like the Keras model; returns the largest
    probability difference seen.

    Raises:
        RunError: the converted model disagrees with the Keras model (the file is not kept).
    """
    import tensorflow as tf

    from .prefilter.classifiers import tflite_interpreter

    # the converter writes a few hundred lines ("Saved artifact at ...", every captured tensor) to
    # the process's stdout from C++ and Python: kept off the terminal, said only if it fails
    with captured_output() as chatter:
        try:
            data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
        except Exception as exc:
            failure: Exception | None = exc
        else:
            failure = None
    if failure is not None:
        said = "; ".join(worth_showing(chatter)[-3:])
        raise RunError(
            f"evaluate.export_tflite: the TFLite conversion failed ({type(failure).__name__}: "
            f"{failure}){': ' + said if said else ''}"
        ) from failure
    worst = 0.0
    with atomic_path(path) as tmp:  # renamed into place only once it has passed the check
        tmp.write_bytes(data)
        if check_images is not None and len(check_images):
            interpreter = tflite_interpreter(tmp)
            inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
            expected = np.asarray(model.predict(check_images, verbose=0), dtype=np.float32)
            for i, image in enumerate(check_images):
                interpreter.set_tensor(inp["index"], image[None].astype(np.float32))
                interpreter.invoke()
                worst = max(worst, float(np.abs(interpreter.get_tensor(out["index"])[0] - expected[i]).max()))
            if worst > TFLITE_TOLERANCE:
                raise RunError(
                    f"evaluate.export_tflite: the TFLite model differs from the Keras model by up to {worst:.2g} "
                    f"in probability on the test images (allowed {TFLITE_TOLERANCE:g}); not kept"
                )
    return worst
