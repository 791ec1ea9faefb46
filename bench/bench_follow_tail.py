"""The follower while a writer leaves a 50 MB last line unfinished (the issue: 27 % of a core while idle).

Run: ``python bench/bench_follow_tail.py``. The baseline is the reader as it was, measured in the same
run: every poll re-read everything after the last complete line. The follower now remembers how far it
looked, so an idle poll is one ``fstat``. Prints CPU seconds a poll, the share of a core at the
dashboard's poll interval, and the ratio; nothing is asserted.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from carclf_core import events as ev  # noqa: E402
from carclf_core.eventlog import EventFollower, parse_lines  # noqa: E402
from carclf_tui.follow import POLL_INTERVAL_S  # noqa: E402

TAIL_BYTES = 50 << 20
POLLS = 20


def naive_poll(path: Path, offset: int) -> int:
    """The old ``EventFollower.read_new``: read from the offset to the end, parse the complete lines."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read()
    _, _, used = parse_lines(data)
    return offset + used


def cpu_per_poll(poll) -> float:
    start = time.process_time()
    for _ in range(POLLS):
        poll()
    return (time.process_time() - start) / POLLS


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "events.jsonl"
        with open(path, "wb") as handle:
            handle.write(ev.to_json(ev.StageStarted(stage="train")).encode() + b"\n")
            handle.write(b'{"kind":"log","level":"info","message":"' + b"x" * TAIL_BYTES)  # never ended
        offset = naive_poll(path, 0)
        naive = cpu_per_poll(lambda: naive_poll(path, offset))
        follower = EventFollower(path)
        follower.read_new()  # the first read takes in the whole file once, as the old one did
        now = cpu_per_poll(follower.read_new)
        share = lambda seconds: 100 * seconds / (seconds + POLL_INTERVAL_S)  # noqa: E731
        print(f"idle poll with a {TAIL_BYTES >> 20} MB unfinished last line, CPU per poll:")
        print(f"  baseline (re-read the tail each poll): {naive * 1000:8.2f} ms  ~{share(naive):.0f} % of a core")
        print(f"  follower (remembers where it looked):  {now * 1000:8.3f} ms  ~{share(now):.2f} % of a core")
        print(f"  ratio: {naive / max(now, 1e-9):,.0f}x less CPU; bytes read by the follower: "
              f"{follower.bytes_read:,} (the file once)")


if __name__ == "__main__":
    main()
