"""The command line's argument parser, whose errors are display-safe (the main command, predict, explain)."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from carclf_core.display import printable

EXIT_USAGE = 2


class SafeParser(argparse.ArgumentParser):
    """argparse, whose errors quote the arguments (``unrecognized arguments: ...``, a bad value): a
    file name passed through a shell glob may hold escape sequences, so the message is made
    display-safe before it is printed."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, printable(f"{self.prog}: error: {message}") + "\n")
