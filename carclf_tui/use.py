"""``carclf-tui predict`` and ``carclf-tui explain``: use a run's exported model on your photos.

Exit codes as for the rest of the CLI: 0 done (files that could not be classified are named and
skipped), 1 nothing could be classified, 2 a bad run or arguments.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.cells import cell_len
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from carclf_core.display import printable
from carclf_core.errors import CarclfError, DatasetError
from carclf_core.predict import Prediction
from carclf_core.runs import open_run

from .args import SafeParser

EXIT_OK, EXIT_NONE, EXIT_USAGE = 0, 1, 2
PHOTO_SHARE = 0.45
"""Share of the terminal's width the photo column may take in ``predict``'s table; a longer path
keeps its end (the file name) and loses its start."""


def _at_least_one(text: str) -> int:
    """argparse type: a whole number of 1 or more (``--top-k 0`` listed nothing and then failed)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {ascii(text)}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value


def _say(console: Console, text: object) -> None:
    """One line of text from outside (paths, labels, messages), escaped and never parsed as markup."""
    console.print(Text(printable(text)), soft_wrap=True)


def _shown_path(path: str) -> str:
    """A path as the table shows it: relative to the working folder when it lies below it, else as
    given (an absolute path of 100 characters wrapped over four lines of an 80-column table)."""
    if os.path.isabs(path):
        relative = os.path.relpath(path)
        if not relative.startswith(".."):
            return relative
    return path


def _keep_end(text: str, cells: int) -> str:
    """``text`` cut from the start to at most ``cells`` terminal cells, marked with ``…``: the end of
    a path is the file name the user looks for."""
    if cell_len(text) <= cells:
        return text
    kept, used = [], 1
    for char in reversed(text):
        width = cell_len(char)
        if used + width > cells:
            break
        kept.append(char)
        used += width
    return "\u2026" + "".join(reversed(kept))


def _parser(command: str) -> argparse.ArgumentParser:
    parser = SafeParser(prog=f"carclf-tui {command}")
    parser.add_argument("run", help="the run (path, or folder name under runs/) whose exported model to use")
    parser.add_argument("--runs", default="runs", help="where runs live, for a run given by name (default: runs)")
    if command == "predict":
        parser.description = "Classify photos with a run's exported model, prepared exactly as training did."
        parser.add_argument("targets", nargs="+", type=Path, help="image files and folders (walked recursively)")
        parser.add_argument("--top-k", type=_at_least_one, default=5, help="classes listed per photo (default 5)")
        parser.add_argument("--batch-size", type=_at_least_one, default=32, help="images a model call (default 32)")
        parser.add_argument("--prefilter", action="store_true",
                            help="first ask the run's prefilter model whether each photo shows a car")
        out = parser.add_mutually_exclusive_group()
        out.add_argument("--json", action="store_true", help="one JSON object a line, for scripts")
        out.add_argument("--csv", action="store_true", help="CSV with a header, for scripts")
    else:
        parser.description = "Explain one prediction: occlusion sensitivity and Grad-CAM, saved as PNG overlays."
        parser.add_argument("image", type=Path)
        parser.add_argument("--method", choices=("occlusion", "gradcam", "both"), default="both")
        parser.add_argument("--class", dest="class_name", help="explain this class (default: the predicted one)")
        parser.add_argument("--no-show", action="store_true", help="do not draw the maps in the terminal")
    return parser


def main(argv: Sequence[str]) -> int:
    command, rest = argv[0], list(argv[1:])
    args = _parser(command).parse_args(rest)
    try:
        run = open_run(args.run, root=args.runs)
        _load_tensorflow_quietly(command)
        from carclf_core.export import load_exported  # Keras

        model, contract = load_exported(run)
        return _predict(args, run, model, contract) if command == "predict" else _explain(args, run, model, contract)
    except CarclfError as exc:
        print(printable(f"carclf-tui {command}: {exc}"), file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # a run a teammate made, whose files this user may not read
        where = exc.filename if exc.filename is not None else args.run
        print(printable(f"carclf-tui {command}: {where}: {exc.strerror or exc}"), file=sys.stderr)
        return EXIT_USAGE


def _load_tensorflow_quietly(command: str) -> None:
    """TensorFlow's start-up notices stay off the terminal; what reports a problem is shown once."""
    from carclf_core.quiet import import_tensorflow, worth_showing

    try:
        _, lines = import_tensorflow()
    except ImportError:
        return  # load_exported says which extra installs TensorFlow
    for line in worth_showing(lines):
        print(printable(f"carclf-tui {command}: TensorFlow said at start-up: {line}"), file=sys.stderr)


def _predict(args, run, model, contract) -> int:
    from carclf_core.predict import car_probabilities, image_files, predict

    files, problems = image_files(args.targets)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    if not files:
        _say(err, f"carclf-tui predict: no image files in {', '.join(map(str, args.targets))}")
        return EXIT_NONE
    cars: dict[int, tuple[float, bool]] | None = None
    if args.prefilter:
        if not contract.prefilter:
            _say(err, "carclf-tui predict: the run has no prefilter (prefilter.mode was off)")
            return EXIT_USAGE
        cars = car_probabilities(contract, files, args.batch_size)
    with Progress(TextColumn("predict"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("predict", total=len(files))
        answers = list(predict(model, contract, files, args.batch_size, args.top_k,
                               progress=lambda done, total: bar.update(task, completed=done)))
    if cars is not None:
        answers = [_with_car_check(a, cars.get(row), contract.prefilter) for row, a in enumerate(answers)]
    answers = problems + answers
    _write(args, answers)
    failed = [a for a in answers if a.error and not a.error.startswith("not a car")]
    for a in failed:
        _say(err, f"skipped {a.path}: {a.error}")
    return EXIT_OK if len(failed) < len(answers) else EXIT_NONE


def _with_car_check(answer, car: tuple[float, bool] | None, rule: dict) -> Prediction:
    """The answer with the prefilter's word on it: its car probability, or "not a car"."""
    if answer.error or car is None:
        return answer  # a file neither model could decode keeps its reason
    probability, is_car = car
    if not is_car:
        return Prediction(answer.path, (), f"not a car: {probability:.2f} ({rule['rule']} threshold "
                                           f"{rule['threshold']})", probability)
    return dataclasses.replace(answer, car_prob=probability)


def _write(args, answers) -> None:
    if args.json:
        for a in answers:
            print(json.dumps({"path": a.path, "top": [{"class": c, "probability": p} for c, p in a.top],
                              "error": a.error or None, "car_probability": a.car_prob}))
        return
    if args.csv:
        # a terminal obeys escapes in names and labels; a file or a pipe gets them as they are
        cell = printable if sys.stdout.isatty() else str
        writer = csv.writer(sys.stdout)
        k = max((len(a.top) for a in answers), default=0)
        writer.writerow(["path", "error", "car_probability"] + [f"{h}{i + 1}" for i in range(k)
                                                                 for h in ("class", "probability")])
        for a in answers:
            row = [cell(a.path), cell(a.error), "" if a.car_prob is None else f"{a.car_prob:.6f}"]
            for c, p in a.top:
                row += [cell(c), f"{p:.6f}"]
            writer.writerow(row)
        return
    _table(answers, with_car=args.prefilter)


def _table(answers: Sequence[Prediction], with_car: bool) -> None:
    """The answers as a table of one line a photo that fits the terminal: every name escaped
    (:func:`printable`) and built as ``Text``; the path cut from its start, the classes at their end,
    by terminal cells (a wide letter takes two)."""
    console = Console(highlight=False)
    rows = []
    for a in answers:
        best = "" if a.error else printable(a.top[0][0])
        rows.append((printable(_shown_path(a.path)), printable(a.error) if a.error else best,
                     "" if a.error else f"{a.top[0][1]:.3f}", "" if a.car_prob is None else f"{a.car_prob:.2f}",
                     "" if a.error else ", ".join(f"{printable(c)} {q:.2f}" for c, q in a.top[1:])))
    # the fixed columns first, then the prediction and the photo share the rest; next best gets what is left
    gaps = 2 * (4 if with_car else 3)
    free = console.width - gaps - len("probability") - (len("car ") + 2 if with_car else 0)
    prediction = min(max([len("prediction")] + [cell_len(r[1]) for r in rows]), 28, max(free // 3, 10))
    photo = min(max([len("photo")] + [cell_len(r[0]) for r in rows]), max(int(free * PHOTO_SHARE), 12))
    rest = max(free - photo - prediction, len("next best"))
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("photo", no_wrap=True, width=photo)
    table.add_column("prediction", no_wrap=True, width=prediction)
    table.add_column("probability", justify="right", no_wrap=True)
    if with_car:
        table.add_column("car", justify="right", no_wrap=True)  # the prefilter's car probability, kept ones too
    table.add_column("next best", no_wrap=True, width=rest)
    for path, said, probability, car, others in rows:
        cells = [Text(_keep_end(path, photo)), _cut(said, prediction), Text(probability)]
        table.add_row(*cells, *([Text(car)] if with_car else []), _cut(others, rest))
    console.print(table)


def _cut(text: str, cells: int) -> Text:
    cut = Text(text)
    cut.truncate(cells, overflow="ellipsis")
    return cut


def _explain(args, run, model, contract) -> int:
    from carclf_core.explain import explain

    err = Console(stderr=True, highlight=False)
    if not args.image.is_file():
        _say(err, f"carclf-tui explain: {args.image}: no such file")
        return EXIT_USAGE
    class_index = None
    if args.class_name is not None:
        if args.class_name not in contract.classes:
            _say(err, f"carclf-tui explain: --class {args.class_name!r} is not one of the run's "
                      f"{len(contract.classes)} classes")
            return EXIT_USAGE
        class_index = contract.classes.index(args.class_name)
    methods = ("occlusion", "gradcam") if args.method == "both" else (args.method,)
    try:
        done = explain(model, contract, args.image, run.path / "explain", methods, class_index)
    except DatasetError as exc:  # the photo refused before decoding (the pixel gate)
        _say(err, f"carclf-tui explain: {exc}")
        return EXIT_NONE
    except CarclfError as exc:
        _say(err, f"carclf-tui explain: {exc}")
        return EXIT_USAGE
    except Exception as exc:  # a photo that does not decode
        _say(err, f"carclf-tui explain: {args.image}: cannot explain it ({type(exc).__name__}: {exc})")
        return EXIT_NONE
    console = Console(highlight=False)
    _say(console, explained_line(done, contract.classes))  # class names come from outside: escaped
    for method, path in done.maps.items():
        _say(console, f"{method}: {path}")  # a path printed whole, never broken across lines
    _say(console, f"all side by side: {done.panel}")
    if not args.no_show and console.is_terminal:
        draw_explanation(console, done)
    return EXIT_OK


def explained_line(done, classes: Sequence[str]) -> str:
    """``explained: Audi_A4, probability 0.873 (the prediction)``, or for another class asked for,
    what the model predicts instead."""
    line = f"explained: {classes[done.class_index]}, probability {done.probability:.3f}"
    if done.class_index == done.predicted:
        return line + " (the prediction)"
    return line + f"; the model predicts {classes[done.predicted]} ({done.predicted_probability:.3f})"


def draw_explanation(console: Console, done) -> None:
    """The photo and each map in the terminal at a size a person can read, each under its title,
    then the colour scale: side by side where the terminal is wide enough for each to keep 60
    columns, else one under another, each as wide as the terminal and no taller than it."""
    from rich.text import Text
    from textual_image.renderable import Image as TerminalImage

    from carclf_core.explain import TITLES, colour_scale

    pictures = done.pictures
    if not pictures:
        return
    w, h = next(iter(pictures.values())).size
    rows = max(8, console.height - 3)  # a title line and the prompt keep their rows
    # a cell is about twice as high as wide: a picture of h/w takes width * h / w / 2 rows
    fit = max(20, int(rows * 2 * w / h))
    side_by_side = console.width >= 60 * len(pictures) + 2 * (len(pictures) - 1)
    width = min(fit, (console.width - 2 * (len(pictures) - 1)) // len(pictures) if side_by_side else console.width)
    blocks = []
    for name, picture in pictures.items():
        title = Text(TITLES.get(name, name), style="bold", no_wrap=True, overflow="ellipsis")
        # both sides given: the renderable's own guess of a cell's shape squashed the pictures
        blocks.append((title, TerminalImage(picture, width=width, height=max(1, round(width * h / w / 2)))))
    if side_by_side:
        # one picture of them all (a terminal picture does not sit in a table cell), two columns apart
        from PIL import Image

        gap = max(1, round(2 * w / width))
        strip = Image.new("RGB", (len(pictures) * w + (len(pictures) - 1) * gap, h), (0, 0, 0))
        for i, picture in enumerate(pictures.values()):
            strip.paste(picture, (i * (w + gap), 0))
        titles = Text()
        for title, _ in blocks:
            title.truncate(width, overflow="ellipsis", pad=True)
            titles.append_text(title + Text("  "))
        console.print(titles)
        cells = len(pictures) * width + 2 * (len(pictures) - 1)
        console.print(TerminalImage(strip, width=cells, height=max(1, round(width * h / w / 2))))
    else:
        for title, image in blocks:
            console.print(title)
            console.print(image)
    scale = Text("colour: 0 no effect ")
    for r, g, b in colour_scale(40, 1).getdata():
        scale.append("█", style=f"rgb({r},{g},{b})")
    scale.append(" 1 the most")
    console.print(scale)
