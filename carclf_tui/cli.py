"""``carclf-tui``: the dashboard, or with ``--run-all``/``--stage`` the same job headless.

Exit codes: 0 done, 1 a stage failed, 2 bad config or arguments, 130 SIGINT, 143 SIGTERM,
129 SIGHUP. Importing this module imports neither TensorFlow nor Textual.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from carclf_core import config as config_mod
from carclf_core.cluster import TF_CONFIG, Cluster, Shard, cluster_from_env, multi_worker_wanted, slurm_tf_config
from carclf_core.display import printable
from carclf_core.errors import CarclfError, RunError
from carclf_core.eventlog import JsonlSink
from carclf_core.events import ConfigChanged, LogLine
from carclf_core.registry import STAGE_NAMES
from carclf_core.runs import RunDir, create_run, latest_run, open_run

from .args import SafeParser

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# Stages whose code loads TensorFlow: the runner loads it first, with its start-up lines captured.
TENSORFLOW_STAGES = frozenset({"prefilter", "train", "evaluate"})
HELP_EPILOG = """\
commands on a run (each has its own --help):
  carclf-tui predict RUN PHOTO|DIR ...  classify photos with RUN's model
  carclf-tui explain RUN PHOTO          where the model looked, as maps

examples:
  carclf-tui --demo --run-all           the whole job on the demo data
  carclf-tui --demo                     the dashboard on the demo data
  carclf-tui --run-all --set data.dir=/data/cars
  carclf-tui --resume RUN               bring RUN up to date
  carclf-tui --attach RUN               the dashboard on RUN

exit codes: 0 done, 1 a stage failed, 2 bad config or arguments, 130 Ctrl-C,\n143 SIGTERM, 129 SIGHUP"""
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}


def build_parser() -> argparse.ArgumentParser:
    parser = SafeParser(
        prog="carclf-tui",
        description="Car-model image classification by transfer learning: a terminal dashboard\n"
                    "and a headless pipeline (index, prefilter, split, train, evaluate).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=HELP_EPILOG)
    parser.add_argument("--config", type=Path, help="YAML config file (default: built-in defaults)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one key, e.g. --set train.patience=5 (repeatable)")
    parser.add_argument("--demo", action="store_true",
                        help="use the embedded demo dataset (generated once into a cache folder)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--run-all", action="store_true", help="run every stage headless, then exit")
    mode.add_argument("--stage", action="append", choices=STAGE_NAMES, metavar="STAGE",
                      help=f"run only this stage headless (repeatable; one of {', '.join(STAGE_NAMES)})")
    parser.add_argument("--resume", metavar="RUN",
                        help="continue RUN (path or folder name under run.root): its unfinished stages, "
                             "or those named by --stage")
    parser.add_argument("--attach", metavar="RUN", help="open the dashboard on RUN (running or finished)")
    parser.add_argument("--plain", action="store_true",
                        help="headless output as plain lines even on a terminal; with --attach RUN (or with no "
                             "stage to run: the newest run), follow that run in plain lines until no runner works "
                             "on it, drawing no screen")
    parser.add_argument("--shard", type=_shard, metavar="I/N",
                        help="with --resume RUN --stage prefilter: score share I of N (1-based) into RUN, "
                             "beside the other shards on other machines; the last to finish writes the decision; "
                             "auto: the share SLURM gives this task (array job or srun task)")
    return parser


def _shard(text: str) -> Shard:
    try:
        return Shard.from_slurm() if text.strip() == "auto" else Shard.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def resolve_config(args: argparse.Namespace) -> config_mod.Config:
    base = None
    if args.demo:
        from carclf_core import demo

        base = demo.demo_overrides(demo.ensure_demo_data(progress=_demo_progress))
    return config_mod.load(args.config, args.overrides, base=base)


def _demo_progress(done: int, total: int) -> None:
    """The first start generates the demo data (a few seconds): say so rather than show nothing."""
    if done == 0:
        print("carclf-tui: generating the demo data set (first start only) ...", file=sys.stderr, flush=True)
    print(f"\r  class {done + 1} of {total}", end="\n" if done == total - 1 else "", file=sys.stderr, flush=True)


class _SignalStop:
    """Turn SIGINT/SIGTERM/SIGHUP into a cooperative stop; a second SIGINT or SIGTERM ends the process at once.

    The first signal sets the stage's cancel flag: it stops at its next batch or chunk and keeps what
    it finished. The second must work even while the main thread is blocked in C (a read of a file
    that became a FIFO, a wait inside TensorFlow), where a Python signal handler never gets to run:
    the C-level handler writes the signal number into a pipe (``signal.set_wakeup_fd``), and a watcher
    thread reading that pipe records the stage as interrupted through ``abort`` (``state.json`` and
    the event log) and ends the process with ``os._exit`` (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, ctx, abort: Callable[[str], None]):
        self.ctx = ctx
        self.abort = abort
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}
        self._pipe: tuple[int, int] | None = None
        self._previous_wakeup = -1
        self._watcher: threading.Thread | None = None

    def __enter__(self) -> _SignalStop:
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)  # set_wakeup_fd requires it: a signal handler must never block
        self._pipe = (read_end, write_end)
        self._previous_wakeup = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        for signum in SIGNAL_EXIT:
            self.previous[signum] = signal.signal(signum, self._handle)
        self._watcher = threading.Thread(target=self._watch, args=(read_end,), name="second signal", daemon=True)
        self._watcher.start()
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._previous_wakeup)
        if self._pipe is not None:
            os.close(self._pipe[1])  # the watcher reads the end of the pipe and returns
            if self._watcher is not None:
                self._watcher.join(timeout=5)
            os.close(self._pipe[0])
            self._pipe = None

    def _first(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum
            self.ctx.cancel_reason = signal.Signals(signum).name
        self.ctx.cancel.set()

    def _handle(self, signum: int, frame) -> None:
        # The main thread's part, when it gets to run: the cooperative stop. A second signal is the
        # watcher's, which sees it whether or not this handler runs.
        self._first(signum)

    def _watch(self, read_end: int) -> None:
        seen = 0
        while data := os.read(read_end, 64):
            for signum in data:
                if signum not in SIGNAL_EXIT:
                    continue
                seen += 1
                if seen == 1:
                    self._first(signum)  # the main thread may be blocked where its handler cannot run
                elif signum in (signal.SIGINT, signal.SIGTERM):
                    self._exit_now(signum)

    def _exit_now(self, signum: int) -> None:
        name = signal.Signals(signum).name
        try:
            os.write(2, f"carclf-tui: second {name}: stopping at once\n".encode())
            self.abort(f"{name} twice: stopped at once, without waiting for the current batch or read")
        finally:
            os._exit(SIGNAL_EXIT[signum])


def _record_abort(run: RunDir, jsonl: JsonlSink, ctx, reason: str) -> None:
    """What a second signal leaves behind before the process ends: the running stage marked interrupted
    in ``state.json`` and the event log, and the run's end. Called from the watcher thread while the
    main thread may be stuck anywhere, so it only writes (each write atomic or appended whole)."""
    from carclf_core.events import RunFinished, StageInterrupted, StageStatus

    last: list = [RunFinished(status=StageStatus.INTERRUPTED)]
    stage = ctx.stage
    try:
        if stage and run.read_state()["stages"].get(stage, {}).get("status") == StageStatus.RUNNING:
            run.update_stage_state(stage, status=StageStatus.INTERRUPTED, finished=time.time(), summary=reason)
            last.insert(0, StageInterrupted(stage=stage, reason=reason))
    finally:
        jsonl.append_last(last)


def _refuse_changing_running_stage(run: RunDir, old: config_mod.Config, new: config_mod.Config) -> None:
    """A ``--set`` may not change the config of the stage a runner is working on right now."""
    from carclf_core.provenance import LINEAGES

    stages = run.read_state().get("stages", {})
    running = [name for name, entry in stages.items() if entry.get("status") == "running"]
    if not running or not run.is_locked():
        return
    before, after = LINEAGES[running[0]].config_values(old), LINEAGES[running[0]].config_values(new)
    for key, value in after.items():
        if before.get(key) != value:
            raise config_mod.ConfigError(key, f"cannot change it while the {running[0]} stage is running",
                                         "stop it first (s in the dashboard, or Ctrl-C in its terminal)")


def run_headless(args: argparse.Namespace) -> int:
    # the pipeline (pandas, and TensorFlow inside the stages) loads only for headless work, so the
    # dashboard's first frame does not wait for it
    from carclf_core.pipeline import StageContext
    from carclf_core.registry import pending_stages, run_all

    if args.shard is not None and (not args.resume or args.stage != ["prefilter"] or args.overrides):
        _say("--shard I/N shares the prefilter of a run between machines: use it with --resume RUN "
             "--stage prefilter (and no --set: every shard reads the run's config)")
        return EXIT_USAGE
    if args.shard is None and (slurm := slurm_tf_config()):
        os.environ[TF_CONFIG] = slurm  # as if the user had written it: the train stage and TensorFlow read it
    cluster = cluster_from_env()
    if cluster is not None and not cluster.chief:
        return _run_worker(args, cluster)
    changed_config = None
    if args.resume:
        run = open_run(args.resume, root=config_mod.load(args.config, args.overrides).run.root)
        config = run.load_config()
        if args.overrides:
            # a relative path given on resume means the same as at creation: from here, made absolute
            changed_config = config_mod.resolve_paths(config_mod.load(run.config_path, args.overrides))[0]
            _refuse_changing_running_stage(run, config, changed_config)
        names = args.stage or None
    else:
        names = args.stage or list(STAGE_NAMES)
        new_config = resolve_config(args)
        if "index" in names:
            _check_data_dir(new_config)  # a mistyped folder is a config error, before any run folder is made
        run = create_run(new_config)
        config = run.load_config()  # its paths made absolute, as every later resume reads them
    from .console import ConsoleRenderer

    console = ConsoleRenderer(interactive=False if args.plain else None)
    try:
        with run.lock(shared=args.shard is not None) as completed:
            jsonl = JsonlSink(run.events_path)

            def emit(event) -> None:
                jsonl(event)
                if args.shard is not None:
                    jsonl.flush()  # other shards append to the same log: whole lines, one write each
                console(event)

            if jsonl.torn_line is not None:
                emit(LogLine(level="warning", message=f"{run.events_path}: line {jsonl.torn_line} was cut "
                             "short by an earlier runner that was killed; readers skip it"))
            for what in completed:  # the run held parts of two decisions until now
                emit(LogLine(level="warning", message=f"{what} was cut short; finished it now from its journal"))
            if changed_config is not None:
                changes = run.update_config(changed_config, source="--set on resume")
                config = changed_config
                if changes:  # the console prints the event: once
                    emit(ConfigChanged(changes=changes, source="--set on resume"))
            ctx = StageContext(config=config, run=run, emit=emit, shard=args.shard)
            skip_fresh = names is None
            names = names if names is not None else pending_stages(run, config)
            try:
                if not names:
                    _say(f"{run.name}: up to date (every stage done, none stale)")
                    status = "done"
                else:
                    with _SignalStop(ctx, functools.partial(_record_abort, run, jsonl, ctx)) as stop:
                        if TENSORFLOW_STAGES.intersection(names):
                            load_tensorflow_quietly(emit)
                        joined = _start_multi_worker(config, cluster, names, emit)
                        status = run_all(ctx, names, skip_fresh=skip_fresh) if joined else "failed"
            finally:
                jsonl.close()
                console.close()
    except RunError as exc:
        _say(exc)
        return EXIT_USAGE
    if status == "interrupted":
        return SIGNAL_EXIT.get(stop.signum or signal.SIGINT, 130)
    # running: this shard did its share, another finishes the stage
    return EXIT_OK if status in ("done", "running") else EXIT_FAILED


def _check_data_dir(config: config_mod.Config) -> None:
    folder = Path(config.data.dir).expanduser()
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "no such folder"
        raise config_mod.ConfigError("data.dir", f"{folder}: {what}",
                                     "give the folder of photos: --set data.dir=/path/to/photos (or --demo)")


def load_tensorflow_quietly(emit) -> None:
    """Load TensorFlow with its C++ start-up lines kept off the terminal: they go to the run's event
    log as ``debug`` lines; what reports a problem is shown once, as a warning."""
    from carclf_core.quiet import import_tensorflow, worth_showing

    try:
        _, lines = import_tensorflow()
    except ImportError:
        return  # the stage itself says TensorFlow is missing, and which extra installs it
    for line in lines:
        emit(LogLine(level="debug", message=f"TensorFlow start-up: {line}"))
    for line in worth_showing(lines):
        emit(LogLine(level="warning", message=f"TensorFlow said at start-up: {line}"))


def _start_multi_worker(config: config_mod.Config, cluster: Cluster | None, names: Sequence[str], emit) -> bool:
    """On the chief of several machines, join them before the first stage: TensorFlow sets up the
    collectives of multi-machine training once a process, before any other TensorFlow work (an
    earlier stage's, such as the prefilter's). The workers wait for the chief at the start of the
    train stage. Returns False, having said why, when the machines could not be joined."""
    if "train" in names[1:] and cluster is not None and multi_worker_wanted(config.train.distribute, cluster):
        from carclf_core.keras_env import distribution

        try:
            distribution(config.train, cluster)
        except CarclfError as exc:
            emit(LogLine(level="error", message=f"train: {exc}", stage="train"))
            return False
    return True


def _run_worker(args: argparse.Namespace, cluster: Cluster) -> int:
    """A training worker (a ``TF_CONFIG`` task other than the chief): it trains together with the
    chief, which owns the run (lock, events, state, checkpoints); the worker takes no lock and writes
    only ``<run>/worker-<rank>.log`` (its events, as JSON lines)."""
    from carclf_core.cluster import WORKER_LOG_LEAVES_OUT, worker_log_path
    from carclf_core.pipeline import StageContext
    from carclf_core.registry import run_stage

    from .console import ConsoleRenderer

    if not args.resume or (args.stage or ["train"]) != ["train"] or args.overrides or args.demo:
        _say(f"TF_CONFIG makes this process {cluster.name()}: a worker only trains, with the chief; run "
             "`carclf-tui --resume RUN --stage train` (the chief runs the other stages and takes --set)")
        return EXIT_USAGE
    run = open_run(args.resume, root=config_mod.load(args.config).run.root)
    config = run.load_config()
    if not multi_worker_wanted(config.train.distribute, cluster):
        raise config_mod.ConfigError("train.distribute", f"{config.train.distribute}: this run does not train on "
                                     f"several machines, but TF_CONFIG makes this process {cluster.name()}",
                                     "set it to auto or multi_worker on the chief (--set), or unset TF_CONFIG")
    log = JsonlSink(worker_log_path(run.path, cluster.rank))
    console = ConsoleRenderer(interactive=False if args.plain else None)

    def emit(event) -> None:
        if event.kind not in WORKER_LOG_LEAVES_OUT:
            log(event)
        console(event)

    def record_abort(reason: str) -> None:
        log.append_last([LogLine(level="error", message=f"{cluster.name()}: {reason}", stage="train")])

    ctx = StageContext(config=config, run=run, emit=emit)
    try:
        with _SignalStop(ctx, record_abort) as stop:
            load_tensorflow_quietly(emit)
            status = run_stage(ctx, "train", owner=False)
    finally:
        log.close()
        console.close()
    if status == "interrupted":
        code = SIGNAL_EXIT.get(stop.signum or signal.SIGINT, 130)
    else:
        code = EXIT_OK if status == "done" else EXIT_FAILED
    # At exit TensorFlow's coordination agent says goodbye to the chief's coordination service; when
    # the chief ended first that service is gone and the process hangs in C++ after a heartbeat
    # error (seen: over two minutes, never exiting). Everything is written: leave without TensorFlow's
    # teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_dashboard(args: argparse.Namespace) -> int:
    config = resolve_config(args)
    run: RunDir | None
    if args.attach:
        run = open_run(args.attach, root=config.run.root)
    else:
        # --demo always shows a demo run (the newest, or a new one), never another run of the folder
        run = latest_run(config.run.root, name=config.run.name if args.demo else None)
    dumb = os.environ.get("TERM", "") == "dumb"
    if args.plain or dumb:
        from .follow import follow_plain

        if dumb and not args.plain:
            _say("TERM=dumb: this terminal cannot draw the dashboard; following the run in plain text "
                 "instead (carclf-tui --attach RUN --plain; --run-all or --resume RUN run stages)")
        if run is None:
            _say(f"no run to follow under {config.run.root}; start one with --run-all")
            return EXIT_USAGE
        return follow_plain(run)
    from . import termprobe

    # the terminal's answers must arrive before Textual reads the keyboard: asked now, they come while
    # Textual and the dashboard are imported
    probe = termprobe.start()
    from .app import run_app  # Textual is imported only for the dashboard

    # no run named: the picker opens over the newest run when the folder holds several
    return run_app(config=config, run=run, pick=not (args.attach or args.demo), probe=probe)


def tolerant_output() -> None:
    """Make stdout and stderr escape what their encoding cannot hold instead of raising.

    A console that cannot encode its own characters (``PYTHONIOENCODING=ascii``, a C locale, an old
    terminal) made the first ``Škoda`` or ``⏎`` raise UnicodeEncodeError inside the runner, which
    ended the stage and left ``state.json`` saying "running". Written as ``\\u0160koda`` instead, the
    output stays readable and the stage goes on (Rich also draws its tables in ASCII there).
    """
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)  # a replaced stream (tests, pipes) may lack it
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    tolerant_output()
    if argv and argv[0] in ("predict", "explain"):  # use a run's exported model: carclf_tui/use.py
        from .use import main as use_main

        return use_main(argv)
    args = build_parser().parse_args(argv)
    try:
        if args.run_all or args.stage or (args.resume and not args.attach):
            return run_headless(args)
        return run_dashboard(args)
    except config_mod.ConfigError as exc:
        _say(f"config error: {exc}")
        return EXIT_USAGE
    except RunError as exc:
        _say(exc)
        return EXIT_USAGE
    except OSError as exc:  # a run folder or file the system refuses (permissions, a full or read-only disk)
        _say(exc)
        return EXIT_USAGE


def _say(message: object) -> None:
    """One line on stderr; it may quote paths and values from outside, so it is made display-safe."""
    print(printable(f"carclf-tui: {message}"), file=sys.stderr)


def entry_point() -> None:
    code = main()
    if "tensorflow" in sys.modules:
        # Every file is written and closed by now; TensorFlow's teardown at interpreter exit is not
        # needed and takes seconds (3.2 s after a small fit, measured): the process leaves without it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry_point()
