"""A stand-in for the headless runner: holds the run's lock and writes events like a real stage.

Usage: ``python fake_runner.py RUN_DIR --mode hang|finish|crash STAGE [STAGE ...]``.
``hang`` works for about 20 s unless stopped by SIGINT (then it writes StageInterrupted and exits 130,
like the real runner); ``finish`` ends each stage after a few steps; ``crash`` dies right after
StageStarted without a final event (exit 3), as a segfault or an out-of-memory kill would.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from carclf_core import events as ev
from carclf_core.eventlog import JsonlSink
from carclf_core.runs import RunDir


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("run")
    parser.add_argument("--mode", default="hang", choices=("hang", "finish", "crash"))
    parser.add_argument("stages", nargs="*")
    args = parser.parse_args()
    run = RunDir(Path(args.run))
    (run.path / "fake_argv.txt").write_text(" ".join(args.stages))
    stop = []
    signal.signal(signal.SIGINT, lambda signum, frame: stop.append(signum))
    with run.lock():
        sink = JsonlSink(run.events_path)
        sink(ev.RunStarted(run_dir=str(run.path), stages=tuple(args.stages), pid=os.getpid()))
        for name in args.stages:
            sink(ev.StageStarted(stage=name, total=1000))
            if args.mode == "crash":
                print(f"Traceback (most recent call last):\nRuntimeError: simulated crash in {name}", flush=True)
                os._exit(3)
            for step in range(1, 1001):
                if stop:
                    sink(ev.StageInterrupted(stage=name, reason="SIGINT"))
                    sink(ev.RunFinished(status="interrupted"))
                    sink.close()
                    return 130
                sink(ev.StageProgress(stage=name, done=step, total=1000, rate=50.0))
                sink.flush()
                if args.mode == "finish" and step >= 3:
                    break
                time.sleep(0.02)
            sink(ev.StageFinished(stage=name, duration_s=0.1, summary=f"fake {name} done"))
        sink(ev.RunFinished(status="done"))
        sink.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
