"""TensorFlow's start-up chatter kept off the user's terminal.

Importing TensorFlow 2.21 writes, from C++ straight to file descriptor 2 and whatever
``TF_CPP_MIN_LOG_LEVEL`` says, an absl preamble, a oneDNN notice and a CPU-feature notice, twice
(two of its shared libraries each print them); converting a model to TFLite writes a few hundred
lines of "Saved artifact ... Captures" to file descriptor 1. None of it is for the user, and a
Python-level ``redirect_stdout`` cannot catch C++ writes, so :func:`captured_output` swaps the file
descriptors themselves for a temporary file while such a step runs. What it caught is returned:
the callers put it into the run's event log (``debug``) and show real problems, errors and warnings
from TensorFlow, once each (:func:`worth_showing`).

Imports nothing heavy; the base layer.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from types import ModuleType

# What TensorFlow prints on every start whatever the machine: information, not a problem.
_NOISE = re.compile(
    r"^(I\d{4} |WARNING: All log messages before absl::InitializeLog\(\)|To enable the following instructions"
    r"|INFO: Created TensorFlow Lite|Saved artifact at|Captures:|Args:|Output Type:|\s|$)"
)


@contextlib.contextmanager
def captured_output(streams: tuple[int, ...] = (1, 2)) -> Iterator[list[str]]:
    """Send what is written to the file descriptors ``streams`` (C++ included) to a temporary file
    while the block runs; the yielded list holds its lines afterwards.

    Python's own ``sys.stdout``/``sys.stderr`` are flushed first, so nothing written before the
    block lands in the capture or after it.
    """
    lines: list[str] = []
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in streams}
    with tempfile.TemporaryFile() as sink:
        try:
            for fd in streams:
                os.dup2(sink.fileno(), fd)
            yield lines
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            lines.extend(sink.read().decode("utf-8", "replace").splitlines())


def import_tensorflow() -> tuple[ModuleType, list[str]]:
    """Import TensorFlow (and Keras on it) with its start-up lines captured; returns the module and
    the lines. Once TensorFlow is loaded this costs nothing and returns no lines."""
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        return tf, []
    with captured_output((2,)) as lines:
        import keras  # noqa: F401  (loads TensorFlow as its backend, with the same start-up lines)
        import tensorflow as tf
    return tf, lines


def worth_showing(lines: list[str]) -> list[str]:
    """The captured lines that report a problem (TensorFlow's errors and warnings, a Python
    traceback), each once and in order; the routine start-up notices left out."""
    seen: set[str] = set()
    shown = []
    for line in lines:
        if _NOISE.match(line):
            continue
        # the same notice from two libraries differs only in its time stamp and thread id
        key = re.sub(r"^([EWF])\d{4} [\d:.]+\s+\d+ ", r"\1 ", line)
        if key not in seen:
            seen.add(key)
            shown.append(line)
    return shown
