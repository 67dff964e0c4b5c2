"""Run PyTorch's own OptimizerInfo-driven optimizer suite (``TestOptimRenewed`` in pytorch's ``test/test_optim.py``)
against descentlab's classes put in place of torch's twins.

How it works (docs/torch_suite.md has the whole story):

- ``upstream/test_optim.py`` is pytorch's test file, unmodified. It is not committed (third-party code stays out
  of this repository's history; ``.gitignore`` here keeps it out): put a copy there (docs/torch_suite.md
  says which version and where from). Everything it imports from ``torch.testing._internal`` ships in the
  torch wheel; the three sibling modules it imports from pytorch's ``test/optim/`` folder
  (``TestLRScheduler``, ``TestDifferentiableOptimizer``, ``TestSWAUtils``) do not, and are stubbed below as empty
  ``TestCase`` classes — they are other suites, not part of ``TestOptimRenewed``.
- Before that file is imported, every ``OptimizerInfo`` in ``torch.testing._internal.common_optimizers.optim_db``
  whose class has a descentlab twin (matched by class name) gets descentlab's class as ``optim_cls``; the other
  entries (Adafactor, ASGD, LBFGS, Muon, RAdam, Rprop, SparseAdam) are removed from ``optim_db`` so that no test
  is generated for them. Nothing else is changed: torch's own per-test skips and decorators in ``optim_db`` stay,
  and the differentiable / capturable / fused / foreach configurations are all kept.
- ``$DESCENTLAB_TORCH_SUITE_IMPL`` picks what is swapped in: ``auto`` (default: descentlab's classes as they
  are), ``reference`` (the same classes with ``impl="reference"`` as the default), ``foreach``
  (``impl="foreach"``), or ``torch`` (no swap: torch's own classes, the control run that shows what this
  version of the test file does against this torch).
- Tests of the file that are not parametrized over ``optim_db`` (``test_adamw_serialization``,
  ``test_step_iteration``) construct ``torch.optim`` classes by name, so no swap can reach them: they are
  deselected (listed in the run's header).
- ``$DESCENTLAB_TORCH_SUITE_RESULTS=path.json`` writes every test's outcome and the first line of its failure
  message there (``tests/torch_suite/report.py`` turns such files into docs/torch_suite.md).

The suite is collected only when ``tests/torch_suite`` (or a path inside it) is named on pytest's command line,
so the ordinary ``pytest`` run never picks it up.
"""

from __future__ import annotations

import json
import os
import sys
import types
import unittest
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
UPSTREAM = HERE / "upstream" / "test_optim.py"

#: torch.optim class names that descentlab implements under the same name, signature, defaults and state keys
TWINS = ("SGD", "Adam", "AdamW", "Adagrad", "Adadelta", "RMSprop", "NAdam", "Adamax")
IMPLS = ("auto", "reference", "foreach", "torch")
#: TestOptimRenewed tests that build torch.optim classes by name (not from optim_db): no swap reaches them
NOT_SWAPPABLE = ("test_adamw_serialization", "test_step_iteration")

_installed: dict[str, object] = {}
_results: dict[str, dict[str, object]] = {}


def suite_impl() -> str:
    impl = os.environ.get("DESCENTLAB_TORCH_SUITE_IMPL", "auto")
    if impl not in IMPLS:
        raise pytest.UsageError(f"DESCENTLAB_TORCH_SUITE_IMPL must be one of {', '.join(IMPLS)}, got {impl!r}")
    return impl


def upstream_path() -> Path:
    return UPSTREAM


def _selected(config: pytest.Config) -> bool:
    """True when the command line names this folder or something inside it."""
    for arg in config.args:
        path = Path(str(arg).split("::", 1)[0])
        if not path.is_absolute():
            path = Path(str(config.invocation_params.dir)) / path
        try:
            path.resolve().relative_to(HERE)
        except ValueError:
            continue
        return True
    return False


def _twin_class(name: str, impl: str) -> type:
    import descentlab.optim as dl

    cls = getattr(dl, name)
    if impl == "auto":
        return cls

    def __init__(self, params, *args, **kwargs):  # noqa: N807 - the swapped-in class's constructor
        kwargs.setdefault("impl", impl)
        cls.__init__(self, params, *args, **kwargs)

    # same name as torch's class (the suite branches on optim_cls.__name__), descentlab's module for repr
    return type(name, (cls,), {"__init__": __init__, "__module__": cls.__module__, "__qualname__": name,
                               "__doc__": f"descentlab.optim.{name} with impl={impl!r} as the default"})


def _stub_sibling_modules() -> None:
    """pytorch's test/optim/ modules that test_optim.py imports for other suites: empty TestCase stand-ins."""
    package = types.ModuleType("optim")
    package.__path__ = []  # a package, so that `from optim.x import y` resolves through sys.modules
    sys.modules.setdefault("optim", package)
    for module_name, class_name in (("test_lrscheduler", "TestLRScheduler"),
                                    ("test_optim", "TestDifferentiableOptimizer"),
                                    ("test_swa_utils", "TestSWAUtils")):
        module = types.ModuleType(f"optim.{module_name}")
        stub = type(class_name, (unittest.TestCase,), {"__doc__": "stub: not part of TestOptimRenewed"})
        stub.__test__ = False
        setattr(module, class_name, stub)
        sys.modules.setdefault(f"optim.{module_name}", module)


def _install() -> None:
    if _installed:
        return
    from torch.testing._internal.common_optimizers import optim_db

    impl = suite_impl()
    kept, swapped, dropped = [], {}, []
    for info in optim_db:
        name = info.optim_cls.__name__
        if name not in TWINS:
            dropped.append(name)
            continue
        if impl != "torch":
            original = info.optim_cls
            info.optim_cls = _twin_class(name, impl)
            swapped[name] = f"{original.__module__}.{name} -> {info.optim_cls.__module__}.{name}"
        kept.append(info)
    optim_db[:] = kept  # in place: the test file's @optims(optim_db) reads this very list at import
    _stub_sibling_modules()
    _installed.update(impl=impl, swapped=swapped, dropped=dropped)


# -- hooks ------------------------------------------------------------------------------------------------------
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "serial: torch's serialTest() marker (common_utils), run serially there")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if not _selected(config):
        return True
    if collection_path.is_file() and collection_path.suffix == ".py":
        if collection_path.resolve() != upstream_path():
            return True  # only pytorch's test file is collected here (report.py and this conftest are not tests)
    _install()
    return None


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    if not _selected(config):
        return
    deselected = [item for item in items if any(item.name.startswith(name) for name in NOT_SWAPPABLE)]
    if deselected:
        keep = [item for item in items if item not in deselected]
        config.hook.pytest_deselected(items=deselected)
        items[:] = keep


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    if not _selected(config):
        return None
    _install()
    lines = [f"descentlab torch suite: impl={_installed['impl']}  file={upstream_path()}"]
    for text in dict(_installed["swapped"]).values():
        lines.append(f"  swapped {text}")
    lines.append(f"  removed from optim_db (no descentlab twin): {', '.join(_installed['dropped'])}")
    lines.append(f"  deselected (build torch.optim classes by name): {', '.join(NOT_SWAPPABLE)}")
    return lines


_NOISE = ("To execute this test, run the following", "python test_optim.py ",
          "This message can be suppressed by setting PYTORCH_PRINT_REPRO_ON_FAILURE")


def first_line(text: str) -> str:
    """The first line of a failure message that says something (torch's repro hints are left out)."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("E "):
            line = line[1:].strip()
        if line and not line.startswith(_NOISE):
            return line[:400]
    return ""


def _first_line(report: pytest.TestReport) -> str:
    if isinstance(report.longrepr, tuple):  # a skip: (path, line, reason)
        return first_line(str(report.longrepr[2]))
    crash = getattr(report.longrepr, "reprcrash", None)
    return first_line(crash.message if crash is not None else "") or first_line(
        "\n".join(line for line in report.longreprtext.splitlines() if line.startswith("E ")))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """One entry per test: failed in setup/teardown = error, else the call's outcome (skips keep their reason)."""
    if not _installed:
        return
    test_id = report.nodeid.split("::")[-1]
    if report.when == "call":
        outcome = report.outcome
    elif report.failed:
        outcome = "error"
    elif report.skipped:
        outcome = "skipped"
    else:
        return
    entry = _results.get(test_id)
    if entry is None or entry["outcome"] in ("passed", "skipped") or outcome == "error" != entry["outcome"]:
        seconds = 0.0 if entry is None else float(entry["seconds"])
        entry = _results[test_id] = {"id": test_id, "outcome": outcome,
                                     "message": "" if outcome == "passed" else _first_line(report),
                                     "seconds": seconds}
    entry["seconds"] = round(float(entry["seconds"]) + report.duration, 3)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = os.environ.get("DESCENTLAB_TORCH_SUITE_RESULTS")
    if not path or not _installed:
        return
    payload = {"impl": _installed["impl"], "file": str(upstream_path()), "results": list(_results.values())}
    Path(path).write_text(json.dumps(payload, indent=1) + "\n")
