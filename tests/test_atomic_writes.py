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
from carclf_core.runs import (
    TEMP_PREFIX,
    atomic_path,
    create_run,
    remove_stale_temp_files,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)


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


def test_writers_make_missing_folders_and_json_is_stable_text(tmp_path):
    """A first write into a new stage folder makes it; JSON files are sorted, indented and end with a
    newline, so two runs with equal results have byte-equal files (and diffs stay readable)."""
    write_json_atomic(tmp_path / "a" / "b" / "state.json", {"path": Path("x/y.jpg"), "epochs": 2, "best": None})
    assert (tmp_path / "a" / "b" / "state.json").read_text() == (
        '{\n  "best": null,\n  "epochs": 2,\n  "path": "x/y.jpg"\n}\n')
    with atomic_path(tmp_path / "c" / "d" / "history.csv") as tmp:
        tmp.write_text("epoch\n1\n")
    assert (tmp_path / "c" / "d" / "history.csv").read_text() == "epoch\n1\n"
    write_text_atomic(tmp_path / "e" / "é.txt", "naïve ✓")
    assert (tmp_path / "e" / "é.txt").read_bytes() == "naïve ✓".encode()


# A writer that runs out of file size mid-write (RLIMIT_FSIZE, as on a full disk) and reports what it saw.
_FULL_DISK_WRITER = """
import errno, os, resource, sys
from pathlib import Path
from carclf_core.runs import write_bytes_atomic
resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))
try:
    write_bytes_atomic(Path(sys.argv[1]), b"n" * 2_000_000)
except OSError as exc:
    print(errno.errorcode[exc.errno])
"""


def test_a_write_that_fails_keeps_the_old_file_raises_its_own_error_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "scores.csv"
    write_bytes_atomic(target, b"old\n")
    done = subprocess.run([sys.executable, "-c", _FULL_DISK_WRITER, str(target)], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.strip() == "EFBIG", done.stdout + done.stderr  # the disk-full error, not another one
    assert target.read_bytes() == b"old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["scores.csv"]


def test_the_sweep_removes_only_temporaries_in_the_run_and_its_stage_folders(tmp_path):
    run = create_run(Config(run=RunConfig(root=str(tmp_path / "runs"))))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / ".tmp-abcdefgh-precious").write_text("not the run's")
    chunks = run.stage_dir("prefilter") / "chunks"
    chunks.mkdir()
    stale = [run.path / ".tmp-a1b2c3d4-state.json", run.stage_dir("train") / ".tmp-zz99yy88-last_weights.npz",
             chunks / ".tmp-q1w2e3r4-chunk-00003.npz"]
    for path in stale:
        path.write_bytes(b"partial")
    export = run.stage_dir("evaluate") / ".tmp-savedmodel-k9j8h7g6"  # a SavedModel export cut short
    (export / "variables").mkdir(parents=True)
    (export / "saved_model.pb").write_bytes(b"partial")
    # symlinks that look like temporaries, or lead out of the run, are never followed or deleted
    links = [run.stage_dir("train") / f".tmp-link{i:04d}-x" for i in range(6)]
    for link in links:
        link.symlink_to(outside / ".tmp-abcdefgh-precious")
    (run.stage_dir("split") / "elsewhere").symlink_to(outside, target_is_directory=True)
    kept = [run.path / "previous" / "train-1" / ".tmp-m1n2b3v4-best.keras",  # set-aside results stay as they were
            run.stage_dir("train") / ".tmp-notmine-by-hand.txt"]  # not a name the writers make
    for path in kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"keep")
    more = [run.stage_dir("train") / f".tmp-{i:08d}-epoch.npz" for i in range(6)]  # beside the links
    for path in more:
        path.write_bytes(b"partial")

    removed = remove_stale_temp_files(run.path)
    assert sorted(removed) == sorted([*stale, export, *more])
    assert not any(p.exists() for p in [*stale, export, *more])
    assert all(p.read_bytes() == b"keep" for p in kept) and all(link.is_symlink() for link in links)
    assert (outside / ".tmp-abcdefgh-precious").read_text() == "not the run's"
