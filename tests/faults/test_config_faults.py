"""Hostile config files and ``--set`` values against the real CLI: exit 2, one line naming the file or key.

Each case runs ``carclf-tui --stage index`` in a subprocess, as a user would, so what is pinned is what
the user sees: the exit code of a usage error, no traceback, no run folder, and an error that says
where the problem is.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

EXIT_USAGE = 2

# 9 levels of 9 aliases: 9**9 = 387 million strings once expanded, in 342 bytes.
ALIAS_BOMB = "\n".join(
    ["a: &a [" + ",".join(['"lol"'] * 9) + "]"]
    + [f"{b}: &{b} [" + ",".join([f"*{a}"] * 9) + "]" for a, b in zip("abcdefgh", "bcdefghi", strict=True)]) + "\n"


def carclf(*args: str, cwd: Path, timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "carclf_tui.cli", "--plain", "--stage", "index", *args],
                            cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return result, time.monotonic() - start


def refused(result: subprocess.CompletedProcess, cwd: Path, *named: str) -> str:
    """Assert a clean usage error; return its one line."""
    assert result.returncode == EXIT_USAGE, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("carclf-tui: config error: "), lines[0]
    for text in named:
        assert text in lines[0], lines[0]
    assert not (cwd / "runs").exists(), "a refused config must not leave a run behind"
    return lines[0]


def test_alias_bomb_is_refused_in_seconds(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(ALIAS_BOMB)
    assert len(ALIAS_BOMB) < 400
    result, seconds = carclf("--config", str(path), cwd=tmp_path)
    line = refused(result, tmp_path, str(path), "alias bomb")
    assert seconds < 20, f"{seconds:.1f} s: {line}"


@pytest.mark.parametrize("name, data, named", [
    ("utf16.yaml", "train:\n  epochs: 3\n".encode("utf-16"), ("not UTF-8 text", "UTF-16")),
    ("binary.yaml", bytes(range(256)) * 4, ("not UTF-8 text",)),
    ("intkey.yaml", b"1: x\n", ("key 1 at line 1 is not a name",)),
    ("listkey.yaml", b"? [a]\n: b\n", ("a list used as a key at line 1 is not a name",)),
    ("nested-key.yaml", b"train:\n  7: x\n", ("key 7 at line 2 in train is not a name",)),
    ("data0.yaml", b"data: 0\n", ("data: expected a section", "got 0")),
    ("datalist.yaml", b"data: [1]\n", ("data: expected a section", "got [1]")),
])
def test_bad_files_are_refused_naming_the_file(tmp_path, name, data, named):
    path = tmp_path / name
    path.write_bytes(data)
    result, _ = carclf("--config", str(path), cwd=tmp_path)
    refused(result, tmp_path, str(path), *named)


def test_dev_zero_is_refused_at_once(tmp_path):
    result, seconds = carclf("--config", "/dev/zero", cwd=tmp_path)
    refused(result, tmp_path, "/dev/zero: is a character device where a file belongs")
    assert seconds < 20


@pytest.mark.parametrize("override, named", [
    ("split.seed=4294967296", ("split.seed: expected an integer 0..4294967295",)),
    ("train.learning_rate=.inf", ("train.learning_rate: expected a finite number, got inf",)),
    ("train.learning_rate=.nan", ("train.learning_rate: expected a finite number, got nan",)),
    ("train.monitor=val_acuracy", ("train.monitor:", '"val_acuracy"', "val_categorical_accuracy")),
    ("data.dir=", ('data.dir: expected a non-empty path, got ""',)),
    ("run.name=" + "n" * 250, ("run.name: expected 1..64 characters",)),
    ("data=0", ("data: expected a section",)),
])
def test_bad_overrides_are_refused_naming_the_key(tmp_path, override, named):
    result, _ = carclf("--set", override, cwd=tmp_path)
    refused(result, tmp_path, *named)


def test_long_run_name_in_a_file_is_refused_before_any_folder_is_made(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("run:\n  name: " + "n" * 250 + "\n")
    result, _ = carclf("--config", str(path), cwd=tmp_path)
    refused(result, tmp_path, "run.name: expected 1..64 characters")


def test_yaml_12_floats_reach_the_pipeline(tmp_path):
    """The accepted forms get through the CLI too: `1e-3` is a number, not "not a number"."""
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  learning_rate: 1e-3\n")
    code = ("import sys; from carclf_tui import cli; "
            "args = cli.build_parser().parse_args(sys.argv[1:]); c = cli.resolve_config(args); "
            "print(c.train.learning_rate, c.split.seed, c.train.monitor_direction)")
    result = subprocess.run([sys.executable, "-c", code, "--config", str(path), "--set", "split.seed=4294967295",
                             "--set", "train.monitor=val_top5"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0.001", "4294967295", "max"]
