"""The house's floors, as assertions: rules know nothing of optimizers; executors read plans and never know an
optimizer class; a subclass keeps every fast path."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest
import torch

import descentlab
from descentlab.optim import REGISTRY
from helpers import dispatched_per_step

SRC = Path(descentlab.__file__).parent
CLASS_NAMES = {spec.cls.__name__ for spec in REGISTRY.values()} | {"RuleOptimizer"}


def _imports_and_names(path: Path) -> tuple[set[str], set[str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules: set[str] = set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
    return modules, names


@pytest.mark.parametrize("package, forbidden", [("fused", ("descentlab.optim",)),
                                                ("rules", ("descentlab.optim", "descentlab.fused"))])
def test_lower_floors_never_import_higher_ones(package, forbidden):
    files = sorted((SRC / package).glob("*.py"))
    assert files
    for path in files:
        modules, names = _imports_and_names(path)
        assert not [m for m in modules if m.startswith(forbidden)], path
        if package == "fused":
            assert not names & CLASS_NAMES, (path, names & CLASS_NAMES)


def _dispatched_per_step(cls, tensors: int = 100) -> int:
    return dispatched_per_step(lambda params: cls(params, lr=1e-3), tensors)


@pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")), reason="no C compiler: no C kernels")
def test_a_plain_subclass_of_adam_dispatches_as_few_operations_as_adam():
    class MyAdam(descentlab.Adam):
        pass

    adam, mine = _dispatched_per_step(descentlab.Adam), _dispatched_per_step(MyAdam)
    reference = _dispatched_per_step(lambda params, lr: descentlab.Adam(params, lr=lr, impl="reference"))
    assert mine == adam
    assert adam * 10 < reference  # the C path: a handful of operations where the reference loop runs ~9 a tensor


@pytest.mark.slow
def test_mypy_reports_no_errors_on_the_package():
    """The package ships ``py.typed``: its annotations are a promise to users' type checkers."""
    import subprocess
    import sys

    pytest.importorskip("mypy", reason="mypy comes with the test extra (pip install -e '.[test]')")
    root = SRC.parent.parent
    out = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary", str(SRC)], cwd=root,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_the_lab_never_imports_the_cli():
    for path in sorted((SRC / "lab").rglob("*.py")):
        modules, _ = _imports_and_names(path)
        assert not [m for m in modules if m.startswith("descentlab.cli")], path


@pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")), reason="no C compiler: no C kernels")
@pytest.mark.parametrize("gather", ["python", "native"])
@pytest.mark.parametrize("make", [lambda ps, lr: descentlab.SGD(ps, lr=lr),
                                  lambda ps, lr: descentlab.SGD(ps, lr=lr, momentum=0.9),
                                  lambda ps, lr: descentlab.Adam(ps, lr=lr)], ids=["sgd", "momentum", "adam"])
def test_the_c_path_dispatches_a_handful_of_operations_whatever_the_tensor_count(monkeypatch, gather, make):
    """Both gatherers keep their per-tensor checks out of ATen: a stateless plan (plain SGD) too — its cached
    check must hold between steps, or ``param.data`` costs one dispatched op a tensor."""
    from descentlab.fused import cpu_build, cpu_step

    if gather == "native" and cpu_build.gather_module(wait=True) is None:
        pytest.skip(f"no native gatherer: {cpu_build.gather_unavailable_reason()}")
    monkeypatch.setattr(cpu_step, "GATHER", gather)
    assert _dispatched_per_step(make, tensors=100) <= 3
