"""Work shared between machines, on localhost: training over two worker processes joined through
``TF_CONFIG`` (tf.distribute's MultiWorkerMirroredStrategy on the CPU), a worker killed mid-training
and the run resumed; the prefilter scored as two shards into one run.

Each process is a real ``carclf-tui`` runner (as on two machines sharing the run folder); each pays
TensorFlow's start-up, so the scenarios share their runs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from carclf_core import config as config_mod
from carclf_core import runstate
from carclf_core.cluster import Cluster, Shard, cluster_from_env, multi_worker_wanted, worker_log_path
from carclf_core.errors import ConfigError
from carclf_core.eventlog import read_events
from carclf_core.events import LogLine, WorkersReport
from carclf_core.pipeline import StageContext
from carclf_core.registry import run_stage
from carclf_core.runs import create_run

from .conftest import make_dataset
from .faults.conftest import Runner, _kill_leftover_runners, wait_for  # noqa: F401 (the fixture is used)
from .test_prefilter import _config, _run, needs_lite0, photo_dir  # noqa: F401 (the fixture is used)

EPOCHS = 3


# --- TF_CONFIG and shards, without TensorFlow ---------------------------------------------------


def tf_config(ports: list[int], index: int) -> str:
    return json.dumps(
        {"cluster": {"worker": [f"localhost:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
    )


def test_tf_config_names_the_chief_and_the_workers(monkeypatch):
    assert cluster_from_env({}) is None and cluster_from_env({"TF_CONFIG": "  "}) is None
    monkeypatch.setenv("TF_CONFIG", tf_config([1111, 2222], 1))
    assert cluster_from_env() == Cluster(workers=("localhost:1111", "localhost:2222"), rank=1)  # os.environ
    chief_job = {"cluster": {"chief": ["a:1"], "worker": ["b:2", "c:3"]}, "task": {"type": "chief"}}
    chief = cluster_from_env({"TF_CONFIG": json.dumps(chief_job)})
    assert chief == Cluster(workers=("a:1", "b:2", "c:3"), rank=0) and chief.chief and chief.size == 3
    no_index = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker"}}
    assert cluster_from_env({"TF_CONFIG": json.dumps(no_index)}).rank == 0
    worker = cluster_from_env({"TF_CONFIG": tf_config([1111, 2222, 3333], 2)})
    assert worker == Cluster(workers=("localhost:1111", "localhost:2222", "localhost:3333"), rank=2)
    assert not worker.chief and worker.name() == "worker 2 (localhost:3333)" and worker.name(0).startswith("chief")
    with_chief = {"cluster": {"chief": ["a:1"], "worker": ["b:2"]}, "task": {"type": "worker", "index": 0}}
    assert cluster_from_env({"TF_CONFIG": json.dumps(with_chief)}).rank == 1


@pytest.mark.parametrize(
    "text, words",
    [
        ("{not json", "not JSON"),
        ('{"cluster": {"ps": ["a:1"], "worker": ["b:2"]}, "task": {"type": "worker", "index": 0}}', "'ps'"),
        ('{"cluster": {"worker": ["no-port"]}, "task": {"type": "worker", "index": 0}}', "host:port"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}', "not in the cluster"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": -1}}', "not in the cluster"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": true}}', "not in the cluster"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": "0"}}', "not in the cluster"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}', "not in the cluster"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}', "not in the cluster"),
        ('{"cluster": {"worker": "a:1"}, "task": {"type": "worker", "index": 0}}', "cluster.worker: expected a list"),
        ('{"cluster": {"chief": ["a:1", "b:2"]}, "task": {"type": "chief", "index": 0}}',
         "TF_CONFIG: cluster.chief: at most one chief"),
        ('{"cluster": {"chief": ["a:1"], "worker": ["a:1"]}, "task": {"type": "chief"}}',
         "TF_CONFIG: the cluster lists an address twice"),
        ('["a:1"]', 'TF_CONFIG: expected an object with "cluster" and "task"'),
        ('{"cluster": {"worker": ["a:1"]}}', 'expected an object with "cluster" and "task"'),
    ],
)
def test_a_bad_tf_config_is_refused_naming_it(text, words):
    with pytest.raises(ConfigError, match="TF_CONFIG") as caught:
        cluster_from_env({"TF_CONFIG": text})
    assert caught.value.key == "TF_CONFIG" and str(caught.value).startswith("TF_CONFIG: ")
    assert words in caught.value.message
    hint = caught.value.hint
    assert hint.startswith("on every machine: TF_CONFIG=") and "with I = 0 on the chief" in hint


def test_shards_split_the_chunks_between_them():
    shards = [Shard.parse(f"{i}/3") for i in (1, 2, 3)]
    owners = [[s.owns(chunk) for s in shards].index(True) for chunk in range(10)]
    assert owners == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    assert [str(s) for s in shards] == ["1/3", "2/3", "3/3"] and Shard.parse(" 1 / 1 ") == Shard(1, 1)
    assert worker_log_path(Path("/runs/r"), 2) == Path("/runs/r/worker-2.log")
    for bad in ("0/2", "3/2", "1-2", "a/b", "1/2/3", "1234567/1234567"):
        with pytest.raises(ValueError, match="I/N"):
            Shard.parse(bad)


@pytest.mark.parametrize(
    "mode, machines, wanted",
    [("multi_worker", None, True), ("multi_worker", 1, True), ("auto", 2, True), ("auto", 1, False),
     ("auto", None, False), ("mirrored", 2, False), ("none", 2, False)],
)
def test_machines_train_together_when_multi_worker_or_auto_with_several(mode, machines, wanted):
    cluster = None if machines is None else Cluster(workers=tuple(f"h{i}:1" for i in range(machines)), rank=0)
    assert multi_worker_wanted(mode, cluster) is wanted


def test_workers_reports_reach_the_run_state_and_the_training_tab():
    from carclf_core import runstate as rs
    from carclf_core.events import StageStarted, from_dict, to_json
    from carclf_tui.widgets.training import workers_items

    ready = WorkersReport(workers=("gpu1:2222", "gpu2:2222"), global_batch=64, learning_rate=1.4e-4)
    epoch = WorkersReport(workers=ready.workers, images_per_s=(412.4, float("nan")), epoch=1, global_batch=64)
    state = rs.fold(rs.new_state(), [from_dict(json.loads(to_json(e))) for e in (ready, epoch)])
    assert state.workers.addresses == ("gpu1:2222", "gpu2:2222") and state.workers.epoch == 1
    (long, short), = workers_items(state)
    assert long.plain == "2 machines: 412, NaN img/s" and short.plain == "2 machines"
    assert rs.apply(state, StageStarted(stage="train")).workers is None  # a new attempt says it again
    assert workers_items(rs.new_state()) == []


# --- SLURM: the cluster and the shards from SLURM's environment ---------------------------------

SLURM_STEP = {"SLURM_STEP_NUM_TASKS": "2", "SLURM_STEP_NODELIST": "gpu[1-2]", "SLURM_STEP_TASKS_PER_NODE": "1(x2)"}


@pytest.mark.parametrize("procid", [0, 1])
def test_slurm_step_tasks_become_tf_config_through_tensorflows_resolver(monkeypatch, procid):
    from carclf_core.cluster import slurm_tf_config

    monkeypatch.delenv("TF_CONFIG", raising=False)
    for key, value in {**SLURM_STEP, "SLURM_PROCID": str(procid), "CARCLF_SLURM_PORT_BASE": "23456",
                       "CUDA_VISIBLE_DEVICES": ""}.items():
        monkeypatch.setenv(key, value)
    text = slurm_tf_config()
    assert json.loads(text) == {"cluster": {"worker": ["gpu1:23456", "gpu2:23456"]},
                                "task": {"type": "worker", "index": procid}}
    assert cluster_from_env({"TF_CONFIG": text}) == Cluster(workers=("gpu1:23456", "gpu2:23456"), rank=procid)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""  # no GPU: the resolver did not hand one out
    monkeypatch.setenv("TF_CONFIG", tf_config([1, 2], 0))
    assert slurm_tf_config() is None  # TF_CONFIG, written by the user, wins
    monkeypatch.delenv("TF_CONFIG")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")
    assert slurm_tf_config() is None  # one task: no cluster
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "2")
    monkeypatch.setenv("SLURM_STEP_TASKS_PER_NODE", "3(x2)")  # 6 tasks on the nodes, 2 in the step
    with pytest.raises(ConfigError, match="SLURM_STEP_NODELIST"):
        slurm_tf_config()


@pytest.mark.parametrize("env, share", [
    ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "4"}, "3/4"),
    ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "2"}, "1/2"),
    ({"SLURM_ARRAY_TASK_ID": "6", "SLURM_ARRAY_TASK_MIN": "2", "SLURM_ARRAY_TASK_STEP": "2",
      "SLURM_ARRAY_TASK_COUNT": "3"}, "3/3"),
    ({"SLURM_PROCID": "1", "SLURM_STEP_NUM_TASKS": "3"}, "2/3"),
])
def test_shard_auto_takes_the_share_slurm_gives(env, share):
    assert str(Shard.from_slurm(env)) == share


@pytest.mark.parametrize("env, words", [
    ({}, "none here"),
    ({"SLURM_ARRAY_TASK_ID": "1"}, "SLURM_ARRAY_TASK_COUNT"),
    ({"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "4"}, "share 10 of 4"),
])
def test_shard_auto_outside_slurm_is_refused_in_words(env, words):
    with pytest.raises(ValueError, match=words):
        Shard.from_slurm(env)


# --- training on two worker processes -----------------------------------------------------------


def free_ports(n: int) -> list[int]:
    """``n`` ports free right now (bound to port 0 together, so they differ)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _split_run(tmp: Path, *settings: str):
    """A run indexed and split in this process (no TensorFlow), ready for the train stage."""
    data = make_dataset(tmp / "data", {("Audi", "A4"): 15, ("BMW", "X5"): 15, ("Kia", "Rio"): 15})
    config = config_mod.load(
        None,
        [
            f"data.dir={data}",
            f"run.root={tmp / 'runs'}",
            "prefilter.mode=off",
            "split.min_per_class=5",
            "input.height=48",
            "input.width=72",
            "input.batch_size=2",  # a global batch of 4: the validation split has 6 images
            "train.backbone=mobilenetv3small",
            "train.weights=null",
            f"train.epochs={EPOCHS}",
            "train.patience=10",
            "train.confusion_sample=12",
            "train.batch_events_per_second=1000",
            "train.learning_rate=0.001",
            "train.lr_scaling=linear",
            "train.worker_timeout_s=60",
            "train.cluster_wait_s=120",
            *settings,
        ],
    )
    run = create_run(config)
    ctx = StageContext(config=run.load_config(), run=run, emit=lambda event: None)
    assert run_stage(ctx, "index") == "done" and run_stage(ctx, "split") == "done"
    return run


def _events(run_path: Path) -> list:
    path = run_path / "events.jsonl"
    return read_events(path).events if path.is_file() else []


def _completed(run_path: Path) -> int:
    """Epochs in the train checkpoint."""
    try:
        return json.loads((run_path / "train" / "state.json").read_text())["completed_epochs"]
    except (OSError, ValueError, KeyError):
        return 0


def _machines(run_path: Path, ports: list[int]) -> list[Runner]:
    """The chief and worker 1, each a `carclf-tui --resume RUN --stage train` with its TF_CONFIG."""
    return [
        Runner(["--resume", str(run_path), "--stage", "train"], run_path.parent, env={"TF_CONFIG": tf_config(ports, i)})
        for i in range(2)
    ]


def _exit_status(runner: Runner, timeout: float) -> int:
    """The runner's exit status; a runner still at work after ``timeout`` fails the test with its output."""
    try:
        return runner.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {timeout:g} s:\n{runner.output[-4000:]}")


def _check_trained_together(run: Path, chief: Runner, worker: Runner, first_event: int, first_epoch: int) -> None:
    """Both machines finished epochs ``first_epoch``..EPOCHS together; the chief alone wrote the run
    (its events from ``first_event`` on are this attempt's); the worker wrote only its log."""
    assert _exit_status(chief, 420) == 0, chief.output[-3000:]  # two TensorFlow start-ups on a busy machine
    # the worker ends with the chief, though on a loaded machine its exit can lag behind
    assert _exit_status(worker, 120) == 0, worker.output[-3000:]
    summary = json.loads((run / "train" / "summary.json").read_text())
    assert summary["replicas"] == 2 and summary["machines"] == 2, summary
    assert summary["global_batch"] == 4 and summary["learning_rate"] == pytest.approx(0.002)  # linear: x2
    assert summary["epochs_run"] == EPOCHS
    history = json.loads((run / "train" / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, EPOCHS + 1))
    events = _events(run)
    attempt = events[first_event:]
    assert [e.epoch for e in attempt if e.kind == "epoch_started"] == list(range(first_epoch, EPOCHS + 1))
    reports = [e for e in events if isinstance(e, WorkersReport) and e.epoch == EPOCHS]
    assert len(reports) == 1 and len(reports[0].workers) == 2
    assert all(rate is not None and rate > 0 for rate in reports[0].images_per_s)
    # the worker's log: JSON lines without batch events, with its own view of the epochs
    worker_log = read_events(run / "worker-1.log").events
    assert [e.epoch for e in worker_log if e.kind == "epoch_ended"][-1] == EPOCHS
    assert not [e for e in worker_log if e.kind == "batch_ended"]
    assert worker_log[-1].kind == "stage_finished" and "trained with the chief up to epoch 3" in worker_log[-1].summary
    written = {str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()}
    assert {p for p in written if "worker" in p} == {"worker-1.log"}
    assert (run / ".lock").read_text().strip() == str(chief.proc.pid)


def consecutive_free_ports(n: int) -> list[int]:
    """``n`` free ports one after the other (as SLURM's resolver gives a node's tasks)."""
    for _ in range(50):
        first = free_ports(1)[0]
        sockets = [socket.socket() for _ in range(n)]
        try:
            for k, s in enumerate(sockets):
                s.bind(("localhost", first + k))
            return [first + k for k in range(n)]
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError(f"no {n} consecutive free ports")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_workers_train_together_and_only_the_chief_writes_the_run(tmp_path):
    """The chief is told the cluster by TF_CONFIG; worker 1 by SLURM's environment, as ``srun -n 2``
    sets it on one node (TensorFlow's SlurmClusterResolver turns it into TF_CONFIG): both must find
    the same two machines, or they would never meet."""
    run = _split_run(tmp_path).path
    ports = consecutive_free_ports(2)
    chief = Runner(["--resume", str(run), "--stage", "train"], run.parent, env={"TF_CONFIG": tf_config(ports, 0)})
    slurm = {"SLURM_STEP_NUM_TASKS": "2", "SLURM_STEP_NODELIST": "localhost", "SLURM_STEP_TASKS_PER_NODE": "2",
             "SLURM_PROCID": "1", "CARCLF_SLURM_PORT_BASE": str(ports[0]), "CUDA_VISIBLE_DEVICES": ""}
    worker = Runner(["--resume", str(run), "--stage", "train"], run.parent, env=slurm)
    _check_trained_together(run, chief, worker, first_event=0, first_epoch=1)
    assert [e.kind for e in _events(run)].count("stage_started") == 1


# Four training processes, two at a time: 60 s on 2 idle cores, three minutes beside the rest of the
# suite, so it runs with the extra tests (pytest -m extra); the test above trains two workers together.
@pytest.mark.extra
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_killed_worker_fails_the_stage_in_bounded_time_and_resume_on_both_finishes(tmp_path):
    run = _split_run(tmp_path).path

    # 1. two machines; worker 1 is killed once epoch 1 is checkpointed: the chief's stage fails, in bounded time
    chief, worker = _machines(run, free_ports(2))
    wait_for(lambda: _completed(run) >= 1, chief, what="epoch 1's checkpoint on the chief")
    worker.signal(signal.SIGKILL)
    killed = time.monotonic()
    assert chief.wait(timeout=60) == 1, chief.output[-3000:]
    noticed_s = time.monotonic() - killed
    worker.wait()
    state = json.loads((run / "state.json").read_text())["stages"]["train"]
    assert state["status"] == "failed"
    assert "worker 1 (localhost:" in state["summary"] and "stopped answering" in state["summary"]
    assert "--resume RUN --stage train" in state["summary"]
    completed = _completed(run)
    assert 1 <= completed < EPOCHS

    # 2. --resume on the two machines (new ports: the old ones may linger) finishes the run
    first_attempt = len(_events(run))
    chief, worker = _machines(run, free_ports(2))
    _check_trained_together(run, chief, worker, first_event=first_attempt, first_epoch=completed + 1)
    assert [e.kind for e in _events(run)].count("stage_started") == 2  # one an attempt
    print(f"\nworker killed: the chief failed {noticed_s:.1f} s later")
    assert noticed_s < 45


@pytest.mark.slow
def test_a_machine_that_never_starts_fails_the_stage_after_the_wait(tmp_path):
    run = _split_run(tmp_path, "train.cluster_wait_s=5").path
    chief = Runner(["--resume", str(run), "--stage", "train"], tmp_path, env={"TF_CONFIG": tf_config(free_ports(2), 0)})
    assert chief.wait(timeout=120) == 1, chief.output[-3000:]
    summary = json.loads((run / "state.json").read_text())["stages"]["train"]["summary"]
    assert summary.startswith("not every machine TF_CONFIG lists started within 5 s (train.cluster_wait_s)")
    assert not (run / "train" / "summary.json").exists()


# --- the prefilter as two shards ----------------------------------------------------------------


def _decision(run_path: Path) -> dict:
    """What the prefilter decided, independent of the order the files were listed in."""
    folder = run_path / "prefilter"
    frames = {name: pd.read_csv(folder / name, keep_default_na=False) for name in ("kept.csv", "rejected.csv")}
    scores = pd.read_csv(folder / "scores.csv", keep_default_na=False)
    rule = {k: v for k, v in json.loads((folder / "rule.json").read_text()).items() if k != "updated"}
    return {
        **{name: frame.sort_values("path").reset_index(drop=True).to_dict("list") for name, frame in frames.items()},
        "car_prob": dict(zip(scores["path"], scores["car_prob"], strict=True)),
        "rule": rule,
    }


@needs_lite0
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_shards_make_the_decision_one_process_makes(photo_dir, tmp_path):  # noqa: F811 (the fixture)
    config = _config(photo_dir, tmp_path)  # 6 photos in 3 chunks of 2: shard 1/2 has 0 and 2, 2/2 has 1
    alone, status, _ = _run(config)
    assert status == "done"

    shared = create_run(config)
    ctx = StageContext(config=config, run=shared, emit=lambda event: None)
    assert run_stage(ctx, "index") == "done"
    run = shared.path
    shards = [
        Runner(["--resume", str(run), "--stage", "prefilter", "--shard", f"{i}/2"], tmp_path) for i in (1, 2)
    ]
    assert [shard.wait(timeout=240) for shard in shards] == [0, 0], shards[0].output[-2000:] + shards[1].output
    assert _decision(run) == _decision(alone.path)
    state = json.loads((run / "state.json").read_text())["stages"]["prefilter"]
    assert state["status"] == "done" and state["result"]["kept"] == 3
    events = read_events(run / "events.jsonl").events
    assert [e.kind for e in events].count("stage_started") == 2
    assert [e.kind for e in events].count("stage_finished") == 1  # one shard finished the stage
    decided_by = [e.message for e in events if isinstance(e, LogLine) and "wrote the decision" in e.message]
    assert len(decided_by) == 1

    # a shard killed before its chunk was written: running it again redoes that chunk only
    chunks = run / "prefilter" / "chunks"
    (chunks / "chunk-00001.npz").unlink()
    kept_stamps = {name: (chunks / name).stat().st_mtime_ns for name in ("chunk-00000.npz", "chunk-00002.npz")}
    # shard 1 again: nothing of its own left to do, and the stage waits for shard 2's chunk
    first = Runner(["--resume", str(run), "--stage", "prefilter", "--shard", "1/2"], tmp_path)
    assert first.wait(timeout=120) == 0, first.output[-2000:]
    state = json.loads((run / "state.json").read_text())["stages"]["prefilter"]
    assert state["status"] == "running", state
    waiting = [e for e in read_events(run / "events.jsonl").events if e.kind == "stage_updated"]
    assert waiting and waiting[-1].summary.endswith("waiting for 1 chunk") and "0 images scored" in waiting[-1].summary
    # the dashboard shows the stage waiting for the other shard, with the chunks scored, not failed
    view = runstate.fold(runstate.RunState(), read_events(run / "events.jsonl").events)
    shown = view.stages["prefilter"]
    assert shown.status == "running" and view.errors == 0
    assert shown.waiting == "waiting for the other shards: 2 of 3 chunks scored"
    second = Runner(["--resume", str(run), "--stage", "prefilter", "--shard", "2/2"], tmp_path)
    assert second.wait(timeout=240) == 0, second.output[-2000:]
    finished = [e for e in read_events(run / "events.jsonl").events if e.kind == "stage_finished"][-1]
    assert finished.result["computed"] == 2  # chunk 1's two photos, nothing else
    assert {name: (chunks / name).stat().st_mtime_ns for name in kept_stamps} == kept_stamps
    assert json.loads((run / "state.json").read_text())["stages"]["prefilter"]["status"] == "done"
    assert _decision(run) == _decision(alone.path)


def test_a_whole_run_runner_is_refused_while_shards_hold_the_run(tmp_path):
    from carclf_core.errors import RunError

    run = create_run(config_mod.load(None, [f"run.root={tmp_path / 'runs'}", f"data.dir={tmp_path}"]))
    with run.lock(shared=True), run.lock(shared=True):  # two shards together
        with pytest.raises(RunError, match="another runner"):
            with run.lock():
                pass
        assert run.is_locked()
    with run.lock(), pytest.raises(RunError, match="not one of a --shard"):
        with run.lock(shared=True):
            pass


# Three training processes; the README promises it, the default suite has the two-machine resume.
@pytest.mark.extra
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_after_a_lost_worker_the_chief_can_go_on_alone(tmp_path):
    """Resume on fewer machines: TF_CONFIG unset, the chief continues after the last finished epoch
    with one machine's batch and learning rate."""
    run = _split_run(tmp_path).path
    chief, worker = _machines(run, free_ports(2))
    wait_for(lambda: _completed(run) >= 1, chief, what="epoch 1's checkpoint on the chief")
    worker.signal(signal.SIGKILL)
    assert _exit_status(chief, 60) == 1, chief.output[-3000:]
    worker.wait()
    completed = _completed(run)
    first_attempt = len(_events(run))

    alone = Runner(["--resume", str(run), "--stage", "train"], run.parent)
    assert _exit_status(alone, 240) == 0, alone.output[-3000:]
    summary = json.loads((run / "train" / "summary.json").read_text())
    assert summary["machines"] == 1 and summary["global_batch"] == 2, summary
    assert summary["learning_rate"] == pytest.approx(0.001) and summary["epochs_run"] == EPOCHS
    resumed = [e.epoch for e in _events(run)[first_attempt:] if e.kind == "epoch_started"]
    assert resumed == list(range(completed + 1, EPOCHS + 1))
