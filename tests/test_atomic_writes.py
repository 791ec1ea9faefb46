"""Atomic writes under fire: a reader racing the writer, and a writer killed halfway through a file.

Every run file except ``events.jsonl`` goes through :func:`carclf_core.runs.write_bytes_atomic` or
:func:`carclf_core.runs.atomic_path`; the README promises that a killed run never leaves a
half-written file and that the next runner sweeps the temporaries.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from carclf_core.config import Config, RunConfig
from carclf_core.runs import TEMP_PREFIX, create_run, write_bytes_atomic


def test_a_reader_never_sees_a_partial_file(tmp_path):
    target = tmp_path / "state.json"
    versions = [bytes([ord("a") + i]) * 1_000_000 for i in range(3)]
    write_bytes_atomic(target, versions[0])
    stop = threading.Event()
    seen: set[bytes] = set()
    partial: list[int] = []

    def read_while_written() -> None:
        while not stop.is_set():
            data = target.read_bytes()
            if data in versions:
                seen.add(data[:1])
            else:
                partial.append(len(data))

    reader = threading.Thread(target=read_while_written)
    reader.start()
    try:
        for i in range(1, 40):
            write_bytes_atomic(target, versions[i % 3])
    finally:
        stop.set()
        reader.join()
    assert partial == [], f"the reader saw {len(partial)} partial files (sizes {partial[:5]})"
    assert len(seen) >= 2, "the reader never overlapped a rewrite: the race was not exercised"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


# A writer process: announces itself, then writes ``size`` bytes of "n" through write_bytes_atomic.
_WRITER = """
import sys
from pathlib import Path
from carclf_core.runs import write_bytes_atomic
data = b"n" * int(sys.argv[2])
print("ready", flush=True)
write_bytes_atomic(Path(sys.argv[1]), data)
print("done", flush=True)
"""


def _kill_mid_write(target: Path, size: int) -> bool:
    """Start a writer of ``size`` bytes to ``target``, SIGKILL it as soon as the write shows on disk
    (a temporary file growing, or the target itself changing); True if it was killed before it finished."""
    before = target.stat()
    child = subprocess.Popen([sys.executable, "-c", _WRITER, str(target), str(size)], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and child.poll() is None:
            now = target.stat()
            started = (now.st_size, now.st_mtime_ns) != (before.st_size, before.st_mtime_ns) or any(
                entry.name != target.name and entry.stat().st_size > 0 for entry in os.scandir(target.parent))
            if started:
                child.send_signal(signal.SIGKILL)
                break
        child.wait(30)
        return child.returncode == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_a_writer_killed_mid_write_leaves_the_old_file_and_the_next_lock_sweeps_its_temporary(tmp_path):
    run = create_run(Config(run=RunConfig(root=str(tmp_path))))
    target = run.stage_dir("train") / "last_weights.npz"
    size = 64 * 1024 * 1024
    old = b"o" * size
    write_bytes_atomic(target, old)
    # a fast disk may finish the write before the kill lands: try again with more to write
    for _ in range(3):
        if _kill_mid_write(target, size):
            break
        size *= 2
    else:
        raise AssertionError("the writer finished every time before it could be killed")
    data = target.read_bytes()
    assert data == old, f"target is not the old file: {len(data)} bytes, starting {data[:4]!r}"
    leftovers = [p.name for p in target.parent.iterdir() if p.name.startswith(TEMP_PREFIX)]
    assert len(leftovers) == 1 and leftovers[0].endswith("-last_weights.npz"), leftovers
    with run.lock():  # what the next runner on the run does first
        assert sorted(p.name for p in target.parent.iterdir()) == ["last_weights.npz"]
    assert target.read_bytes() == old
