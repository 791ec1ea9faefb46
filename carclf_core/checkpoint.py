"""Training checkpoints on disk: weight files, the checkpoint state, and the :class:`Resume` it gives.

A train folder holds ``last_weights.npz`` (the weights, valid in both phases), ``last_optimizer.npz``
(the optimizer's variables, with ``train.checkpoint: full``), ``best_weights.npz`` (early stopping's
best weights) and ``state.json`` (completed epochs, phase, early-stopping state, history).
:class:`carclf_core.callbacks.CheckpointCallback` writes them at each epoch end; :meth:`Resume.read`
turns them into where training goes on.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .runs import atomic_path


def save_weights(path: Path, weights: Sequence[np.ndarray]) -> None:
    """Write a weight list atomically as ``.npz``.

    Plain numpy through a Python file, not h5py: when the disk fills up mid-write, h5py leaves file
    objects behind whose clean-up crashes the process; a Python write just raises OSError.
    """
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, *weights)


def load_weights(path: Path) -> list[np.ndarray] | None:
    """A weight list saved by :func:`save_weights` (best or last weights), or None if absent."""
    if not Path(path).is_file():
        return None
    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def read_state(folder: Path) -> dict[str, Any] | None:
    """The checkpoint state of a train folder, or None when no epoch was completed."""
    try:
        return json.loads((Path(folder) / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@dataclasses.dataclass
class Resume:
    """Where a train stage goes on: what the last checkpoint of its folder says."""

    completed: int = 0
    """Epochs finished (both phases), 0 for a fresh start."""
    phase: str | None = None
    """``warmup`` or ``finetune``: the phase of the last finished epoch."""
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    early_stopping: dict[str, Any] | None = None
    """Early stopping's wait, best, best_epoch and best_weights, to start from."""
    stopped: bool = False
    """Early stopping ended training at the last finished epoch."""
    source: str = ""
    """The fingerprint of the split the checkpoint was trained on."""

    @classmethod
    def read(cls, folder: Path) -> Resume:
        state = read_state(folder)
        if not state:
            return cls()
        early = dict(state["early_stopping"])
        early["best_weights"] = load_weights(Path(folder) / "best_weights.npz")
        return cls(
            completed=int(state["completed_epochs"]),
            phase=state.get("phase"),
            history=list(state.get("history", [])),
            early_stopping=early,
            stopped=bool(state.get("stopped")),
            source=str(state.get("source", "")),
        )

    @property
    def fresh(self) -> bool:
        return self.early_stopping is None

    def finished(self, epochs: int) -> bool:
        """Nothing is left to fit: early stopping ended it, or every epoch ran."""
        return not self.fresh and (self.stopped or self.completed >= epochs)
