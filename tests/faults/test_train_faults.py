"""Training killed, then out of disk space, then resumed to the end."""

import json
import signal
import time

import numpy as np
import pandas as pd
import pytest

from carclf_core.eventlog import read_events

from ..conftest import make_dataset
from .conftest import Runner, only_run, stage_status, temp_files, wait_for

pytestmark = pytest.mark.slow


def _completed(run) -> int:
    try:
        return json.loads((run / "train" / "state.json").read_text())["completed_epochs"]
    except (OSError, ValueError, KeyError):
        return 0


def test_kill_and_full_disk_lose_no_finished_epoch(tmp_path):
    data = make_dataset(tmp_path / "data", {("Audi", "A4"): 14, ("BMW", "X5"): 14, ("Kia", "Rio"): 14})
    settings = ["data.dir=" + str(data), "prefilter.mode=off", "split.min_per_class=5", "input.height=32",
                "input.width=48", "input.batch_size=8", "train.backbone=mobilenetv3small", "train.weights=null",
                "train.epochs=4", "train.patience=10", "train.confusion_sample=12",
                "evaluate.export_savedmodel=false"]
    args = [arg for s in settings for arg in ("--set", s)]

    # 1. SIGKILL at a random moment after the first epoch: nothing finished is lost
    first = Runner(["--stage", "index", "--stage", "prefilter", "--stage", "split", "--stage", "train", *args],
                   tmp_path)
    wait_for(lambda: _completed(only_run(tmp_path)) >= 1, first, what="the first epoch's checkpoint")
    time.sleep(float(np.random.default_rng().uniform(0, 1.0)))
    first.signal(signal.SIGKILL)
    first.wait(30)
    run = only_run(tmp_path)
    done = _completed(run)
    assert done >= 1
    assert stage_status(run, "train") == "running"  # it never got to say otherwise
    read_events(run / "events.jsonl")  # still readable, torn last line or not
    weights = (run / "train" / "last_weights.npz").read_bytes()

    # 2. the disk fills up while the next checkpoint is written: a clear error, the last one intact
    full = Runner(["--resume", str(run), "--stage", "train"], tmp_path, max_file_bytes=1_000_000)
    assert full.wait(300) == 1, full.output
    assert f"resuming after epoch {done}" in full.output
    assert "disk full" in full.output
    assert stage_status(run, "train") == "failed"
    assert _completed(run) == done
    assert (run / "train" / "last_weights.npz").read_bytes() == weights
    assert not temp_files(run)

    # 3. resume runs what is left (the rest of training, then evaluate) and finishes
    last = Runner(["--resume", str(run)], tmp_path)
    assert last.wait(400) == 0, last.output
    assert f"resuming after epoch {done}" in last.output
    history = pd.read_csv(run / "train" / "history.csv")
    assert history["epoch"].tolist() == list(range(1, len(history) + 1)), "an epoch was lost or repeated"
    assert len(history) == 4
    assert stage_status(run, "evaluate") == "done"
    assert not temp_files(run)
    log = read_events(run / "events.jsonl")
    assert log.events[-1].kind == "run_finished" and log.events[-1].status == "done"
    assert len(log.bad_lines) <= 1  # at most the line the kill tore
