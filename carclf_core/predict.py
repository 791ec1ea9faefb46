"""Classify photos with a run's exported model, preparing them exactly as training did.

The export's contract (:mod:`carclf_core.export`) says the input size and resize mode; the images go
through the same tf.data decoding as the evaluate stage (EXIF orientation applied), so a test image
predicted here gets the probabilities ``evaluate/predictions.csv`` lists for it. With the run's
prefilter, each photo is first asked whether it shows a car at all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from . import config as config_mod
from .export import Contract
from .files import nonregular_reason
from .images import check_image

IMAGE_ENDINGS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
"""What a folder walk picks up; a file named on the command line is tried whatever its ending."""


@dataclasses.dataclass(frozen=True)
class Prediction:
    """One photo's answer: its top classes, or why it has none."""

    path: str
    top: tuple[tuple[str, float], ...] = ()
    """``(class, probability)``, most probable first."""
    error: str = ""
    """Why the photo was not classified (not an image, unreadable, not a car)."""
    car_prob: float | None = None
    """The prefilter's summed car probability, when asked for."""


def image_files(targets: Sequence[Path]) -> tuple[list[Path], list[Prediction]]:
    """The files to classify: files as given, folders walked (sorted, recursive, image endings).

    Returns:
        ``(files, problems)``: a target that does not exist becomes a :class:`Prediction` with an error.
    """
    files: list[Path] = []
    problems: list[Prediction] = []
    for target in map(Path, targets):
        if target.is_dir():
            files += sorted(p for p in target.rglob("*") if p.suffix.lower() in IMAGE_ENDINGS and p.is_file())
        elif target.is_file():
            files.append(target)
        else:  # a FIFO is named as one: it is not opened (a read would wait for a writer)
            why = nonregular_reason(target)
            problems.append(Prediction(str(target), error="no such file or folder" if why == "missing" else str(why)))
    return files, problems


def _why_not(path: Path) -> str:
    check = check_image(path)
    return check.reason or "cannot be decoded"


def predict(
    model,
    contract: Contract,
    files: Sequence[Path],
    batch_size: int = 32,
    top_k: int = 5,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[Prediction]:
    """Top-``top_k`` classes for each file, in file order; a file that does not decode gets its reason.

    Args:
        model: the exported Keras model (:func:`carclf_core.export.load_exported`).
        contract: its contract (input size, resize mode, class names).
        files: image files.
        batch_size: images a model call.
        top_k: classes listed per photo.
        progress: called with (done, total) after each batch.
    """
    from .inputs import make_dataset  # TensorFlow

    # the contract is a file on disk: its values pass the config's own checks before use
    shape = {"height": contract.height, "width": contract.width, "resize": contract.resize}
    icfg = config_mod.from_dict({"input": {**shape, "batch_size": batch_size, "augment": False}}).input
    classes = contract.classes
    k = min(top_k, len(classes))
    answers: dict[int, Prediction] = {}
    labels = np.zeros(len(files), dtype=np.int32)
    dataset = make_dataset([str(f) for f in files], labels, len(classes), icfg, training=False, with_rows=True)
    done = 0
    for images, _, rows in dataset.as_numpy_iterator():
        probs = np.asarray(model.predict_on_batch(images), dtype=np.float64)
        best = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        for row, order, p in zip(rows.tolist(), best, probs, strict=True):
            answers[row] = Prediction(str(files[row]), tuple((classes[i], float(p[i])) for i in order))
        done += len(rows)
        if progress is not None:
            progress(done, len(files))
    for row, path in enumerate(files):
        yield answers.get(row) or Prediction(str(path), error=_why_not(path))


def rule_keeps(prefilter: dict, probs: np.ndarray) -> np.ndarray:
    """Which rows of 1000-class probabilities the contract's prefilter rule (``prefilter``: the
    contract's ``prefilter`` entry) keeps: a threshold or top-k rule, or the learned rule's model."""
    import pandas as pd

    from .prefilter import learned
    from .prefilter.rule import PROB_COLUMNS, apply_rule

    keys = ("rule", "threshold", "top_k", "car_classes")
    cfg = config_mod.from_dict({"prefilter": {k: prefilter[k] for k in keys if k in prefilter}}).prefilter
    if cfg.rule == learned.LEARNED:
        model = learned.Model.from_dict(prefilter["learned"])
        features = probs if model.features == "probs" else np.asarray(probs)[:, list(cfg.car_classes)]
        return np.asarray(model.decision(learned.transform(features)) > 0)
    frame = pd.DataFrame(probs, columns=list(PROB_COLUMNS))
    return apply_rule(frame, cfg.rule, cfg.threshold, cfg.top_k, cfg.car_classes)


def car_probabilities(contract: Contract, files: Sequence[Path], batch_size: int = 32) -> dict[int, tuple[float, bool]]:
    """The run's prefilter on ``files``: row -> (summed car probability, kept by the run's rule).

    Rows missing from the result could not be decoded. Raises ModelError when the prefilter model
    cannot be loaded (its message names the key and what to do).
    """
    from .inputs import make_prefilter_dataset
    from .prefilter.classifiers import load_classifier
    from .prefilter.rule import car_probability

    p = contract.prefilter
    keys = ("model", "weights", "rule", "threshold", "top_k", "car_classes", "input_size", "resize")
    cfg = config_mod.from_dict({"prefilter": {k: p[k] for k in keys if k in p}}).prefilter
    classifier = load_classifier(cfg)
    result: dict[int, tuple[float, bool]] = {}
    batches = make_prefilter_dataset([str(f) for f in files], classifier.size, cfg.resize, batch_size)
    for images, rows in batches.as_numpy_iterator():
        probs = classifier.predict(images)
        kept = rule_keeps(p, probs)
        for row, prob, keep in zip(rows.tolist(), car_probability(probs, cfg.car_classes), kept, strict=True):
            result[row] = (float(prob), bool(keep))
    return result
