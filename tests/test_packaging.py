"""pyproject.toml's extras: exactly one TensorFlow build whichever extras a user combines."""

from __future__ import annotations

import itertools
import re
import tomllib
from pathlib import Path

PYPROJECT = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
EXTRAS = PYPROJECT["project"]["optional-dependencies"]
TENSORFLOW_BUILDS = {"tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tf-nightly", "tf-nightly-cpu"}


def _tensorflow_builds(requirements: list[str]) -> set[str]:
    names = {re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower() for r in requirements}
    return names & TENSORFLOW_BUILDS


def test_every_combination_of_extras_with_a_build_installs_exactly_one_tensorflow():
    base = PYPROJECT["project"]["dependencies"]
    assert not _tensorflow_builds(base), "TensorFlow comes through the cpu or gpu extra only"
    assert _tensorflow_builds(EXTRAS["cpu"]) == {"tensorflow-cpu"}
    assert _tensorflow_builds(EXTRAS["gpu"]) == {"tensorflow"}
    others = [name for name in EXTRAS if name not in ("cpu", "gpu")]
    for build in ("cpu", "gpu"):
        for n in range(len(others) + 1):
            for combo in itertools.combinations(others, n):
                requirements = base + EXTRAS[build] + [r for name in combo for r in EXTRAS[name]]
                assert len(_tensorflow_builds(requirements)) == 1, (build, combo)


def test_the_readme_and_ci_install_a_build_with_the_tests():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    ci = (Path(__file__).parents[1] / ".ci" / "run").read_text()
    assert "pip install -e '.[cpu,test]' && pytest" in readme.split("\n```", 2)[1]
    assert "pip install -e '.[cpu,test]'" in ci
