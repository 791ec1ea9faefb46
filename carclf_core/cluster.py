"""Which machines work on a run together: the training cluster ``TF_CONFIG`` names, a prefilter shard
``I/N``, and where a training worker logs instead of the run's event log.

Pure Python, no TensorFlow: the CLI reads the role of its process (chief or worker) before it decides
whether to take the run's lock, and the dashboard never imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

from .errors import ConfigError

TF_CONFIG = "TF_CONFIG"
"""The environment variable TensorFlow's multi-worker training reads (cluster addresses, this task)."""
_ADDRESS = re.compile(r"\[?[A-Za-z0-9_.:-]+\]?:\d{1,5}")
_HINT = (
    'on every machine: TF_CONFIG=\'{"cluster": {"worker": ["host1:port", "host2:port"]}, '
    '"task": {"type": "worker", "index": I}}\' with I = 0 on the chief, 1, 2, ... on the others'
)


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The machines of a multi-worker training, as ``TF_CONFIG`` lists them, and this process's place."""

    workers: tuple[str, ...]
    """``host:port`` of every task, the chief first (TF_CONFIG's ``chief`` job if it has one, then its
    ``worker`` job in order)."""
    rank: int
    """This process's position in :attr:`workers`; 0 is the chief, which owns the run folder."""

    @property
    def size(self) -> int:
        return len(self.workers)

    @property
    def chief(self) -> bool:
        return self.rank == 0

    def name(self, rank: int | None = None) -> str:
        """``chief`` or ``worker N`` (this process's by default), with its address: for messages."""
        rank = self.rank if rank is None else rank
        return f"{'chief' if rank == 0 else f'worker {rank}'} ({self.workers[rank]})"


def cluster_from_env(environ: Mapping[str, str] | None = None) -> Cluster | None:
    """The cluster ``TF_CONFIG`` describes, or None when it is unset or blank.

    TensorFlow's own format: ``{"cluster": {"worker": [...], "chief": [...]}, "task": {"type": ...,
    "index": ...}}``; the chief is task 0 of ``worker`` unless a ``chief`` job is given.

    Raises:
        ConfigError: (key ``TF_CONFIG``) not JSON or nested too deeply, jobs other than ``chief`` and
            ``worker``, an address that is not ``host:port``, or a task that is not in the cluster.
    """
    text = (os.environ if environ is None else environ).get(TF_CONFIG, "").strip()
    if not text:
        return None
    try:
        spec = json.loads(text)
    except ValueError as exc:
        raise ConfigError(TF_CONFIG, f"not JSON ({exc})", _HINT) from exc
    except RecursionError:  # json's decoder recurses once a nesting level: [[[[...]]]] overflows it
        raise ConfigError(TF_CONFIG, "nested too deeply to be a cluster description", _HINT) from None
    cluster, task = (spec.get("cluster"), spec.get("task")) if isinstance(spec, dict) else (None, None)
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise ConfigError(TF_CONFIG, 'expected an object with "cluster" and "task"', _HINT)
    other = sorted(set(cluster) - {"chief", "worker"})
    if other:
        raise ConfigError(
            TF_CONFIG,
            f"job {other[0]!r} is not used: multi-worker training has a chief and workers only",
            _HINT,
        )
    jobs: dict[str, list[str]] = {}
    for job in ("chief", "worker"):
        addresses = cluster.get(job, [])
        if not isinstance(addresses, list) or not all(isinstance(a, str) and _ADDRESS.fullmatch(a) for a in addresses):
            raise ConfigError(TF_CONFIG, f"cluster.{job}: expected a list of host:port addresses", _HINT)
        jobs[job] = addresses
    if len(jobs["chief"]) > 1:
        raise ConfigError(TF_CONFIG, "cluster.chief: at most one chief", _HINT)
    workers = tuple(jobs["chief"] + jobs["worker"])
    if len(set(workers)) != len(workers):
        raise ConfigError(TF_CONFIG, "the cluster lists an address twice", _HINT)
    kind, index = task.get("type"), task.get("index", 0)
    if kind not in jobs or isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(jobs[kind]):
        raise ConfigError(TF_CONFIG, f"task {kind!r} {index!r} is not in the cluster", _HINT)
    return Cluster(workers=workers, rank=index + (len(jobs["chief"]) if kind == "worker" else 0))


def multi_worker_wanted(mode: str, cluster: Cluster | None) -> bool:
    """Whether ``train.distribute`` means training over the machines ``TF_CONFIG`` names: ``multi_worker``,
    or ``auto`` with more than one machine listed."""
    return mode == "multi_worker" or (mode == "auto" and cluster is not None and cluster.size > 1)


@dataclasses.dataclass(frozen=True)
class Shard:
    """One of ``count`` machines sharing a prefilter: it scores the chunks numbered ``index - 1``
    modulo ``count`` (1-based ``index``, as ``--shard 1/3 ... 3/3`` reads)."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"I/N"`` with 1 <= I <= N.

        Raises:
            ValueError: anything else, with words for the command line.
        """
        match = re.fullmatch(r"\s*(\d{1,6})\s*/\s*(\d{1,6})\s*", text)
        if not match:
            raise ValueError(f"expected I/N (this machine's share, 1-based: 1/3, 2/3, 3/3), got {text!r}")
        index, count = int(match.group(1)), int(match.group(2))
        if not 1 <= index <= count:
            raise ValueError(f"expected 1 <= I <= N in I/N (shares count from 1), got {text!r}")
        return cls(index, count)

    def owns(self, chunk: int) -> bool:
        """Whether this shard scores chunk number ``chunk`` (0-based)."""
        return chunk % self.count == self.index - 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def worker_log_path(run_path: Path, rank: int) -> Path:
    """``<run>/worker-<rank>.log``: the only file a training worker writes into the run, its events
    one JSON object a line as in ``events.jsonl`` (``eventlog.read_events`` reads it)."""
    return Path(run_path) / f"worker-{rank}.log"


WORKER_LOG_LEAVES_OUT = frozenset({"batch_ended", "confusion"})
"""Events a worker's log leaves out: a few a second, or a whole matrix; the chief's event log has them."""
