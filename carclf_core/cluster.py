"""Which machines work on a run together: the training cluster ``TF_CONFIG`` names, a prefilter shard
``I/N``, and where a training worker logs instead of the run's event log.

Pure Python, no TensorFlow: the CLI reads the role of its process (chief or worker) before it decides
whether to take the run's lock, and the dashboard never imports TensorFlow. The one exception is
:func:`slurm_tf_config`, which asks TensorFlow's own ``SlurmClusterResolver`` (importing TensorFlow)
and is called only by a headless runner that SLURM started as one of several tasks.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
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

    @classmethod
    def from_slurm(cls, environ: Mapping[str, str] | None = None) -> Shard:
        """``--shard auto``: this process's share from SLURM, a task of an array job
        (``SLURM_ARRAY_TASK_ID`` among ``SLURM_ARRAY_TASK_COUNT``, from ``..._MIN`` by ``..._STEP``),
        or else one of several tasks of a job step (``SLURM_PROCID`` of ``SLURM_STEP_NUM_TASKS``).

        Raises:
            ValueError: not started by SLURM as one of several, with words for the command line.
        """
        env = os.environ if environ is None else environ
        try:
            if "SLURM_ARRAY_TASK_ID" in env:
                task, first = int(env["SLURM_ARRAY_TASK_ID"]), int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
                step, count = int(env.get("SLURM_ARRAY_TASK_STEP", "1")), int(env["SLURM_ARRAY_TASK_COUNT"])
                if step < 1 or (task - first) % step:
                    raise ValueError(f"array task {task} is not on the array's range {first}:{step}")
                index = (task - first) // step + 1
            elif "SLURM_PROCID" in env:
                index, count = int(env["SLURM_PROCID"]) + 1, int(env.get("SLURM_STEP_NUM_TASKS") or env["SLURM_NTASKS"])
            else:
                raise ValueError(
                    "--shard auto reads SLURM's environment (an array job's SLURM_ARRAY_TASK_ID, "
                    "or SLURM_PROCID): none here; give the share as I/N"
                )
        except KeyError as exc:
            raise ValueError(f"--shard auto: SLURM's environment lacks {exc.args[0]}") from exc
        if not 1 <= index <= count:
            raise ValueError(f"--shard auto: SLURM's environment makes this share {index} of {count}")
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


SLURM_PORT_BASE = "CARCLF_SLURM_PORT_BASE"
"""The environment variable naming the first port a SLURM-started training listens on (default 8888,
TensorFlow's; a node's tasks take the following ones)."""


def slurm_tf_config() -> str | None:
    """The ``TF_CONFIG`` of a training that SLURM started as several tasks of one job step
    (``srun``, or ``sbatch --ntasks``), as TensorFlow's ``SlurmClusterResolver`` reads SLURM's
    environment: the machines from ``SLURM_STEP_NODELIST`` and ``SLURM_STEP_TASKS_PER_NODE``, this
    task from ``SLURM_PROCID``, ports from ``CARCLF_SLURM_PORT_BASE`` (8888) up on each node.

    None when ``TF_CONFIG`` is set (it wins) or SLURM did not start this process as one of several.
    Imports TensorFlow: headless runners only.

    Raises:
        ConfigError: (key ``SLURM_STEP_NODELIST``) SLURM's environment is incomplete or inconsistent.
    """
    env = os.environ
    try:
        tasks = int(env.get("SLURM_STEP_NUM_TASKS") or "1")
        port_base = int(env.get(SLURM_PORT_BASE) or "8888")
    except ValueError as exc:
        raise ConfigError("SLURM_STEP_NUM_TASKS", f"not a number ({exc})") from exc
    if env.get(TF_CONFIG, "").strip() or tasks < 2:
        return None
    from .quiet import import_tensorflow

    tf, _ = import_tensorflow()  # the runner logs TensorFlow's start-up lines when it asks again
    visible = env.get("CUDA_VISIBLE_DEVICES")
    options: dict = {"port_base": port_base}
    if (not visible.strip()) if visible is not None else shutil.which("nvidia-smi") is None:
        # no GPU: the resolver shares a node's GPUs among its tasks (and asks nvidia-smi how many);
        # here each task gets a GPU number that is never used, and CUDA_VISIBLE_DEVICES stays empty
        options.update(gpus_per_node=tasks, gpus_per_task=1, auto_set_gpu=False)
    try:
        resolver = tf.distribute.cluster_resolver.SlurmClusterResolver(**options)
        spec = resolver.cluster_spec().as_dict()
        task_type, task_id = resolver.get_task_info()
    except (RuntimeError, ValueError, KeyError, OSError) as exc:
        raise ConfigError(
            "SLURM_STEP_NODELIST",
            f"SLURM's environment does not describe the training's machines ({exc})",
            "start each task with `srun` (see the README's sbatch script)",
        ) from exc
    return json.dumps({"cluster": spec, "task": {"type": task_type, "index": task_id}})
