"""The package as users get it: a light import, one version, the license and typing marker, two core deps."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python ≥ 3.11

import descentlab

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(descentlab.__file__).resolve().parent
# the lab extra's packages (and scipy, which nothing needs any more): never loaded by `import descentlab`
HEAVY = ("scipy", "matplotlib", "sklearn", "optuna", "tqdm", "mnist1d")


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


def _json_out(code: str):
    done = _python(code)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_descentlab_loads_none_of_the_lab_packages():
    # torch.hub imports tqdm itself when tqdm is installed, so what `import torch, numpy` alone loads is
    # the baseline: descentlab must add none of them.
    loaded = _json_out(f"""
        import json, sys
        heavy = {HEAVY!r}
        def present():
            return sorted(h for h in heavy if h in sys.modules)
        import numpy, torch
        baseline = present()
        import descentlab
        print(json.dumps({{"baseline": baseline, "after": present()}}))
    """)
    assert set(loaded["after"]) == set(loaded["baseline"]), f"import descentlab loaded {loaded}"
    assert set(loaded["baseline"]) <= {"tqdm"}  # torch loads nothing else of these


def test_import_descentlab_never_asks_for_the_lab_packages():
    # Stronger than sys.modules (where torch may have put tqdm already): with all of them made
    # unimportable before torch loads, `import descentlab` neither fails nor even tries to import one
    # from its own code (torch's own try of tqdm is not descentlab's). A finder put first on
    # sys.meta_path sees every import of a name not yet in sys.modules.
    asked = _json_out(f"""
        import json, sys, traceback
        heavy = {HEAVY!r}
        package = {str(PACKAGE)!r}
        asked = []

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.partition(".")[0] in heavy:
                    # the frame with the import statement: the innermost one outside importlib and this finder
                    frames = [f for f in traceback.extract_stack()[:-1]
                              if not f.filename.startswith("<frozen") and "importlib" not in f.filename]
                    if frames and frames[-1].filename.startswith(package):
                        asked.append(f"{{name}} from {{frames[-1].filename}}:{{frames[-1].lineno}}")
                    raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
                return None

        sys.meta_path.insert(0, Block())
        import descentlab
        import descentlab.datasets, descentlab.train, descentlab.extras
        descentlab.datasets.load("linear")  # the synthetic sets need neither scikit-learn nor mnist1d
        print(json.dumps(asked))
    """)
    assert asked == [], f"import descentlab tried to import {asked}"


@pytest.mark.parametrize("blocked,dataset,package", [("sklearn", "digits", "scikit-learn"),
                                                     ("mnist1d", "mnist1d", "mnist1d")])
def test_a_missing_lab_package_is_named_in_one_line_with_the_fix(blocked, dataset, package, tmp_path):
    done = _python(f"""
        import os, sys
        os.environ["DESCENTLAB_CACHE"] = {str(tmp_path)!r}  # no cached mnist1d arrays to fall back on

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.partition(".")[0] == {blocked!r}:
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                return None

        sys.meta_path.insert(0, Block())
        import descentlab
        try:
            descentlab.datasets.load({dataset!r})
        except ImportError as error:
            print(str(error))
        else:
            print("loaded")
    """)
    assert done.returncode == 0, done.stderr
    message = done.stdout.strip()
    assert message == f"the {dataset!r} dataset needs {package}: pip install 'descentlab[lab]'"


def test_require_reraises_an_import_error_from_inside_an_installed_package(tmp_path):
    # a package that is there but whose own dependency is missing is not reported as "needs <package>"
    (tmp_path / "brokenpkg").mkdir()
    (tmp_path / "brokenpkg" / "__init__.py").write_text("import not_a_module_anywhere_4821\n")
    sys.path.insert(0, str(tmp_path))
    try:
        from descentlab.extras import require

        with pytest.raises(ModuleNotFoundError, match="not_a_module_anywhere_4821"):
            require("brokenpkg", "a feature")
        with pytest.raises(ImportError, match=r"^a feature needs not_installed_4821: pip install 'descentlab\[lab\]'$"):
            require("not_installed_4821.sub", "a feature")
        assert require("json", "a feature") is json
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("brokenpkg", None)


def test_one_version_everywhere():
    assert descentlab.__version__ == importlib.metadata.version("descentlab")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "descentlab._version.__version__"}
    literal = f'"{descentlab.__version__}"'
    holders = [p.relative_to(ROOT).as_posix() for p in [ROOT / "pyproject.toml", *PACKAGE.rglob("*.py")]
               if literal in p.read_text(encoding="utf-8")]
    assert holders == ["src/descentlab/_version.py"]


def test_license_and_typing_marker_ship_and_core_needs_only_torch_and_numpy():
    license_text = (ROOT / "LICENSE").read_text()
    assert license_text.startswith("MIT License") and "Copyright (c) 2026 the descentlab authors" in license_text
    assert (PACKAGE / "py.typed").is_file()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license-files"] == ["LICENSE"]
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["descentlab"]
    names = sorted(d.split(">")[0].split("<")[0].split("=")[0].strip() for d in project["project"]["dependencies"])
    assert names == ["numpy", "torch"]
    extras = project["project"]["optional-dependencies"]
    assert {"lab", "postgres", "test"} <= set(extras)
    # what is installed agrees: the metadata's unconditional requirements are the same two
    required = importlib.metadata.requires("descentlab") or []
    core = sorted(r.split(">")[0].split("<")[0].split("=")[0].strip() for r in required if "extra ==" not in r)
    assert core == ["numpy", "torch"]
