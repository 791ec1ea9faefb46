"""A stage stopped and continued reports its whole time: state.json, its events and the reducer agree."""

from __future__ import annotations

import dataclasses
import time

from carclf_core import registry
from carclf_core import runstate as rs
from carclf_core.events import StageFinished, StageStarted
from carclf_core.pipeline import StageCancelled, StageContext, StageResult
from carclf_tui.sample_run import make_run_dir

ATTEMPTS: list[str] = []


def _stage(ctx: StageContext) -> StageResult:
    """A stage that works a moment, then stops the first time it runs and finishes the second."""
    time.sleep(0.3)
    ATTEMPTS.append("x")
    if len(ATTEMPTS) == 1:
        raise StageCancelled("SIGINT")
    return StageResult(summary="ok")


def test_a_stopped_stage_continued_reports_both_attempts_time(tmp_path, monkeypatch) -> None:
    ATTEMPTS.clear()
    stage = dataclasses.replace(registry.STAGE_BY_NAME["index"], target=f"{__name__}:_stage")
    monkeypatch.setitem(registry.STAGE_BY_NAME, "index", stage)
    run = make_run_dir(tmp_path)
    seen: list = []
    ctx = StageContext(config=run.load_config(), run=run, emit=seen.append)
    assert registry.run_stage(ctx, "index") == "interrupted"
    first = run.read_state()["stages"]["index"]
    assert first["spent_s"] >= 0.3 and first["duration_s"] == first["spent_s"]
    assert registry.run_stage(ctx, "index") == "done"
    entry = run.read_state()["stages"]["index"]
    started = [e for e in seen if isinstance(e, StageStarted)]
    assert [e.spent_s for e in started] == [0.0, first["spent_s"]]
    finished = next(e for e in seen if isinstance(e, StageFinished))
    assert entry["duration_s"] == finished.duration_s >= first["spent_s"] + 0.3
    state = rs.fold(rs.new_state(("index",)), seen)
    assert state.stages["index"].duration_s == finished.duration_s
    # done, it starts afresh next time: nothing carried over
    assert registry.run_stage(ctx, "index") == "done"
    assert [e for e in seen if isinstance(e, StageStarted)][-1].spent_s == 0.0


def test_a_hand_edited_spent_time_is_read_as_nothing() -> None:
    assert [registry._seconds(v) for v in (12.5, -1, float("nan"), "3", True, None)] == [12.5, 0, 0, 0, 0, 0]


def _missing_data(ctx: StageContext) -> StageResult:
    from carclf_core.errors import DatasetError

    raise DatasetError("data.dir: folder /nowhere does not exist")


def _bug(ctx: StageContext) -> StageResult:
    return {}["no such key"]


def test_a_known_failure_is_its_message_alone_and_a_bug_keeps_its_traceback(tmp_path, monkeypatch) -> None:
    """What the dashboard's detail panel shows under a failed stage: carclf's own error names the key
    and needs no traceback (a new run on a missing data folder showed one); any other exception keeps it."""
    from carclf_core.events import StageFailed

    run = make_run_dir(tmp_path)
    for target, traced in ((f"{__name__}:_missing_data", False), (f"{__name__}:_bug", True)):
        monkeypatch.setitem(registry.STAGE_BY_NAME, "index",
                            dataclasses.replace(registry.STAGE_BY_NAME["index"], target=target))
        seen: list = []
        ctx = StageContext(config=run.load_config(), run=run, emit=seen.append)
        assert registry.run_stage(ctx, "index") == "failed"
        (failed,) = [e for e in seen if isinstance(e, StageFailed)]
        assert bool(failed.traceback) == traced and ("KeyError" in failed.traceback) == traced
    assert failed.error == "KeyError: 'no such key'"
