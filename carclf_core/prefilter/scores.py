"""The prefilter's stored scores: chunks, the scores table, the decision files, and ``reapply``.

Files in ``<run>/prefilter/``:

- ``chunks/chunk-NNNNN.npz``: the unit of resume; ``chunk_size`` images each (paths, float16
  probabilities over the 1000 classes, the reason a file could not be decoded), written atomically.
  ``chunks/meta.json`` records the model and preprocessing the chunks were made with.
- ``scores.csv`` (file, status, reason, car probability, top-5 classes with probabilities and the
  top-10 class indices), ``car_probs.npz`` (the car classes' float16 probabilities and their indices)
  and, with ``prefilter.store_probs``, ``probs.npy`` (float16, one row of 1000 probabilities per scores
  row: 600 MB for 300,000 images, so it is only ever memory-mapped and read a slice at a time).
- ``kept.csv`` (``path``, ``car_prob``), ``rejected.csv`` (``path``, ``car_prob``, ``reason``) and
  ``rule.json`` (the rule, threshold, model and counts they were made with).

A new rule reads only what it needs: ``prob_sum`` the car-class probabilities, ``top_k`` up to 10 the
stored top-10 indices, a larger ``top_k`` ``probs.npy`` in slices.
No TensorFlow or Keras here: the dashboard imports this module to re-apply the rule in milliseconds.
"""

from __future__ import annotations

import dataclasses
import json
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import config as config_mod
from ..config import PrefilterConfig
from ..errors import ConfigError, RunError
from ..eventlog import JsonlSink
from ..events import ConfigChanged, StagesStale, StageUpdated
from ..provenance import record, staleness
from ..runs import RunDir, atomic_path, open_run, write_json_atomic
from .rule import (
    BROKEN,
    NUM_CLASSES,
    RULES,
    SCORED,
    TOP_COLUMNS,
    TOP_STORED,
    car_probability,
    stored_top_hits,
    top_indices,
    top_k_hits,
)

CHUNK_DIR = "chunks"


CAR_PROBS = "car_probs.npz"
"""Per image, the probabilities of the car classes the stage ran with (float16 ``probs`` ``[n, k]``
beside their ImageNet indices ``classes``): what ``prob_sum`` needs, 30 bytes an image."""
PROBS = "probs.npy"
"""Per image, all 1000 probabilities (float16 ``[n, 1000]``, 2 KB an image); with ``prefilter.store_probs``."""
ROWS_A_SLICE = 4_096
"""Rows of ``probs.npy`` read at a time (8 MB; 16 MB as float32): a 300,000-image file is never in memory whole."""


def load_scores(run: RunDir, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The stored scores table of a finished prefilter stage, without the per-class probabilities
    (:func:`load_probs` maps those).

    Args:
        run: the run.
        columns: read only these columns (faster on a large table); default all.

    Returns:
        One row per scored file: ``path`` (relative to data.dir), ``status`` (``scored`` or
        ``broken``), ``reason``, ``car_prob`` (rounded to 6 places; NaN when broken), ``top5`` (text),
        ``k1``..``k10`` (top class indices, -1 when broken).

    Raises:
        FileNotFoundError: the run has no ``prefilter/scores.csv`` (stage not run or not finished).
    """
    path = run.prefilter_dir / "scores.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no prefilter scores; run the prefilter stage first")
    return pd.read_csv(
        path,
        usecols=list(columns) if columns is not None else None,
        dtype={"path": str, "status": str, "reason": str, "top5": str},
        keep_default_na=False,
        na_values={"car_prob": [""]},
    )


def load_probs(run: RunDir, rows: int) -> np.ndarray | None:
    """``probs.npy`` memory-mapped (float16 ``[rows, 1000]``: read only what is indexed), or None when
    the run did not keep it (``prefilter.store_probs: false``).

    Raises:
        RunError: the file is not a ``[rows, 1000]`` array (damaged, or from another scores table).
    """
    path = run.prefilter_dir / PROBS
    if not path.is_file():
        return None
    try:
        probs = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: cannot be read ({exc})", "run the prefilter stage again") from exc
    if probs.shape != (rows, NUM_CLASSES):
        raise RunError(
            f"{path}: shape {probs.shape} does not match the {rows:,} rows of scores.csv",
            "run the prefilter stage again (its finished chunks are reused)",
        )
    return probs


def _load_car_probs(run: RunDir, rows: int) -> tuple[np.ndarray, list[int]] | None:
    """The stored car-class probabilities and their class indices, or None for a run made before them."""
    path = run.prefilter_dir / CAR_PROBS
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            probs, classes = data["probs"], data["classes"].tolist()
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise RunError(f"{path}: cannot be read ({exc})", "run the prefilter stage again") from exc
    if probs.shape != (rows, len(classes)):
        raise RunError(
            f"{path}: shape {probs.shape} does not match the {rows:,} rows of scores.csv",
            "run the prefilter stage again (its finished chunks are reused)",
        )
    return probs, classes


def _by_slices(probs: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``fn`` of ``probs`` :data:`ROWS_A_SLICE` rows at a time, concatenated: a memory-mapped file is
    read once, and only a slice of it is in memory."""
    parts = [fn(probs[i : i + ROWS_A_SLICE]) for i in range(0, len(probs), ROWS_A_SLICE)]
    return np.concatenate(parts) if parts else fn(probs[:0])


def car_probabilities(run: RunDir, scores: pd.DataFrame, car_classes: Sequence[int]) -> np.ndarray:
    """Each scores row's summed probability of ``car_classes`` (float64, not rounded; NaN when broken).

    Read from the least that holds it: ``car_probs.npz`` when it has those classes, else the
    car-class columns of ``probs.npy`` a slice at a time; a run with neither (made before them) has
    only the rounded ``car_prob`` column, which is used then.

    Raises:
        RunError: a stored file does not match the table. ConfigError: ``car_classes`` other than the
            stored ones and no ``probs.npy`` to sum them from.
    """
    classes = [int(c) for c in car_classes]
    rows = len(scores)
    stored = _load_car_probs(run, rows)
    if stored is not None and set(classes) <= set(stored[1]):
        columns = [stored[1].index(c) for c in classes]
        total = car_probability(stored[0][:, columns], range(len(classes)))
    elif (probs := load_probs(run, rows)) is not None:
        total = _by_slices(probs, lambda part: car_probability(part, classes))
    elif stored is None:
        return scores["car_prob"].to_numpy(dtype=np.float64)
    else:
        raise ConfigError(
            "prefilter.car_classes",
            f"{classes} are not all among the {len(stored[1])} car classes this run's scores were stored with, "
            "and the run kept no probs.npy",
            "run the prefilter stage again (prefilter.store_probs: true keeps every class)",
        )
    total[scores["status"].to_numpy() == BROKEN] = np.nan
    return total


def _top_k_cars(run: RunDir, scores: pd.DataFrame, car_classes: Sequence[int], top_k: int) -> np.ndarray:
    """Rows with a car class among their ``top_k`` best: the stored ``k1``.. columns up to 10, else
    ``probs.npy`` a slice at a time (broken rows are decided by the caller)."""
    if top_k <= TOP_STORED:
        return stored_top_hits(scores[list(TOP_COLUMNS[:top_k])].to_numpy(), car_classes)
    probs = load_probs(run, len(scores))
    if probs is None:
        raise ConfigError(
            "prefilter.top_k",
            f"{top_k} needs every class's probability, and this run kept only the top {TOP_STORED} "
            "(prefilter.store_probs: false)",
            f"use top_k <= {TOP_STORED}, or set prefilter.store_probs: true and run the prefilter stage again",
        )
    return _by_slices(probs, lambda part: top_k_hits(part, car_classes, top_k))


def config_rule(cfg: PrefilterConfig) -> dict[str, Any]:
    """The rule ``cfg`` asks for, in the form ``rule.json`` stores."""
    return {
        "rule": cfg.rule,
        "threshold": cfg.threshold,
        "top_k": cfg.top_k,
        "car_classes": list(cfg.car_classes),
        "model": cfg.model,
    }


def current_rule(run: RunDir) -> dict[str, Any]:
    """The rule the run uses now: the last written ``rule.json``, else the run's config."""
    rule = config_rule(run.load_config().prefilter)
    try:
        stored = json.loads((run.prefilter_dir / "rule.json").read_text(encoding="utf-8"))
        rule.update({k: stored[k] for k in rule if k in stored})
    except (OSError, ValueError, AttributeError):
        pass
    return rule


def kept_paths(run: RunDir) -> set[str] | None:
    """Paths the prefilter's current decision keeps, or None when the run has no decision yet."""
    if not run.kept_csv.is_file():
        return None
    return set(pd.read_csv(run.kept_csv, dtype={"path": str}, keep_default_na=False)["path"])


DECISION_COLUMNS = ("path", "status", "reason", "car_prob", *TOP_COLUMNS)
"""The scores columns a decision reads (not the ``top5`` text)."""


def _decide(run: RunDir, scores: pd.DataFrame, rule: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """kept and rejected tables (with reasons) for ``rule`` applied to ``scores``.

    Each row on its own, from the stored files: the car classes' probabilities for ``prob_sum`` and
    for the reasons, the top-10 columns or ``probs.npy`` slices for ``top_k``. Broken rows are never cars.
    """
    if rule["rule"] not in RULES:
        raise ValueError(f"prefilter.rule: expected one of {', '.join(RULES)}, got {rule['rule']!r}")
    car_prob = car_probabilities(run, scores, rule["car_classes"])
    if rule["rule"] == "prob_sum":
        is_car = car_prob > rule["threshold"]  # NaN (broken rows) compares False
    else:
        is_car = _top_k_cars(run, scores, rule["car_classes"], rule["top_k"])
    status = scores["status"].to_numpy()
    is_car = np.asarray(is_car, dtype=bool) & (status != BROKEN)
    car_prob = np.round(car_prob, 6)
    kept = pd.DataFrame({"path": scores["path"].to_numpy()[is_car], "car_prob": car_prob[is_car]})
    rejected_mask = ~is_car
    status = status[rejected_mask]
    probs = car_prob[rejected_mask]
    if rule["rule"] == "prob_sum":
        below = [f"car probability {p:.3f} <= threshold {rule['threshold']:g}" for p in probs]
    else:
        below = [f"no car class in the top {rule['top_k']} (car probability {p:.3f})" for p in probs]
    reasons = np.where(
        status == BROKEN,
        np.array([f"broken file: {r}" for r in scores["reason"].to_numpy()[rejected_mask]], dtype=object),
        np.array(below, dtype=object),
    )
    rejected = pd.DataFrame({"path": scores["path"].to_numpy()[rejected_mask], "car_prob": probs, "reason": reasons})
    return kept, rejected


def reapply(
    run: RunDir | Path | str,
    threshold: float | None = None,
    rule: str | None = None,
    top_k: int | None = None,
    write: bool = False,
) -> dict[str, Any]:
    """Apply a (changed) rule to the stored scores, without running the model.

    Args:
        run: a run (or its folder) whose prefilter stage has finished.
        threshold, rule, top_k: new values; ``None`` keeps the run's current one (its ``rule.json``,
            else its config).
        write: rewrite ``kept.csv``, ``rejected.csv`` and ``rule.json`` atomically.

    Returns:
        ``kept``, ``scored`` (images the model scored), ``broken``, ``total``, ``threshold``,
        ``rule``, ``top_k``, ``car_classes`` and ``model``.

    Raises:
        FileNotFoundError: no stored scores. ConfigError: a value out of range (naming its key).
        RunError: ``run`` is not a run folder.
    """
    if not isinstance(run, RunDir):
        run = open_run(run)
    current = current_rule(run)
    changes = {k: v for k, v in (("threshold", threshold), ("rule", rule), ("top_k", top_k)) if v is not None}
    # the config's own checks, so a bad value gets the same message as in config.yaml (ConfigError)
    checked = config_mod.from_dict({"prefilter": changes}).prefilter
    current.update({key: getattr(checked, key) for key in changes})
    if not write:
        return decide(run, load_scores(run, DECISION_COLUMNS), current, write=False)
    with run.lock():  # the runner's own writes and this one never interleave
        return _save_decision(run, current)


def _save_decision(run: RunDir, rule: dict[str, Any]) -> dict[str, Any]:
    """Write a new decision, make its rule the run's config from now on, and tell the event log:
    the prefilter row shows the new count, the stages made from the old list turn stale."""
    result = decide(run, load_scores(run, DECISION_COLUMNS), rule, write=True)
    config = run.load_config()
    new_config = dataclasses.replace(
        config,
        prefilter=dataclasses.replace(
            config.prefilter, rule=rule["rule"], threshold=rule["threshold"], top_k=rule["top_k"]
        ),
    )
    source = "prefilter decision saved"
    changes = run.update_config(new_config, source=source)
    summary = f"{result['kept']:,} / {result['scored']:,} kept ({result['kept'] / max(result['scored'], 1):.0%})"
    if result["broken"]:
        summary += f", {result['broken']:,} broken"
    note = f"{summary}, {rule['rule']} {rule['threshold'] if rule['rule'] == 'prob_sum' else rule['top_k']}"
    run.update_stage_state("prefilter", summary=summary)
    record(run, "prefilter", new_config, note)
    sink = JsonlSink(run.events_path)
    try:
        if changes:
            sink(ConfigChanged(changes=changes, source=source))
        sink(StageUpdated(stage="prefilter", summary=summary, result={"kept": result["kept"]}))
        sink(StagesStale(stale=staleness(run, new_config)))
    finally:
        sink.close()
    return result


def decide(run: RunDir, scores: pd.DataFrame, rule: dict[str, Any], write: bool = True) -> dict[str, Any]:
    """Apply ``rule`` to ``scores``; with ``write``, store ``kept.csv``, ``rejected.csv`` and
    ``rule.json`` atomically. Returns the rule with the counts (see :func:`reapply`)."""
    kept, rejected = _decide(run, scores, rule)
    broken = int((scores["status"] == BROKEN).sum())
    result = {**rule, "kept": len(kept), "scored": len(scores) - broken, "broken": broken, "total": len(scores)}
    if write:
        folder = run.prefilter_dir
        with atomic_path(folder / "kept.csv") as tmp:
            kept.to_csv(tmp, index=False)
        with atomic_path(folder / "rejected.csv") as tmp:
            rejected.to_csv(tmp, index=False)
        write_json_atomic(folder / "rule.json", {**result, "updated": time.time()})
    return result


# --- score chunks: the unit of resume ----------


@dataclasses.dataclass
class Chunk:
    paths: np.ndarray
    probs: np.ndarray
    """float16 [n, 1000]; zeros for broken files."""
    reasons: np.ndarray
    """'' for scored files, else why the file could not be decoded."""


def open_chunks(run: RunDir, signature: dict[str, Any]) -> tuple[Path, dict[str, Any] | None]:
    """The chunk folder for chunks made with ``signature`` (model and preprocessing).

    Chunks made with another signature cannot be reused: they are deleted, and the old signature is
    returned so the caller can say why everything is scored again.
    """
    folder = run.prefilter_dir / CHUNK_DIR
    folder.mkdir(parents=True, exist_ok=True)
    meta_path = folder / "meta.json"
    try:
        stored = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        stored = None
    replaced = stored if stored is not None and stored != signature else None
    if replaced is not None:
        for old in folder.glob("chunk-*.npz"):
            old.unlink()
    write_json_atomic(meta_path, signature)
    return folder, replaced


def chunk_path(folder: Path, number: int) -> Path:
    return folder / f"chunk-{number:05d}.npz"


def read_chunk(path: Path) -> Chunk | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            return Chunk(data["paths"], data["probs"], data["reasons"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def write_chunk(path: Path, chunk: Chunk) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:  # a handle, so numpy does not append another .npz
            np.savez(handle, paths=chunk.paths, probs=chunk.probs, reasons=chunk.reasons)


def top5_text(probs: np.ndarray, top: np.ndarray, labels: list[str] | None) -> list[str]:
    texts = []
    for row, idx in zip(probs, top, strict=True):
        texts.append(", ".join(f"{labels[i] if labels else i} ({i}) {float(row[i]):.3f}" for i in idx[:5]))
    return texts


def scores_table(
    chunks: list[Chunk], car_classes: Sequence[int], labels: list[str] | None, with_text: bool = True
) -> tuple[pd.DataFrame, np.ndarray]:
    paths = np.concatenate([c.paths for c in chunks]) if chunks else np.array([], dtype=str)
    probs = np.concatenate([c.probs for c in chunks]) if chunks else np.zeros((0, NUM_CLASSES), dtype=np.float16)
    reasons = np.concatenate([c.reasons for c in chunks]) if chunks else np.array([], dtype=str)
    broken = reasons != ""
    car_prob = np.round(car_probability(probs, car_classes), 6)
    car_prob[broken] = np.nan
    top = top_indices(probs)
    top[broken] = -1
    top5 = np.array(top5_text(probs, top, labels) if with_text else [""] * len(paths), dtype=object)
    top5[broken] = ""
    frame = pd.DataFrame(
        {
            "path": paths.astype(str),
            "status": np.where(broken, BROKEN, SCORED),
            "reason": reasons.astype(str),
            "car_prob": car_prob,
            "top5": top5,
        }
    )
    for i, column in enumerate(TOP_COLUMNS):
        frame[column] = top[:, i]
    return frame, probs


def _tables(
    chunks: Sequence[Chunk], classes: list[int], labels: list[str] | None, car: np.ndarray, every: np.ndarray | None
) -> list[pd.DataFrame]:
    """Each chunk's scores table, filling ``car`` (the car-class columns) and ``every`` (all 1000, when
    given) with the chunks' probabilities, row after row."""
    frames, start = [], 0
    for chunk in chunks:
        frame, probs = scores_table([chunk], classes, labels)
        frames.append(frame)
        car[start : start + len(probs)] = probs[:, classes]
        if every is not None:
            every[start : start + len(probs)] = probs
        start += len(probs)
    return frames


def write_scores(
    run: RunDir, chunks: Sequence[Chunk], car_classes: Sequence[int], labels: list[str] | None, store_probs: bool = True
) -> pd.DataFrame:
    """Write ``scores.csv``, ``car_probs.npz`` and (``store_probs``) ``probs.npy`` from all chunks,
    each atomically; returns the scores table.

    ``probs.npy`` is filled a chunk at a time through a memory map, so writing it holds no second copy
    of the probabilities. Without ``store_probs`` an older ``probs.npy`` is removed: it would describe
    other scores.
    """
    classes = [int(c) for c in car_classes]
    rows = sum(len(c.paths) for c in chunks)
    folder = run.prefilter_dir
    car = np.zeros((rows, len(classes)), dtype=np.float16)
    if store_probs and not rows:
        frames = []
        with atomic_path(folder / PROBS) as tmp, open(tmp, "wb") as handle:
            np.save(handle, np.zeros((0, NUM_CLASSES), dtype=np.float16))  # a memory map cannot be empty
    elif store_probs:
        with atomic_path(folder / PROBS) as tmp:
            every = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(rows, NUM_CLASSES))
            frames = _tables(chunks, classes, labels, car, every)
            every.flush()
            del every  # unmapped before the rename
    else:
        frames = _tables(chunks, classes, labels, car, None)
        (folder / PROBS).unlink(missing_ok=True)
    with atomic_path(folder / CAR_PROBS) as tmp:
        with open(tmp, "wb") as handle:  # a handle, so numpy does not append another .npz
            np.savez(handle, probs=car, classes=np.array(classes, dtype=np.int16))
    scores = pd.concat(frames, ignore_index=True) if frames else scores_table([], classes, labels)[0]
    with atomic_path(folder / "scores.csv") as tmp:
        scores.to_csv(tmp, index=False)
    return scores
