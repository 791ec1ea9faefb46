"""Following a run's ``events.jsonl`` from a thread, folding it into the run state; and following it
in plain text (:func:`follow_plain`: ``--attach RUN --plain``, and the dashboard under ``TERM=dumb``).

The follower thread owns the state while it folds: it reads every complete new line since its last
offset, folds the whole chunk with :func:`carclf_core.runstate.fold` (one copy a chunk), and posts the
new state. Posting at most once a poll interval bounds the UI's redraw rate however fast events
arrive; the UI never waits on the thread and the thread never waits on the UI.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from carclf_core import runstate
from carclf_core.eventlog import EventFollower, parse_lines
from carclf_core.events import Event
from carclf_core.runs import RunDir

from .runner import Runner

POLL_INTERVAL_S = 0.1
"""How often the file is polled, and so the most often the dashboard redraws for new events."""


# How the JSON form of the two kinds the fast path looks for begins (``events.to_json`` writes
# ``kind`` first, compactly); a line written otherwise is simply parsed the normal way.
_BATCH = b'{"kind":"batch_ended"'
_EPOCH_STARTED = b'{"kind":"epoch_started"'


MAX_BATCH_LINES_PER_CHUNK = 64
"""Most batch events of the running epoch parsed from one read. The curve keeps a few hundred
points an epoch anyway; under a flood (thousands of events a poll) parsing them all would hold the
GIL the UI needs, so the rest are skipped evenly, always keeping the newest."""


def _thinned_batches(lines: list[bytes], last_start: int) -> set[int]:
    """Indices of current-epoch batch lines to skip so at most MAX_BATCH_LINES_PER_CHUNK are parsed."""
    current = [i for i in range(last_start + 1, len(lines)) if lines[i].startswith(_BATCH)]
    if len(current) <= MAX_BATCH_LINES_PER_CHUNK:
        return set()
    step = len(current) / (MAX_BATCH_LINES_PER_CHUNK - 1)
    keep = {current[min(int(k * step), len(current) - 1)] for k in range(MAX_BATCH_LINES_PER_CHUNK - 1)}
    keep.add(current[-1])
    return set(current) - keep


def skip_dead_batches(lines: list[bytes]) -> set[int]:
    """Indices of batch lines a chunk need not parse: the state drops them anyway.

    The reducer starts a new batch curve at each ``epoch_started``, so batch events before the chunk's
    last epoch start can never be shown; they are skipped unparsed (so a malformed one among them goes
    unreported: it could not have been shown either). That turns a replay of 100 epochs
    x 1,000 batches from 100,000 JSON parses into a few thousand. Of the running epoch's batch events
    at most :data:`MAX_BATCH_LINES_PER_CHUNK` are parsed, evenly spread, the newest always among them.
    Everything else is parsed like ``eventlog.parse_lines`` does (malformed lines reported by number, never raised).
    """
    last_start = next((i for i in range(len(lines) - 1, -1, -1) if lines[i].startswith(_EPOCH_STARTED)), -1)
    dead = {i for i in range(last_start) if lines[i].startswith(_BATCH)}
    return dead | _thinned_batches(lines, last_start)


def parse_chunk(data: bytes, first_line: int = 1) -> tuple[list[Event], list[int]]:
    """Events and malformed line numbers of the complete lines of ``data``, batch lines thinned."""
    events, bad, _ = parse_lines(data, first_line, skip_dead_batches)
    return events, bad


def follow(state: runstate.RunState, events_path: Path, runner: Runner, post: Callable[[runstate.RunState], None],
           cancelled: Callable[[], bool], interval: float = POLL_INTERVAL_S,
           clock: Callable[[], float] = time.time) -> None:
    """Follow ``events_path`` until ``cancelled()``; call ``post`` with each new state.

    Also watches the runner: its exit goes into the log, and a stage the events still call running
    when no runner is left (a crash or a kill -9 leaves no final event) is marked failed with the last
    lines of ``runner.log``. Nothing ends the loop but ``cancelled()``: a log that cannot be read (a
    symbolic link, a folder) or any exception while reading or folding becomes the state's
    ``reader_problem`` (shown, and logged once) and the next poll tries again.

    Args:
        state: the state to fold into (usually empty: the whole log is replayed first).
        events_path: the run's ``events.jsonl``.
        runner: the dashboard's runner control for this run.
        post: called from this thread with every new state (``post_message`` in the app).
        cancelled: polled between reads; the loop ends once it returns True.
        interval: seconds between polls.
        clock: wall clock, for the time of a discovered crash.
    """
    watch = _Watch(EventFollower(events_path, skip_dead_batches), runner, clock)
    first = True
    while not cancelled():
        try:
            state, changed = watch.poll(state)
        except Exception as exc:  # the monitor never dies: a failure is a state to show
            state = runstate.reader_problem(
                state, f"the event reader failed ({type(exc).__name__}: {exc}); it keeps trying", clock())
            changed = True
        if changed or first:
            post(state)
            first = False
        if not watch.follower.behind:
            time.sleep(interval)


class _Watch:
    """One poll of the follower: new events, the reader's problems, the runner's exit or loss."""

    def __init__(self, follower: EventFollower, runner: Runner, clock: Callable[[], float]):
        self.follower = follower
        self.runner = runner
        self.clock = clock
        self.watched = None
        self.reported = False
        self.suspect = 0

    def poll(self, state: runstate.RunState) -> tuple[runstate.RunState, bool]:
        """The state after this poll, and whether it changed."""
        follower, runner, clock = self.follower, self.runner, self.clock
        events, bad = follower.read_new()
        changed = bool(events or bad)
        if changed:
            state = runstate.fold(state, events, bad)
        problem = follower.problem or ""
        if problem != state.reader_problem:
            state, changed = runstate.reader_problem(state, problem, clock()), True
        process = runner.process
        if process is not self.watched:
            self.watched, self.reported = process, False
        code = runner.poll()
        if code is not None and not self.reported:
            self.reported = True
            # Catch the last lines it wrote before telling its exit.
            more, more_bad = follower.read_new()
            if more or more_bad:
                state = runstate.fold(state, more, more_bad)
            level = "info" if code in (0, 130, 143) else ("warning" if code == 1 else "error")
            state = runstate.note(state, level, f"runner exited with code {code}", clock())
            if code not in (0, 1, 130, 143) and state.running_stage() is None:
                for line in runner.log_tail(10):
                    state = runstate.note(state, "info", f"  | {line}", clock())
            changed = True
        if state.running_stage() is not None and not events and not runner.is_busy():
            # One more empty poll after the lock is free: a runner flushes its last events before
            # it lets go of the lock, so a stage still running now has lost its runner.
            self.suspect += 1
            if self.suspect >= 2:
                reason = (f"runner exited with code {code} without finishing the stage" if code is not None
                          else "runner is gone (no process holds the run's lock)")
                lost = runstate.runner_lost(state, reason, runner.log_tail(), clock())
                changed = changed or lost is not state  # a shard that did its share waits: unchanged
                state = lost
                self.suspect = 0
        else:
            self.suspect = 0
        return state, changed


PLAIN_POLL_S = 0.5
"""How often :func:`follow_plain` reads the log while a runner works (lines, not a screen: no hurry)."""
PLAIN_EXIT = {runstate.DONE: 0, runstate.PENDING: 0, runstate.FAILED: 1, runstate.INTERRUPTED: 130}
"""Exit code of :func:`follow_plain` by how the run ended (as ``--resume`` would have exited)."""


def follow_plain(run: RunDir, stream: IO[str] | None = None, interval: float = PLAIN_POLL_S) -> int:
    """Print ``run``'s events from its start through the headless console renderer, in plain lines,
    and follow them while a runner works on the run; return once none does.

    For logs, ``TERM=dumb``, screen readers and scripts: the same lines ``--run-all --plain`` prints
    (progress throttled, every stage's start and end, each epoch, warnings, the summary table).

    Args:
        run: the run to follow.
        stream: where the lines go (default stdout).
        interval: seconds between reads while the runner works.

    Returns:
        0 when the run ended done (or nothing ran), 1 when a stage failed or its runner went away
        without a word (a crash, a kill), 130 when it was stopped or Ctrl-C ended the following.
    """
    from .console import ConsoleRenderer

    console = ConsoleRenderer(stream, interactive=False)
    follower = EventFollower(run.events_path)  # every event: the renderer thins progress itself
    runner = Runner(run)
    state = runstate.new_state()
    problem: str | None = None
    console.note(f"following {run.path} in plain text (Ctrl-C stops following; the run goes on)")
    try:
        while True:
            events, bad = follower.read_new()
            for event in events:
                console(event)
            for number in bad:
                console.note(f"events.jsonl line {int(number)}: {getattr(number, 'reason', 'malformed')}, skipped")
            state = runstate.fold(state, events)
            if follower.problem != problem:
                problem = follower.problem
                if problem:
                    console.note(f"cannot follow: {problem}")
            if events or follower.behind:
                continue
            if runner.lock_holder() is None:
                break  # no runner works on the run: what the log holds is all there will be
            time.sleep(interval)
    except KeyboardInterrupt:
        console.note("stopped following; the run goes on")
        console.close()
        return 130
    running = state.running_stage()
    if running:  # the events say it runs, and no runner is left: a crash or a kill -9
        console.note(f"[{running}] the runner is gone without a last word (see {run.path / 'runner.log'})")
        state = runstate.runner_lost(state, "runner gone")
    console.close()
    return PLAIN_EXIT.get(state.run_status, 1)
