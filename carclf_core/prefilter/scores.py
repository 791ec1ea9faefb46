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
import hashlib
import json
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from .. import config as config_mod
from ..config import PrefilterConfig
from ..errors import ConfigError, RunError
from ..events import ConfigChanged, Event, StagesStale, StageUpdated, to_json
from ..provenance import provenance_fields, staleness
from ..runs import (
    CONFIG_HISTORY_FILE,
    Change,
    RunDir,
    atomic_path,
    config_history_line,
    open_run,
    unfinished_changes,
    write_json_atomic,
)
from . import learned
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


RULE_INPUTS = "rule_inputs.npz"
"""What a rule reads, per image in ``scores.csv``'s order: ``car_probs`` (float16 ``[n, k]``, the car
classes the stage ran with), ``car_classes`` (their ImageNet indices), ``top`` (int16 ``[n, 10]``, the
best class indices, -1 when broken), ``broken`` (bool ``[n]``) and ``paths_sha`` (SHA-256 of the
paths, so they are never paired with another table): about 50 bytes an image, read in milliseconds."""
PROBS = "probs.npy"
"""Per image, all 1000 probabilities (float16 ``[n, 1000]``, 2 KB an image); with ``prefilter.store_probs``."""
ROWS_A_SLICE = 4_096
"""Rows of ``probs.npy`` read at a time (8 MB; 16 MB as float32): a 300,000-image file is never in memory whole."""
SCORES_CSV = "scores.csv"
UNUSED = -1
"""A top-k index that names no class: the file is broken, or fewer classes than k have a probability."""
RULE_FILE = "rule.json"


def load_scores(run: RunDir, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The stored scores table of a finished prefilter stage, without the per-class probabilities
    (:func:`probs_by_slices` reads those).

    Args:
        run: the run.
        columns: read only these columns (faster on a large table); default all.

    Returns:
        One row per scored file: ``path`` (relative to data.dir), ``status`` (``scored`` or
        ``broken``), ``reason``, ``car_prob`` (rounded to 6 places; NaN when broken), ``top5`` (text),
        ``k1``..``k10`` (top class indices; -1 where unused: a broken file, or fewer classes than
        ten above probability 0. ``scores.csv`` leaves those cells empty).

    Raises:
        FileNotFoundError: the run has no ``prefilter/scores.csv`` (stage not run or not finished).
    """
    path = run.prefilter_dir / SCORES_CSV
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no prefilter scores; run the prefilter stage first")
    frame = pd.read_csv(
        path,
        usecols=list(columns) if columns is not None else None,
        dtype={"path": str, "status": str, "reason": str, "top5": str},
        keep_default_na=False,
        na_values={"car_prob": [""], **{column: [""] for column in TOP_COLUMNS}},
    )
    for column in TOP_COLUMNS:  # empty cells (unused) read back as UNUSED, the rules' integer form
        if column in frame.columns:
            frame[column] = frame[column].fillna(UNUSED).astype(np.int64)
    return frame


def _paths_sha(paths: Iterable[Any]) -> str:
    return hashlib.sha256("\n".join(map(str, paths)).encode("utf-8", "surrogateescape")).hexdigest()


def _damaged(path: Path, problem: str) -> RunError:
    return RunError(f"{path}: {problem}", "run the prefilter stage again (its finished chunks are reused)")


@dataclasses.dataclass(frozen=True)
class RuleInputs:
    """Per image, what the rules read (see :data:`RULE_INPUTS`)."""

    broken: np.ndarray
    top: np.ndarray
    """int ``[n, 10]``: the best class indices."""
    car_classes: list[int]
    car_probs: np.ndarray | None
    """float16 ``[n, len(car_classes)]``; None for a run stored before ``rule_inputs.npz``."""
    car_prob: np.ndarray | None = None
    """Such a run's rounded ``car_prob`` column, the only car probability it has."""
    paths_sha: str = ""

    @property
    def rows(self) -> int:
        return len(self.broken)


def load_rule_inputs(run: RunDir) -> RuleInputs:
    """The rule inputs of a finished prefilter stage: ``rule_inputs.npz``, or for a run stored before
    it, the ``status``, ``car_prob`` and ``k1``.. columns of ``scores.csv``.

    Raises:
        FileNotFoundError: no stored scores. RunError: a damaged or inconsistent ``rule_inputs.npz``.
    """
    path = run.prefilter_dir / RULE_INPUTS
    if not path.is_file():
        frame = load_scores(run, ("status", "car_prob", *TOP_COLUMNS))
        broken = frame["status"].to_numpy() == BROKEN
        car_prob = frame["car_prob"].to_numpy(dtype=np.float64)
        return RuleInputs(broken, frame[list(TOP_COLUMNS)].to_numpy(), [], None, car_prob)
    try:
        with np.load(path, allow_pickle=False) as data:
            broken, top, classes, car_probs = (
                data["broken"],
                data["top"],
                data["car_classes"].tolist(),
                data["car_probs"],
            )
            paths_sha = str(data["paths_sha"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise _damaged(path, f"cannot be read ({exc})") from exc
    rows = len(broken)
    if top.shape != (rows, TOP_STORED) or car_probs.shape != (rows, len(classes)):
        raise _damaged(path, f"arrays of different lengths ({top.shape}, {car_probs.shape}, {rows})")
    return RuleInputs(broken, top, classes, car_probs, paths_sha=paths_sha)


def probs_by_slices(run: RunDir, rows: int, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray | None:
    """``fn`` of ``probs.npy`` :data:`ROWS_A_SLICE` rows at a time, concatenated; None when the run did
    not keep the file (``prefilter.store_probs: false``).

    Each slice is read into memory and let go: the 600 MB of a 300,000-image file never are at once
    (a memory map would leave every page it touched resident in this process).

    Raises:
        RunError: the file is not a float16 ``[rows, 1000]`` array (damaged, or from other scores).
    """
    path = run.prefilter_dir / PROBS
    if not path.is_file():
        return None
    with open(path, "rb") as handle:
        try:
            version = np.lib.format.read_magic(handle)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(handle)
        except (OSError, ValueError) as exc:
            raise _damaged(path, f"cannot be read ({exc})") from exc
        if shape != (rows, NUM_CLASSES) or fortran or dtype != np.float16:
            raise _damaged(path, f"shape {shape} ({dtype}) does not match the {rows:,} scored images")
        parts = []
        for start in range(0, rows, ROWS_A_SLICE):
            count = min(ROWS_A_SLICE, rows - start)
            part = np.fromfile(handle, dtype=np.float16, count=count * NUM_CLASSES)
            if part.size != count * NUM_CLASSES:
                raise _damaged(path, f"ends after {start + part.size // NUM_CLASSES:,} of {rows:,} rows")
            parts.append(fn(part.reshape(count, NUM_CLASSES)))
    return np.concatenate(parts) if parts else fn(np.zeros((0, NUM_CLASSES), dtype=np.float16))


def car_probabilities(run: RunDir, inputs: RuleInputs, car_classes: Sequence[int]) -> np.ndarray:
    """Each image's summed probability of ``car_classes`` (float64, not rounded; NaN when broken).

    From the stored car-class probabilities when they hold those classes, else from ``probs.npy`` a
    slice at a time; a run stored before ``rule_inputs.npz`` has only its rounded ``car_prob`` column.

    Raises:
        ConfigError: ``car_classes`` other than the stored ones and no ``probs.npy`` to sum them from.
        RunError: a damaged ``probs.npy``.
    """
    classes = [int(c) for c in car_classes]
    if inputs.car_probs is not None and set(classes) <= set(inputs.car_classes):
        total = car_probability(inputs.car_probs, [inputs.car_classes.index(c) for c in classes])
    elif (summed := probs_by_slices(run, inputs.rows, lambda part: car_probability(part, classes))) is not None:
        total = summed
    elif inputs.car_prob is not None:
        return inputs.car_prob
    else:
        raise ConfigError(
            "prefilter.car_classes",
            f"{classes} are not all among the car classes {inputs.car_classes} this run's scores were stored "
            "with, and the run kept no probs.npy",
            "run the prefilter stage again (prefilter.store_probs: true keeps every class)",
        )
    total[inputs.broken] = np.nan
    return total


def is_car(run: RunDir, inputs: RuleInputs, rule: dict[str, Any], car_prob: np.ndarray) -> np.ndarray:
    """Which images ``rule`` calls a car, each on its own; broken ones never.

    ``prob_sum`` compares ``car_prob`` (from :func:`car_probabilities`); ``top_k`` reads the stored
    top-10 indices up to k = 10, beyond that ``probs.npy`` a slice at a time.

    Raises:
        ValueError: an unknown rule. ConfigError: ``top_k`` above 10 and no ``probs.npy``.
    """
    if rule["rule"] not in RULES:
        raise ValueError(f"prefilter.rule: expected one of {', '.join(RULES)}, got {rule['rule']!r}")
    classes, top_k = [int(c) for c in rule["car_classes"]], int(rule["top_k"])
    if rule["rule"] == "prob_sum":
        hits = car_prob > rule["threshold"]  # NaN (broken rows) compares False
    elif top_k <= TOP_STORED:
        hits = stored_top_hits(inputs.top[:, :top_k], classes)
    else:
        found = probs_by_slices(run, inputs.rows, lambda part: top_k_hits(part, classes, top_k))
        if found is None:
            raise ConfigError(
                "prefilter.top_k",
                f"{top_k} needs every class's probability, and this run kept only the top {TOP_STORED} "
                "(prefilter.store_probs: false)",
                f"use top_k <= {TOP_STORED}, or set prefilter.store_probs: true and run the prefilter stage again",
            )
        hits = found
    return np.asarray(hits, dtype=bool) & ~inputs.broken


def config_rule(cfg: PrefilterConfig) -> dict[str, Any]:
    """The rule ``cfg`` asks for, in the form ``rule.json`` stores."""
    return {
        "rule": cfg.rule,
        "threshold": cfg.threshold,
        "top_k": cfg.top_k,
        "car_classes": list(cfg.car_classes),
        "model": cfg.model,
        "labels": cfg.labels,
    }


def current_rule(run: RunDir) -> dict[str, Any]:
    """The rule the run uses now: the last written ``rule.json``, else the run's config."""
    rule = config_rule(run.load_config().prefilter)
    try:
        stored = json.loads((run.prefilter_dir / RULE_FILE).read_text(encoding="utf-8"))
        rule.update({k: stored[k] for k in rule if k in stored})
    except (OSError, ValueError, AttributeError):
        pass
    return rule


def kept_paths(run: RunDir) -> set[str] | None:
    """Paths the prefilter's current decision keeps, or None when the run has no decision yet.

    Raises:
        RunError: a change of the run was cut short (:func:`carclf_core.runs.unfinished_changes`):
            ``kept.csv`` may belong to another decision than ``rule.json`` and the config.
    """
    cut_short = unfinished_changes(run.path)
    if cut_short:
        raise RunError(
            f"{run.path}: {cut_short[0]} was cut short: kept.csv may not match rule.json and the config",
            f"carclf-tui --resume {run.path} finishes it",
        )
    if not run.kept_csv.is_file():
        return None
    return set(pd.read_csv(run.kept_csv, dtype={"path": str}, keep_default_na=False)["path"])


def _counts(rule: dict[str, Any], inputs: RuleInputs, hits: np.ndarray) -> dict[str, Any]:
    broken = int(inputs.broken.sum())
    return {**rule, "kept": int(hits.sum()), "scored": inputs.rows - broken, "broken": broken, "total": inputs.rows}


def _tables(
    scores: pd.DataFrame, rule: dict[str, Any], hits: np.ndarray, car_prob: np.ndarray, odds: np.ndarray | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """kept and rejected tables (rejected with its reasons) of a decision on ``scores`` (``odds``: the
    learned rule's log-odds of a car, per row)."""
    status = scores["status"].to_numpy()
    car_prob = np.round(car_prob, 6)
    kept = pd.DataFrame({"path": scores["path"].to_numpy()[hits], "car_prob": car_prob[hits]})
    rejected_mask = ~hits
    status = status[rejected_mask]
    probs = car_prob[rejected_mask]
    if odds is not None:
        below = [f"learned rule: not a whole car (p {learned.probability(o):.3f})" for o in odds[rejected_mask]]
    elif rule["rule"] == "prob_sum":
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
    labels: str | None = None,
) -> dict[str, Any]:
    """Apply a (changed) rule to the stored scores, without running the model.

    Args:
        run: a run (or its folder) whose prefilter stage has finished.
        threshold, rule, top_k: new values; ``None`` keeps the run's current one (its ``rule.json``,
            else its config).
        labels: for the learned rule, the labels file (``run``: the run's own); ``None`` keeps the current.
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
    if rule is None and current["rule"] == learned.LEARNED and (threshold is not None or top_k is not None):
        rule = "prob_sum" if threshold is not None else "top_k"  # a threshold asked of a learned rule: back to it
    asked = (("threshold", threshold), ("rule", rule), ("top_k", top_k), ("labels", labels))
    changes = {k: v for k, v in asked if v is not None}
    # the config's own checks, so a bad value gets the same message as in config.yaml (ConfigError)
    checked = config_mod.from_dict({"prefilter": changes}).prefilter
    current.update({key: getattr(checked, key) for key in changes})
    if not write and current["rule"] == learned.LEARNED:  # the labels are matched to the table's paths
        return decide(run, load_scores(run, ("path", "status", "reason")), current, write=False)
    if not write:  # counts only: the rule inputs, never the scores table
        inputs = load_rule_inputs(run)
        return _counts(
            current, inputs, is_car(run, inputs, current, car_probabilities(run, inputs, current["car_classes"]))
        )
    with run.lock():  # the runner's own writes and this one never interleave
        return _save_decision(run, current)


def _save_decision(run: RunDir, rule: dict[str, Any]) -> dict[str, Any]:
    """Write a new decision, make its rule the run's config from now on, and tell the event log:
    the prefilter row shows the new count, the stages made from the old list turn stale.

    ``kept.csv``, ``rejected.csv``, ``rule.json``, ``config.yaml``, ``state.json`` and the lines of the
    config history and the event log are one :class:`~carclf_core.runs.Change`: a save cut short
    anywhere leaves the old decision whole, or one that the next runner on the run finishes.
    """
    what = {"prob_sum": rule["threshold"], "top_k": rule["top_k"]}.get(rule["rule"], "from labels")
    with Change(run.path, f"prefilter decision saved ({rule['rule']} {what})") as change:
        return _stage_decision(run, rule, what, change)


def _stage_decision(run: RunDir, rule: dict[str, Any], what: Any, change: Change) -> dict[str, Any]:
    """Stage every file and line of the saved decision into ``change``, then commit it."""
    result = decide(run, load_scores(run, ("path", "status", "reason")), rule, change=change)
    config = run.load_config()
    new_config = dataclasses.replace(
        config,
        prefilter=dataclasses.replace(
            config.prefilter,
            rule=rule["rule"],
            threshold=rule["threshold"],
            top_k=rule["top_k"],
            labels=rule.get("labels", config.prefilter.labels),
        ),
    )
    source = "prefilter decision saved"
    changes = run.config_changes(new_config)
    if changes:
        change.write_text(run.config_path, config_mod.dump(new_config))
        change.append(run.path / CONFIG_HISTORY_FILE, config_history_line(changes, source))
    summary = f"{result['kept']:,} / {result['scored']:,} kept ({result['kept'] / max(result['scored'], 1):.0%})"
    if result["broken"]:
        summary += f", {result['broken']:,} broken"
    if rule["rule"] == learned.LEARNED:
        note = f"{summary}, learned from {result['learned']['labelled']} labels"
    else:
        note = f"{summary}, {rule['rule']} {what}"
    state = run.read_state()
    stages = state.setdefault("stages", {})
    entry = stages.setdefault("prefilter", {})
    entry["summary"] = summary
    entry.update(provenance_fields(run, "prefilter", new_config, note, stages, locate=change.current))
    change.write_json(run.state_path, state)
    events: list[Event] = [ConfigChanged(changes=changes, source=source)] if changes else []
    events.append(StageUpdated(stage="prefilter", summary=summary, result={"kept": result["kept"]}))
    events.append(StagesStale(stale=staleness(run, new_config, stages)))
    change.append(run.events_path, "".join(to_json(event) + "\n" for event in events))
    change.commit()
    return result


def decide(
    run: RunDir, scores: pd.DataFrame, rule: dict[str, Any], write: bool = True, change: Change | None = None
) -> dict[str, Any]:
    """Apply ``rule`` to the run's stored scores (``scores``: their table, for the paths and reasons);
    with ``write``, store ``kept.csv``, ``rejected.csv`` and ``rule.json`` as one change. Returns the
    rule with the counts (see :func:`reapply`).

    Args:
        run, scores, rule, write: as above.
        change: write the three files into this change (the caller adds its own files and commits
            it); default a change of their own, committed here.

    Raises:
        RunError: the stored rule inputs belong to another scores table.
    """
    inputs = load_rule_inputs(run)
    if inputs.rows != len(scores) or (inputs.paths_sha and inputs.paths_sha != _paths_sha(scores["path"])):
        raise _damaged(run.prefilter_dir / RULE_INPUTS, f"made for other scores than {SCORES_CSV}")
    car_prob = car_probabilities(run, inputs, rule["car_classes"])
    odds = None
    if rule["rule"] == learned.LEARNED:
        teacher = Teacher.open(run, rule["labels"], inputs=inputs, paths=scores["path"].to_numpy())
        rule = {**rule, "learned": teacher.learn()}
        odds = np.asarray(teacher.odds)
        hits = (odds > 0) & ~inputs.broken
    else:
        hits = is_car(run, inputs, rule, car_prob)
    result = _counts(rule, inputs, hits)
    if write:
        kept, rejected = _tables(scores, rule, hits, car_prob, odds)
        folder = run.prefilter_dir
        if change is not None:
            _stage_tables(change, folder, kept, rejected, result)
        else:
            with Change(run.path, "prefilter decision") as own:
                _stage_tables(own, folder, kept, rejected, result)
                own.commit()
    return result


def _stage_tables(
    change: Change, folder: Path, kept: pd.DataFrame, rejected: pd.DataFrame, result: dict[str, Any]
) -> None:
    """Stage the files that together are the prefilter's decision, whatever the rule: ``kept.csv``,
    ``rejected.csv`` and ``rule.json``. Every rule's decision is written here and only here."""
    with change.path(folder / "kept.csv") as tmp:
        kept.to_csv(tmp, index=False)
    with change.path(folder / "rejected.csv") as tmp:
        rejected.to_csv(tmp, index=False)
    change.write_json(folder / RULE_FILE, {**result, "updated": time.time()})


# --- the learned rule: labels matched to the stored scores ----------


def labels_file(run: RunDir, labels: str) -> Path:
    """The labels file ``prefilter.labels`` names: ``run`` is the run's own ``prefilter/labels.csv``."""
    return run.prefilter_dir / learned.LABELS_CSV if labels == "run" else Path(labels)


def photo_shas(run: RunDir, paths: Sequence[str] | np.ndarray) -> list[str]:
    """The index's content hash of each of ``paths`` (copies of a photo share it); '' where the index
    has none (an index from before hashing, or a path it does not list)."""
    try:
        index = pd.read_csv(run.index_csv, usecols=["path", "sha"], dtype=str, keep_default_na=False)
    except (OSError, ValueError):
        return [""] * len(paths)
    by_path = dict(zip(index["path"], index["sha"], strict=True))
    return [by_path.get(str(p), "") for p in paths]


@dataclasses.dataclass
class Teacher:
    """A run's labels matched to its stored scores: what the learned rule fits, decides and proposes.

    Built once (the scores' paths, the index's hashes, the rule inputs), then cheap to label and refit
    on: a refit reads ``probs.npy`` once, a slice at a time, for every photo's log-odds.
    """

    run: RunDir
    labels_path: Path
    labels: pd.DataFrame
    inputs: RuleInputs
    paths: np.ndarray
    shas: list[str]
    car_prob: np.ndarray
    """Each photo's summed car probability (NaN when broken): the threshold rule's view."""
    features: str
    y: np.ndarray
    """Per row: 1 car, 0 not, NaN unlabelled."""
    model: learned.Model | None = None
    odds: np.ndarray | None = None
    """Per row, the fitted model's log-odds of a car (None before a fit)."""

    @classmethod
    def open(
        cls, run: RunDir, labels: str = "run", inputs: RuleInputs | None = None, paths: np.ndarray | None = None
    ) -> Teacher:
        """The teacher of ``run`` with the labels ``labels`` names (see :func:`labels_file`).

        Raises:
            FileNotFoundError: no stored scores. ConfigError: an unreadable labels file, or a run that
            stored its scores before ``rule_inputs.npz`` (nothing to learn from).
        """
        inputs = inputs if inputs is not None else load_rule_inputs(run)
        paths = paths if paths is not None else load_scores(run, ("path",))["path"].to_numpy()
        if (run.prefilter_dir / PROBS).is_file():
            features = "probs"
        elif inputs.car_probs is not None:
            features = "car_probs"
        else:
            raise ConfigError(
                "prefilter.rule",
                "learned needs the stored probabilities (probs.npy or rule_inputs.npz), and this run has neither",
                "run the prefilter stage again (its finished chunks are reused)",
            )
        path = labels_file(run, labels)
        table = learned.read_labels(path)
        shas = photo_shas(run, paths)
        car_prob = (
            car_probabilities(run, inputs, inputs.car_classes)
            if inputs.car_probs is not None
            else (np.asarray(inputs.car_prob, dtype=np.float64))
        )
        return cls(
            run,
            path,
            table,
            inputs,
            paths,
            shas,
            car_prob,
            features,
            learned.targets(table, [str(p) for p in paths], shas),
        )

    @property
    def usable(self) -> np.ndarray:
        return ~self.inputs.broken

    def counts(self) -> dict[str, int]:
        """Labelled photos (a photo's copies counted once) of each kind: ``car`` and ``not``."""
        rows = learned.first_per_photo(np.flatnonzero(~np.isnan(self.y)), self.shas)
        return {"car": int((self.y[rows] == 1).sum()), "not": int((self.y[rows] == 0).sum())}

    def label(self, row: int, label: str | None) -> None:
        """Label the photo of ``row`` (all its copies) and write the labels file atomically."""
        self.labels = learned.with_label(self.labels, str(self.paths[row]), self.shas[row], label)
        learned.write_labels(self.labels_path, self.labels)
        self.y = learned.targets(self.labels, [str(p) for p in self.paths], self.shas)

    def _feature_rows(self, rows: np.ndarray) -> np.ndarray:
        if self.features == "car_probs":
            return learned.transform(self.inputs.car_probs[rows])  # type: ignore[index]
        # a few labelled rows, read through a memory map: only their pages are touched (a pass over a
        # 300,000-row probs.npy would cost seconds a label)
        probs = np.load(self.run.prefilter_dir / PROBS, mmap_mode="r", allow_pickle=False)
        if probs.shape != (self.inputs.rows, NUM_CLASSES) or probs.dtype != np.float16:
            raise _damaged(self.run.prefilter_dir / PROBS, f"shape {probs.shape} ({probs.dtype}) does not match")
        return learned.transform(np.asarray(probs[rows]))

    def _all_odds(self, model: learned.Model) -> np.ndarray:
        if self.features == "car_probs":
            return model.decision(learned.transform(self.inputs.car_probs))  # type: ignore[arg-type]
        odds = probs_by_slices(self.run, self.inputs.rows, lambda part: model.decision(learned.transform(part)))
        assert odds is not None
        return odds

    def labelled(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The labelled usable rows (ascending; one a photo: copies would weigh a photo twice and count it
        twice in the estimate), their features and labels."""
        rows = learned.first_per_photo(np.flatnonzero(~np.isnan(self.y) & self.usable), self.shas)
        return rows, self._feature_rows(rows), self.y[rows].astype(np.int64)

    def learn(self) -> dict[str, Any]:
        """Fit the model on the labels, decide every photo (:attr:`odds`), and return what ``rule.json``
        records of it: the labels file and its hash, the label counts, the features, the coefficients
        and the cross-validated estimate.

        Raises:
            ConfigError: (``prefilter.labels``) the labels do not hold both a car and a non-car.
        """
        rows, x, y = self.labelled()
        if not learned.can_fit(y.astype(np.float64)):
            counts = self.counts()
            raise learned.labels_error(
                self.labels_path,
                f"{len(self.labels)} labels match {counts['car']} car and {counts['not']} non-car photos of this "
                "run; the learned rule needs at least one of each",
            )
        self.model = learned.fit(x, y, self.features)
        self.odds = self._all_odds(self.model)
        self.odds[self.inputs.broken] = -np.inf
        return {
            **self.model.to_dict(),
            "labels_file": str(self.labels_path),
            "labels_sha256": learned.file_sha256(self.labels_path),
            "labelled": len(rows),
            "labelled_car": int((y == 1).sum()),
            "labelled_not": int((y == 0).sum()),
            "estimate": learned.estimate(x, y, self.features),
        }

    def estimate(self) -> dict[str, Any] | None:
        """The cross-validated precision and recall on the labels now (None until two of each kind)."""
        _, x, y = self.labelled()
        return learned.estimate(x, y, self.features)

    def uncertainty(self, threshold: float) -> np.ndarray:
        """How sure the current rule is of each photo: the model's |log-odds| once it is fitted on both
        kinds, else the threshold rule's distance (see :func:`learned.cold_start_uncertainty`)."""
        if self.odds is not None and learned.can_fit(self.y):
            return np.abs(self.odds)
        return learned.cold_start_uncertainty(self.car_prob, threshold, self.y)

    def queue(self, threshold: float, n: int) -> np.ndarray:
        """The next ``n`` photos to label (rows), least certain first, one per photo."""
        return learned.queue(self.uncertainty(threshold), self.y, self.usable, self.shas, n)

    def boundary(self, n: int) -> np.ndarray:
        """The ``n`` photos (rows, one per photo) the fitted model is least sure of, labelled or not;
        empty before a fit."""
        if self.odds is None:
            return np.zeros(0, dtype=np.int64)
        usable = np.flatnonzero(self.usable)
        order = usable[np.argsort(np.abs(self.odds[usable]), kind="stable")]
        return learned.first_per_photo(order, self.shas)[:n]


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
        texts.append(
            ", ".join(f"{labels[i] if labels else i} ({i}) {float(row[i]):.3f}" for i in idx[:5] if i != UNUSED)
        )
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
    # a class at probability 0 is not ranked: a quantised model gives most classes exactly 0, and the
    # ties would fill the top-k with classes 0, 1, 2, ... (tench, goldfish, ...) at 0.000
    top[np.take_along_axis(probs, top.astype(np.int64), axis=1) == 0] = UNUSED
    top[broken] = UNUSED
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


def _fill(
    chunks: Sequence[Chunk], labels: list[str] | None, inputs: RuleInputs, car: np.ndarray, every: BinaryIO | None
) -> list[pd.DataFrame]:
    """Each chunk's scores table, filling ``inputs`` (its top indices and broken flags) and ``car`` (the
    probabilities of its car classes) row after row, and appending all 1000 probabilities to
    ``every`` when given."""
    frames, start = [], 0
    for chunk in chunks:
        frame, probs = scores_table([chunk], inputs.car_classes, labels)
        frames.append(frame)
        end = start + len(probs)
        car[start:end] = probs[:, inputs.car_classes]
        inputs.top[start:end] = frame[list(TOP_COLUMNS)].to_numpy()
        inputs.broken[start:end] = frame["status"].to_numpy() == BROKEN
        if every is not None:
            every.write(np.ascontiguousarray(probs, dtype="<f2").tobytes())
        start = end
    return frames


def write_scores(
    run: RunDir, chunks: Sequence[Chunk], car_classes: Sequence[int], labels: list[str] | None, store_probs: bool = True
) -> pd.DataFrame:
    """Write ``scores.csv``, ``rule_inputs.npz`` and (``store_probs``) ``probs.npy`` from all chunks,
    each atomically; returns the scores table.

    ``probs.npy`` is written a chunk at a time, so writing it holds no second copy of the
    probabilities. Without ``store_probs`` an older ``probs.npy`` is removed: it would describe other
    scores.
    """
    classes = [int(c) for c in car_classes]
    rows = sum(len(c.paths) for c in chunks)
    folder = run.prefilter_dir
    car = np.zeros((rows, len(classes)), dtype=np.float16)
    inputs = RuleInputs(np.zeros(rows, dtype=bool), np.zeros((rows, TOP_STORED), dtype=np.int16), classes, car)
    if store_probs:
        header = {"descr": "<f2", "fortran_order": False, "shape": (rows, NUM_CLASSES)}
        with atomic_path(folder / PROBS) as tmp, open(tmp, "wb") as handle:
            np.lib.format.write_array_header_1_0(handle, header)
            frames = _fill(chunks, labels, inputs, car, handle)
    else:
        frames = _fill(chunks, labels, inputs, car, None)
        (folder / PROBS).unlink(missing_ok=True)
    scores = pd.concat(frames, ignore_index=True) if frames else scores_table([], classes, labels)[0]
    with atomic_path(folder / RULE_INPUTS) as tmp, open(tmp, "wb") as handle:  # a handle: no second .npz ending
        np.savez(
            handle,
            broken=inputs.broken,
            top=inputs.top,
            car_classes=np.array(classes, dtype=np.int16),
            car_probs=car,
            paths_sha=np.array(_paths_sha(scores["path"])),
        )
    written = scores.copy()
    for column in TOP_COLUMNS:  # an unused top-k cell is written empty
        written[column] = written[column].astype("Int16").mask(written[column] == UNUSED)
    with atomic_path(folder / SCORES_CSV) as tmp:
        written.to_csv(tmp, index=False)
    return scores
