"""What each stage was made from, and whether that still holds: fingerprints, records, staleness.

When a stage finishes, :func:`record` stores in ``state.json`` the config keys it read, the
fingerprints of the upstream outputs it used, and a fingerprint of its own outputs. A finished stage
is **stale** when its config keys or an upstream output changed since: :func:`staleness` says which
and why ("prefilter changed 06:12: 500 / 592 kept -> 480 / 592 kept"). Nothing is hashed at check
time: each stage's output fingerprint is computed once, when it is made.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .config import Config
from .runs import RunDir, flat_config


@dataclasses.dataclass(frozen=True)
class Lineage:
    """What a stage depends on and what it makes (declared in the registry, one per stage)."""

    sections: tuple[str, ...]
    """Config sections (``split``) or keys (``input.height``) whose values shape the results."""
    ignore: tuple[str, ...] = ()
    """Keys within ``sections`` that do not change the results (speed, logging)."""
    upstream: tuple[str, ...] = ()
    """Stages whose outputs this stage reads."""
    outputs: tuple[str, ...] = ()
    """Files (relative to the run) that are the stage's result, fingerprinted when it finishes."""

    def config_values(self, config: Config | dict[str, Any]) -> dict[str, Any]:
        """The values of this stage's keys, from a config or its :func:`flat_config` form (which a
        caller asking for several stages computes once)."""
        flat = config if isinstance(config, dict) else flat_config(config.to_dict())
        return {
            key: value
            for key, value in flat.items()
            if any(key == s or key.startswith(s + ".") for s in self.sections) and key not in self.ignore
        }


LINEAGES: dict[str, Lineage] = {
    "index": Lineage(("data",), ignore=("data.workers",), outputs=("index/index.csv",)),
    "prefilter": Lineage(
        ("prefilter",),
        ignore=("prefilter.batch_size", "prefilter.chunk_size"),
        upstream=("index",),
        outputs=("prefilter/kept.csv",),
    ),
    "split": Lineage(("split",), upstream=("index", "prefilter"), outputs=("split/splits.csv", "split/classes.json")),
    "train": Lineage(
        ("train", "input"),
        upstream=("split",),
        outputs=("train/summary.json",),
        ignore=(
            "train.batch_events_per_second",
            "train.confusion_sample",
            "input.decode_workers",
            "input.cache",
            "train.deterministic",
            "train.worker_timeout_s",
            "train.cluster_wait_s",
        ),
    ),
    "evaluate": Lineage(
        ("evaluate", "input.height", "input.width", "input.resize"),
        upstream=("split", "train"),
        outputs=("evaluate/metrics.json",),
    ),
}
"""Each stage's lineage, in stage order (the registry lists the same names in the same order)."""


def fingerprint(run: RunDir, files: Sequence[str], locate: Callable[[Path], Path] | None = None) -> str:
    """A short hash over the named files' names and bytes (a missing file counts as absent).

    Args:
        run: the run the names are relative to.
        files: the files.
        locate: where each file's content is read from (a :class:`carclf_core.runs.Change` not yet
            committed holds it aside: its ``current``); default the file itself.
    """
    digest = hashlib.blake2b(digest_size=12)
    for name in files:
        path = Path(run.path) / name
        if locate is not None:
            path = locate(path)
        digest.update(name.encode() + b"\0")
        try:
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        except OSError:
            digest.update(b"<absent>")
    return digest.hexdigest()


def provenance_fields(
    run: RunDir,
    name: str,
    config: Config,
    note: str,
    stages: dict[str, Any],
    locate: Callable[[Path], Path] | None = None,
) -> dict[str, Any]:
    """The ``inputs`` and ``made`` fields :func:`record` stores for stage ``name``, given the run's
    ``stages`` (``state.json``'s) and where its outputs are read (see :func:`fingerprint`)."""
    lineage = LINEAGES[name]
    upstream = {up: stages.get(up, {}).get("made", {}) for up in lineage.upstream}
    return {
        "inputs": {"config": lineage.config_values(config), "upstream": upstream},
        "made": {"fingerprint": fingerprint(run, lineage.outputs, locate), "note": note, "t": time.time()},
    }


def record(run: RunDir, name: str, config: Config, note: str) -> None:
    """Store, for a stage that just finished, what it was made from and what it made.

    A finished stage whose outputs change in place (a new prefilter threshold saved) stores the same
    fields, in the same change as its outputs (:func:`provenance_fields`), so the stage itself stays
    fresh and the stages after it turn stale.
    """
    run.update_stage_state(name, **provenance_fields(run, name, config, note, run.read_state().get("stages", {})))


def _describe(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def staleness(run: RunDir, config: Config, stages: dict[str, Any] | None = None) -> dict[str, str]:
    """Finished stages whose inputs changed since they were made, with the reason, in stage order.

    A stage finished before provenance was recorded (an older run) is taken as fresh.

    Args:
        run: the run.
        config: its config.
        stages: ``state.json``'s stages as a change about to be committed makes them; default the
            run's own.
    """
    stages = run.read_state().get("stages", {}) if stages is None else stages
    flat = flat_config(config.to_dict())
    stale: dict[str, str] = {}
    for name, lineage in LINEAGES.items():
        entry = stages.get(name, {})
        inputs = entry.get("inputs")
        if entry.get("status") != "done" or inputs is None:
            continue
        reasons = []
        for up in lineage.upstream:
            if up in stale:
                reasons.append(f"{up} is stale")
                continue
            used = inputs.get("upstream", {}).get(up, {})
            now = stages.get(up, {}).get("made", {})
            if used.get("fingerprint") != now.get("fingerprint"):
                when = time.strftime("%H:%M", time.localtime(now["t"])) if now.get("t") else "since"
                reasons.append(f"{up} changed {when}: {used.get('note') or '?'} -> {now.get('note') or 'not made'}")
        was = inputs.get("config", {})
        for key, value in lineage.config_values(flat).items():
            if key in was and was[key] != value:
                reasons.append(f"{key} {_describe(was[key])} -> {_describe(value)}")
        if reasons:
            stale[name] = "; ".join(reasons)
    return stale
