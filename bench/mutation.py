"""Mutation testing of the pure modules with mutmut: how many planted bugs do the tests catch?

mutmut changes one small thing at a time in a module (a ``<`` for a ``<=``, a constant, a dropped
argument) and runs the tests that reach the changed function; a mutant that no test notices
"survives" and marks behaviour nothing pins. This script runs mutmut on the modules below, each with
the fast test files that exercise it, and prints the score per module (killed / mutants) and per
function group, then the surviving mutants of the groups that must have none.

Not part of CI (it takes minutes): ``pip install mutmut`` (3.x), then

    python bench/mutation.py                  # every module below
    python bench/mutation.py runs runstate    # some of them
    python bench/mutation.py --show-survivors # with the diff of each survivor

mutmut copies the project into ``mutants/`` and rewrites it; so that nothing in the working tree is
touched, it runs in a scratch copy (``--workdir``, default a temporary folder) holding the package,
the chosen tests and a ``pyproject.toml`` with only the mutmut and pytest settings.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MODULES: dict[str, tuple[str, list[str]]] = {
    # name: (module file, pytest arguments that select its fast tests: no TensorFlow model runs, since
    # every mutant of a function reruns each test that reaches it)
    "dataset": ("carclf_core/dataset.py", ["tests/test_dataset.py"]),
    "splitting": ("carclf_core/splitting.py", ["tests/test_dataset.py"]),
    "runs": ("carclf_core/runs.py", ["tests/test_runs.py", "tests/test_atomic_writes.py"]),
    "runstate": ("carclf_core/runstate.py", ["tests/test_runstate.py"]),
    "metrics": ("carclf_core/metrics.py", ["tests/test_metrics.py", "tests/test_heatmap.py"]),
    "heatmap": ("carclf_core/heatmap.py", ["tests/test_heatmap.py"]),
    "rule": ("carclf_core/prefilter/rule.py", ["tests/test_rule.py", "tests/test_prefilter.py", "-k",
                                                "prob_sum or top_k or top_indices or car_probability or apply_rule "
                                                "or histogram or examples"]),
    "scores": ("carclf_core/prefilter/scores.py",
               ["tests/test_scale.py", "-k", "reapply or probability_file or without_stored"]),
    "config": ("carclf_core/config.py", ["tests/test_config.py"]),
    "cluster": ("carclf_core/cluster.py", ["tests/test_distributed.py", "-k",
                                           "tf_config or shards_split or machines_train_together_when"]),
    "provenance": ("carclf_core/provenance.py", ["tests/test_provenance.py", "tests/test_catalog.py"]),
    # The Keras modules: their tests build small models (a second or two a test), so a mutant costs
    # seconds, not milliseconds; the whole-run tests (test_train.py's fits) are left out.
    "keras_env": ("carclf_core/keras_env.py", ["tests/test_keras_env.py"]),
    "callbacks": ("carclf_core/callbacks.py", ["tests/test_callbacks.py", "tests/test_checkpoint.py",
                                               "tests/test_model.py", "-k", "not build and not freeze and not "
                                               "weights and not vgg and not warmup"]),
    "train": ("carclf_core/stages/train.py", ["tests/test_train.py", "-k",
                                              "own_share or confusion_sample or over_the_run"]),
    # the Keras classifier's test (7 s: a model built and probed) would make ~300 mutants take most of
    # an hour on 2 busy cores: only the tests of the output kind and the softmax, in milliseconds
    "classifiers": ("carclf_core/prefilter/classifiers.py", ["tests/test_prefilter.py", "-k",
                                                             "output_kind or as_distribution"]),
}

# Functions whose every mutant must be caught (the README's "no survivor" list), by module:
# the split, the car rule, the reducer and the atomic writes.
STRICT = {
    "splitting": re.compile(r"split|photo_targets|first_of_each"),
    "rule": re.compile(r"."),
    "runstate": re.compile(r"."),
    "runs": re.compile(r"atomic|temp"),
}

_KEY = re.compile(r"^\s*(?P<module>[\w.]+)\.(?P<function>x.+?|[^.]+)__mutmut_\d+: (?P<status>.+)$")


def _scratch(workdir: Path, name: str) -> None:
    """Copy the package and the tests of module ``name`` into ``workdir`` with mutmut settings for it."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    for package in ("carclf_core", "carclf_tui"):  # carclf_tui: the reducer's tests replay its sample run
        shutil.copytree(ROOT / package, workdir / package, ignore=shutil.ignore_patterns("__pycache__"))
    # faults/: test_distributed.py borrows its runner helpers
    shutil.copytree(ROOT / "tests", workdir / "tests", ignore=shutil.ignore_patterns("__pycache__", "tui"))
    path, selection = MODULES[name]
    (workdir / "pyproject.toml").write_text(
        "[tool.mutmut]\n"
        'source_paths = ["carclf_core"]\n'
        f"only_mutate = {[path]!r}\n"
        f"pytest_add_cli_args_test_selection = {selection!r}\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-x"]\n'
        'also_copy = ["carclf_tui", "tests"]\n'
        # each mutant's tests in a child of a process that imported TensorFlow but ran nothing: a child
        # forked after a Keras fit or predict (the default, "fork") can hang in TensorFlow's thread pools
        'process_isolation = "forkserver"\n'
        "\n[tool.pytest.ini_options]\n"
        'testpaths = ["tests"]\n'
        'addopts = "-p no:xdist"\n'
        'markers = ["slow: end-to-end tests"]\n',
        encoding="utf-8",
    )


def _results(workdir: Path) -> list[tuple[str, str, str, str]]:
    """(module, function, mutant, status) of every mutant mutmut recorded."""
    out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=workdir,
                         capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        match = _KEY.match(line)
        if match:
            mutant = line.strip().split(":")[0]
            rows.append((match["module"], match["function"].removeprefix("x_").removeprefix("xǁ"), mutant,
                         match["status"].strip()))
    return rows


def _module_name(dotted: str) -> str:
    for name, (path, _) in MODULES.items():
        if dotted == path.removesuffix(".py").replace("/", "."):
            return name
    return dotted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", choices=[[], *MODULES], help="modules to mutate (default: all)")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--max-children", type=int, default=2, help="mutants tested at once (default 2)")
    parser.add_argument("--show-survivors", action="store_true", help="print the diff of every survivor")
    args = parser.parse_args(argv)
    names = args.modules or list(MODULES)
    try:
        import mutmut  # noqa: F401
    except ImportError:
        print("mutmut is not installed: pip install 'mutmut>=3.8,<4'", file=sys.stderr)
        return 2
    base = args.workdir or Path(tempfile.mkdtemp(prefix="carclf-mutation-"))
    rows: list[tuple[str, str, str, str, str]] = []
    seconds: dict[str, float] = {}
    for name in names:
        workdir = base / name
        _scratch(workdir, name)
        started = time.monotonic()
        run = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(args.max_children)],
                             cwd=workdir, capture_output=True, text=True)
        seconds[name] = time.monotonic() - started
        if run.returncode != 0:
            print(f"{name}: mutmut failed\n" + run.stdout[-3000:] + run.stderr[-3000:], file=sys.stderr)
            return run.returncode
        found = _results(workdir)
        if not found:
            print(f"{name}: mutmut recorded no mutant (see {workdir}):\n{run.stdout[-2000:]}", file=sys.stderr)
            return 1
        rows += [(*row, str(workdir)) for row in found]
        print(f"{name}: {len(found)} mutants in {seconds[name]:.0f} s", file=sys.stderr, flush=True)

    by_module: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    strict_survivors = []
    for dotted, function, mutant, status, _ in rows:
        name = _module_name(dotted)
        by_module[name][status] += 1
        if status == "survived" and name in STRICT and STRICT[name].search(function):
            strict_survivors.append((name, function, mutant))
    print(f"mutmut {time.strftime('%Y-%m-%d')}, scratch copies in {base}")
    print(f"{'module':<10} {'mutants':>8} {'killed':>7} {'survived':>9} {'other':>6} {'score':>7} {'time':>6}")
    total = collections.Counter()
    for name in names:
        counts = by_module.get(name, collections.Counter())
        n = sum(counts.values())
        caught = counts["killed"] + counts["timeout"]
        other = n - caught - counts["survived"]
        total.update(counts)
        score = f"{caught / n:.1%}" if n else "-"
        print(f"{name:<10} {n:>8} {caught:>7} {counts['survived']:>9} {other:>6} {score:>7} {seconds[name]:>5.0f}s")
    n = sum(total.values())
    caught = total["killed"] + total["timeout"]
    print(f"{'all':<10} {n:>8} {caught:>7} {total['survived']:>9} {n - caught - total['survived']:>6} "
          f"{caught / n:>7.1%}")
    print("(other: mutants no test reached, or skipped; score: killed or timed out / all mutants)")
    if strict_survivors:
        print(f"\n{len(strict_survivors)} survivors where none may be:")
        for name, function, mutant in strict_survivors:
            print(f"  {name}: {function}  ({mutant})")
    if args.show_survivors:
        for _, _, mutant, status, where in rows:
            if status == "survived":
                shown = subprocess.run([sys.executable, "-m", "mutmut", "show", mutant], cwd=where,
                                       capture_output=True, text=True)
                print(shown.stdout)
    return 1 if strict_survivors else 0


if __name__ == "__main__":
    sys.exit(main())
