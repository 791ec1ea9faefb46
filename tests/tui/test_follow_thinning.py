"""The follower parses a bounded number of the running epoch's batch events per read."""

from carclf_core.events import BatchEnded, EpochEnded, EpochStarted, to_json
from carclf_tui.follow import MAX_BATCH_LINES_PER_CHUNK, parse_chunk


def _chunk(*events) -> bytes:
    return ("\n".join(to_json(e) for e in events) + "\n").encode()


def test_a_flood_of_batch_events_is_thinned_keeping_the_newest():
    flood = [BatchEnded(epoch=2, step=i, steps=5000, loss=1.0 / i) for i in range(1, 5001)]
    data = _chunk(EpochEnded(epoch=1, epochs=3, metrics={"loss": 1.0}), EpochStarted(epoch=2, epochs=3), *flood)
    events, bad = parse_chunk(data)
    steps = [e.step for e in events if e.kind == "batch_ended"]
    assert len(steps) == MAX_BATCH_LINES_PER_CHUNK and bad == []
    assert steps[0] == 1 and steps[-1] == 5000 and steps == sorted(steps)
    assert [e.kind for e in events[:2]] == ["epoch_ended", "epoch_started"]  # nothing else is dropped


def test_a_normal_read_keeps_every_batch_event():
    few = [BatchEnded(epoch=1, step=i, steps=40, loss=1.0) for i in range(1, 41)]
    events, _ = parse_chunk(_chunk(EpochStarted(epoch=1, epochs=3), *few))
    assert [e.step for e in events if e.kind == "batch_ended"] == list(range(1, 41))
