"""The prefilter's stored scores: chunks, the scores table, the decision files, and ``reapply``.

Files in ``<run>/prefilter/``:

- ``chunks/chunk-NNNNN.npz``: the unit of resume; ``chunk_size`` images each (paths, float16
  probabilities over the 1000 classes, the reason a file could not be decoded), written atomically.
  ``chunks/meta.json`` records the model and preprocessing the chunks were made with.
- ``scores.csv`` (file, status, reason, car probability, top-5 classes with probabilities and the
  top-10 class indices) and ``probs.npy`` (float16, one row of 1000 probabilities per scores row).
- ``kept.csv`` (``path``, ``car_prob``), ``rejected.csv`` (``path``, ``car_prob``, ``reason``) and
  ``rule.json`` (the rule, threshold, model and counts they were made with).

No TensorFlow or Keras here: the dashboard imports this module to re-apply the rule in milliseconds.
"""

from __future__ import annotations

import dataclasses
import json
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import config as config_mod
from ..config import PrefilterConfig
from ..eventlog import JsonlSink
from ..events import ConfigChanged, StagesStale, StageUpdated
from ..provenance import record, staleness
from ..runs import RunDir, atomic_path, open_run, write_json_atomic
from .rule import BROKEN, NUM_CLASSES, PROB_COLUMNS, SCORED, TOP_COLUMNS, apply_rule, car_probability, top_indices

CHUNK_DIR = "chunks"


def load_scores(run: RunDir) -> pd.DataFrame:
    """The stored scores table of a finished prefilter stage.

    Returns:
        One row per scored file: ``path`` (relative to data.dir), ``status`` (``scored`` or
        ``broken``), ``reason``, ``car_prob`` (NaN when broken), ``top5`` (text), ``k1``..``k10``
        (top class indices, -1 when broken) and, when ``probs.npy`` is there, ``p0``..``p999``.

    Raises:
        FileNotFoundError: the run has no ``prefilter/scores.csv`` (stage not run or not finished).
    """
    folder = run.prefilter_dir
    path = folder / "scores.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no prefilter scores; run the prefilter stage first")
    frame = pd.read_csv(
        path,
        dtype={"path": str, "status": str, "reason": str, "top5": str},
        keep_default_na=False,
        na_values={"car_prob": [""]},
    )
    probs_path = folder / "probs.npy"
    if probs_path.is_file():
        probs = np.load(probs_path, mmap_mode="r")
        if probs.shape != (len(frame), NUM_CLASSES):
            raise ValueError(f"{probs_path}: shape {probs.shape} does not match {len(frame)} score rows")
        frame = pd.concat([frame, pd.DataFrame(np.asarray(probs), columns=list(PROB_COLUMNS))], axis=1)
    return frame


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
    reasons = np.where(
        status == BROKEN,
        np.array([f"broken file: {r}" for r in scores["reason"].to_numpy()[rejected_mask]], dtype=object),
        np.array(below, dtype=object),
    )
    rejected = pd.DataFrame({"path": scores["path"].to_numpy()[rejected_mask], "car_prob": probs, "reason": reasons})
    return kept, rejected, car_prob


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
        return decide(run, load_scores(run), current, write=False)
    with run.lock():  # the runner's own writes and this one never interleave
        return _save_decision(run, current)


def _save_decision(run: RunDir, rule: dict[str, Any]) -> dict[str, Any]:
    """Write a new decision, make its rule the run's config from now on, and tell the event log:
    the prefilter row shows the new count, the stages made from the old list turn stale."""
    result = decide(run, load_scores(run), rule, write=True)
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
    kept, rejected, _ = _decide(scores, rule)
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


def write_scores(
    run: RunDir, chunks: list[Chunk], car_classes: Sequence[int], labels: list[str] | None
) -> pd.DataFrame:
    """Write ``scores.csv`` and ``probs.npy`` from all chunks, atomically; returns the scores table."""
    scores, probs = scores_table(chunks, car_classes, labels)
    with atomic_path(run.prefilter_dir / "probs.npy") as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, probs)
    with atomic_path(run.prefilter_dir / "scores.csv") as tmp:
        scores.to_csv(tmp, index=False)
    return scores
