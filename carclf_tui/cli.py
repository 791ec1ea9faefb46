"""``carclf-tui``: the dashboard, or with ``--run-all``/``--stage`` the same job headless.

Exit codes: 0 done, 1 a stage failed, 2 bad config or arguments, 130 SIGINT, 143 SIGTERM,
129 SIGHUP. Importing this module imports neither TensorFlow nor Textual.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from carclf_core import config as config_mod
from carclf_core.errors import RunError
from carclf_core.eventlog import JsonlSink
from carclf_core.events import LogLine
from carclf_core.registry import STAGE_NAMES
from carclf_core.runs import RunDir, create_run, latest_run, open_run

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="carclf-tui",
        description="Car-model image classification by transfer learning: a terminal dashboard and a "
                    "headless pipeline (index, prefilter, split, train, evaluate).")
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
    parser.add_argument("--plain", action="store_true", help="headless output as plain lines even on a terminal")
    return parser


def resolve_config(args: argparse.Namespace) -> config_mod.Config:
    base = None
    if args.demo:
        from carclf_core import demo

        base = demo.demo_overrides(demo.ensure_demo_data())
    return config_mod.load(args.config, args.overrides, base=base)


class _SignalStop:
    """Turn SIGINT/SIGTERM/SIGHUP into a cooperative stop; a second SIGINT stops at once."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.signum: int | None = None
        self.previous = {}

    def __enter__(self) -> _SignalStop:
        for signum in SIGNAL_EXIT:
            self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt(signal.Signals(signum).name)
        self.signum = signum
        self.ctx.cancel_reason = signal.Signals(signum).name
        self.ctx.cancel.set()


def run_headless(args: argparse.Namespace) -> int:
    # the pipeline (pandas, and TensorFlow inside the stages) loads only for headless work, so the
    # dashboard's first frame does not wait for it
    from carclf_core.pipeline import StageContext
    from carclf_core.registry import pending_stages, run_all

    if args.resume:
        try:
            run = open_run(args.resume, root=config_mod.load(args.config, args.overrides).run.root)
        except RunError as exc:
            print(f"carclf-tui: {exc}", file=sys.stderr)
            return EXIT_USAGE
        config = run.load_config()
        names = args.stage or pending_stages(run)
    else:
        run = create_run(resolve_config(args))
        config = run.load_config()  # its paths made absolute, as every later resume reads them
        names = args.stage or list(STAGE_NAMES)
    from .console import ConsoleRenderer

    console = ConsoleRenderer(interactive=False if args.plain else None)
    try:
        with run.lock():
            jsonl = JsonlSink(run.events_path)

            def emit(event) -> None:
                jsonl(event)
                console(event)

            ctx = StageContext(config=config, run=run, emit=emit)
            if jsonl.torn_line is not None:
                emit(LogLine(level="warning", message=f"{run.events_path}: line {jsonl.torn_line} was cut "
                             "short by an earlier runner that was killed; readers skip it"))
            try:
                with _SignalStop(ctx) as stop:
                    status = run_all(ctx, names) if names else "done"
            finally:
                jsonl.close()
                console.close()
    except RunError as exc:
        print(f"carclf-tui: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if status == "interrupted":
        return SIGNAL_EXIT.get(stop.signum or signal.SIGINT, 130)
    return EXIT_OK if status == "done" else EXIT_FAILED


def run_dashboard(args: argparse.Namespace) -> int:
    from .app import run_app  # Textual is imported only for the dashboard

    config = resolve_config(args)
    run: RunDir | None
    if args.attach:
        run = open_run(args.attach, root=config.run.root)
    else:
        run = latest_run(config.run.root)
    return run_app(config=config, run=run, demo=args.demo, config_path=args.config, overrides=args.overrides)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.run_all or args.stage or (args.resume and not args.attach):
            return run_headless(args)
        return run_dashboard(args)
    except config_mod.ConfigError as exc:
        print(f"carclf-tui: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RunError as exc:
        print(f"carclf-tui: {exc}", file=sys.stderr)
        return EXIT_USAGE


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
