import json
import os
import tempfile
from pathlib import Path

import pytest

from carclf_core import config as config_mod
from carclf_core import events as ev
from carclf_core.config import Config, RunConfig
from carclf_core.errors import RunError
from carclf_core.eventlog import JsonlSink, read_events
from carclf_core.runs import atomic_path, create_run, latest_run, list_runs, open_run, write_text_atomic


def test_every_event_round_trips_through_json():
    samples = [
        ev.RunStarted(run_dir="runs/x", stages=("index", "split"), pid=1),
        ev.StageProgress(stage="index", done=3, total=10, rate=2.5, eta_s=1.0, info={"kept": 2}),
        ev.StageFinished(stage="index", duration_s=1.5, summary="ok", result={"images": 3}),
        ev.StageFailed(stage="train", error="boom", traceback="tb"),
        ev.LogLine(level="warning", message="rejected: empty file", stage="index", file="a.jpg"),
        ev.EpochEnded(epoch=1, epochs=5, metrics={"loss": 1.0, "val_loss": 1.2}, learning_rate=1e-4),
        ev.PatienceChanged(epoch=3, wait=1, patience=12, best=0.5, best_epoch=2),
        ev.ConfusionReady(epoch=1, classes=("a", "b"), matrix=((3, 1), (0, 4)), sample=8),
        ev.PrefilterHistogram(edges=(0.0, 0.5, 1.0), counts=(3, 4), threshold=0.1, kept=4, scored=7),
        ev.PrefilterExamples(kept=(("a.jpg", 0.2),), rejected=(("b.jpg", 0.05),)),
    ]
    for event in samples:
        assert ev.from_dict(json.loads(ev.to_json(event))) == event


def test_runs_are_never_overwritten(tmp_path):
    config = Config(run=RunConfig(root=str(tmp_path), name="same"))
    runs = [create_run(config) for _ in range(3)]
    assert len({r.path for r in runs}) == 3
    assert [r.path for r in list_runs(tmp_path)] == sorted(r.path for r in runs)
    assert latest_run(tmp_path).path == max(r.path for r in runs)
    # the run keeps the config with its paths made absolute (data.dir "data" -> <cwd>/data)
    assert open_run(runs[0].path.name, root=tmp_path).load_config() == config_mod.resolve_paths(config)[0]
    with pytest.raises(RunError, match="no such run folder"):
        open_run(tmp_path / "nothing")


def test_event_log_tolerates_torn_and_malformed_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    sink = JsonlSink(path)
    sink(ev.StageStarted(stage="index"))
    sink(ev.LogLine(level="info", message="hello"))
    sink.close()
    with open(path, "a") as handle:
        handle.write("{not json}\n")
        handle.write('{"kind": "stage_finished", "stage": "ind')  # a kill mid-write
    log = read_events(path)
    assert [e.kind for e in log.events] == ["stage_started", "log"]
    assert log.bad_lines == [3, 4]


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "scores.csv"
    write_text_atomic(target, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["scores.csv"]


def test_second_runner_is_refused(tmp_path):
    run = create_run(Config(run=RunConfig(root=str(tmp_path))))
    with run.lock():
        assert run.is_locked()
        with pytest.raises(RunError, match="another runner"):
            with run.lock():
                pass
    assert not run.is_locked()


def test_appending_after_a_torn_line_keeps_new_events_readable(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(ev.to_json(ev.StageStarted(stage="train")) + "\n" + '{"kind": "batch_en')
    sink = JsonlSink(path)
    assert sink.torn_line == 2
    sink(ev.StageInterrupted(stage="train", reason="SIGKILL"))
    sink.close()
    log = read_events(path)
    assert [e.kind for e in log.events] == ["stage_started", "stage_interrupted"]
    assert log.bad_lines == [2]
    assert JsonlSink(path).torn_line is None


def test_lock_removes_temp_files_a_killed_writer_left(tmp_path):
    run = create_run(Config(run=RunConfig(root=str(tmp_path))))
    with atomic_path(run.stage_dir("train") / "last.weights.h5") as tmp:
        assert tmp.name.startswith(".tmp-") and tmp.name.endswith("-last.weights.h5")
        tmp.write_bytes(b"partial")
        # what a writer killed between create and rename leaves: a name of the same making
        fd, name = tempfile.mkstemp(prefix=".tmp-", suffix="-last.weights.h5", dir=tmp.parent)
        os.close(fd)
        stale = Path(name)
        stale.write_bytes(b"left by a kill")
    assert stale.exists()
    with run.lock():
        pass
    assert sorted(p.name for p in (run.path / "train").iterdir()) == ["last.weights.h5"]
