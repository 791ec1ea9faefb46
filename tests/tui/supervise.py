"""Runs a command the way a login shell runs a job, for the real-terminal tests.

Usage: ``python supervise.py [--no-forward] RC_FILE PID_FILE COMMAND ...``. Writes the command's pid to
PID_FILE and, once it ends, its exit status to RC_FILE (a signal's death as 128 + its number). A
SIGHUP the terminal's hang-up sends this process (the session leader) is passed on to the command as
bash passes it on to its jobs; with ``--no-forward`` it is ignored instead, as under a shell that does
not pass it on, so only the hung-up terminal itself tells the command.
"""

from __future__ import annotations

import signal
import subprocess
import sys


def main() -> int:
    args = sys.argv[1:]
    forward = args[0] != "--no-forward"
    if not forward:
        args = args[1:]
    rc_file, pid_file, *command = args
    child = subprocess.Popen(command, preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
    with open(pid_file, "w") as handle:
        handle.write(str(child.pid))
    signal.signal(signal.SIGHUP, (lambda signum, frame: child.send_signal(signal.SIGHUP)) if forward
                  else signal.SIG_IGN)
    code = child.wait()
    with open(rc_file, "w") as handle:
        handle.write(str(128 - code if code < 0 else code))
    return 0


if __name__ == "__main__":
    sys.exit(main())
