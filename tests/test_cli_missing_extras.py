"""A verb whose lab package is missing says so in one line and exits 2 — before it computes or writes anything.

Each case runs the CLI in a fresh process whose ``sys.meta_path`` starts with a finder that refuses one
package, as if it were not installed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BLOCKED_RUN = r"""
import sys

blocked = sys.argv[1]


class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name == blocked or name.startswith(blocked + "."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NotInstalled())
from descentlab.cli import main

sys.exit(main(sys.argv[2:]))
"""


def _cli_without(blocked: str, args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    return subprocess.run([sys.executable, "-c", BLOCKED_RUN, blocked, *args], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.mark.parametrize("blocked,package,args", [
    ("matplotlib", "matplotlib", ["race", "ravine", "--steps", "5"]),
    ("matplotlib", "matplotlib", ["schedules"]),
    ("matplotlib", "matplotlib", ["train", "iris", "--epochs", "1", "--quiet"]),
    ("matplotlib", "matplotlib", ["demo", "--steps", "10"]),
    ("optuna", "optuna", ["compare", "iris"]),
    ("sklearn", "scikit-learn", ["train", "iris", "--epochs", "1", "--quiet"]),  # the dataset needs it, at run time
    ("mnist1d", "mnist1d", ["train", "mnist1d", "--epochs", "1", "--quiet"]),
])
def test_a_missing_lab_package_is_one_line_and_exit_2(tmp_path, blocked, package, args):
    out = tmp_path / "out"
    done = _cli_without(blocked, args + ["--out", str(out)])
    verb = args[0]
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"descentlab {verb}: needs {package} — pip install 'descentlab[lab]'\n"
    assert done.stdout == "" and not out.exists()  # nothing computed, nothing written


def test_verbs_that_need_no_lab_package_still_run(tmp_path):
    done = _cli_without("matplotlib", ["landscapes"])
    assert done.returncode == 0 and "rosenbrock" in done.stdout, done.stderr


def test_an_import_error_that_is_not_a_missing_lab_package_is_not_disguised(tmp_path):
    done = _cli_without("descentlab.lab.race_outputs", ["race", "ravine", "--steps", "5", "--out", str(tmp_path / "o")])
    assert done.returncode == 1 and "Traceback" in done.stderr and "needs" not in done.stderr
