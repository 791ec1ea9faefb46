"""SIGTERM, SIGKILL and a second runner while the prefilter scores the demo data; SIGINT and SIGHUP
while indexing."""

import signal

import numpy as np
import pytest

from carclf_core.eventlog import read_events

from .conftest import Runner, event_kinds, only_run, stage_status, temp_files, wait_for

pytestmark = pytest.mark.slow


def _chunks(run):
    return sorted((run / "prefilter" / "chunks").glob("chunk-*.npz"))


def _start_prefilter(tmp_path, demo_env):
    return Runner(["--demo", "--stage", "index", "--stage", "prefilter", "--set", "prefilter.chunk_size=64",
                   "--set", "prefilter.batch_size=16"], tmp_path, demo_env)


def test_sigterm_keeps_finished_chunks_and_resume_computes_no_image_twice(tmp_path, demo_env):
    runner = _start_prefilter(tmp_path, demo_env)
    wait_for(lambda: len(_chunks(only_run(tmp_path))) >= 2, runner, what="two finished chunks")
    # a second runner on the same run is refused while the first holds it
    second = Runner(["--resume", str(only_run(tmp_path)), "--stage", "prefilter"], tmp_path, demo_env)
    assert second.wait(60) == 2
    assert "another runner is working on this run" in second.output
    runner.signal(signal.SIGTERM)
    assert runner.wait(60) == 143, runner.output
    run = only_run(tmp_path)
    assert stage_status(run, "prefilter") == "interrupted"
    assert "stage_interrupted" in event_kinds(run)
    kept_chunks = {p.name: p.stat().st_mtime_ns for p in _chunks(run)}
    assert len(kept_chunks) >= 2 and not temp_files(run)

    resumed = Runner(["--resume", str(run), "--stage", "prefilter", "--stage", "split"], tmp_path, demo_env)
    assert resumed.wait(300) == 0, resumed.output
    assert stage_status(run, "prefilter") == "done"
    assert f"{len(kept_chunks)} of" in resumed.output and "already scored, resuming" in resumed.output
    for name, mtime in kept_chunks.items():
        assert (run / "prefilter" / "chunks" / name).stat().st_mtime_ns == mtime, f"{name} was recomputed"
    assert stage_status(run, "split") == "done"


KILL_SEED = 20260128
"""Seeds the kill point, so a failure replays with the same one."""


def test_sigkill_loses_nothing_before_the_last_chunk(tmp_path, demo_env):
    runner = _start_prefilter(tmp_path, demo_env)
    target = int(np.random.default_rng(KILL_SEED).integers(1, 4))
    wait_for(lambda: len(_chunks(only_run(tmp_path))) >= target, runner, what=f"{target} chunks")
    runner.signal(signal.SIGKILL)
    assert runner.wait(30) == -signal.SIGKILL
    run = only_run(tmp_path)
    before = {p.name: p.read_bytes() for p in _chunks(run)}
    assert len(before) >= target
    assert stage_status(run, "prefilter") == "running"  # it never got to say otherwise
    after_kill = read_events(run / "events.jsonl")
    milestones = [(e.kind, getattr(e, "stage", "")) for e in after_kill.events
                  if e.kind in ("stage_started", "stage_finished", "stage_failed", "stage_interrupted", "run_finished")]
    # the index finished; the prefilter started and said nothing more
    assert milestones[-2:] == [("stage_finished", "index"), ("stage_started", "prefilter")]
    assert after_kill.bad_lines in ([], [len(after_kill.events) + 1])  # at most the last line, torn

    resumed = Runner(["--resume", str(run), "--stage", "prefilter"], tmp_path, demo_env)
    assert resumed.wait(300) == 0, resumed.output
    for name, data in before.items():
        assert (run / "prefilter" / "chunks" / name).read_bytes() == data
    assert not temp_files(run)
    log = read_events(run / "events.jsonl")
    assert log.events[-1].kind == "run_finished" and log.events[-1].status == "done"
    assert log.bad_lines == after_kill.bad_lines  # the kill's torn line, if any, and no other


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGHUP, 129)])
def test_signal_during_index_stops_and_resume_finishes(tmp_path, signum, code):
    """Ctrl-C, or the SSH session hanging up, while indexing: the stage stops, writes no half index."""
    from ..conftest import make_dataset

    data = make_dataset(tmp_path / "data", {("Audi", "A4"): 2500, ("BMW", "X5"): 2500}, size=(24, 16))
    runner = Runner(["--stage", "index", "--set", f"data.dir={data}", "--set", "data.workers=1"], tmp_path)
    wait_for(lambda: "stage_progress" in event_kinds(only_run(tmp_path)), runner, what="index progress")
    runner.signal(signum)
    assert runner.wait(60) == code, runner.output
    run = only_run(tmp_path)
    assert stage_status(run, "index") == "interrupted"
    assert not (run / "index" / "index.csv").exists()  # no half index
    resumed = Runner(["--resume", str(run), "--stage", "index"], tmp_path)
    assert resumed.wait(120) == 0, resumed.output
    assert stage_status(run, "index") == "done"
