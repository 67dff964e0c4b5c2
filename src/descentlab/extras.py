"""Optional dependencies, imported where they are used.

``pip install descentlab`` brings only torch and NumPy (the optimizers, schedules, averaging, ``fit``);
the lab, the CLI and the scikit-learn / mnist1d datasets need the ``lab`` extra. Code that needs one of
those packages imports it through :func:`require`, at the point of use, so ``import descentlab`` stays
light and a missing package is named in one line together with the fix.

>>> require("math", "arithmetic").sqrt(4.0)
2.0
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]

# import name -> the name pip knows it by, where they differ
_DISTRIBUTIONS = {"sklearn": "scikit-learn", "psycopg": "psycopg[binary]"}


def require(module_name: str, feature: str, *, extra: str = "lab") -> ModuleType:
    """Import ``module_name`` and return it; if its package is not installed, raise a one-line
    ``ImportError``: ``"{feature} needs {package}: pip install 'descentlab[{extra}]'"``.

    An ``ImportError`` raised *inside* an installed package for another reason (one of its own
    dependencies missing, a broken build) is re-raised unchanged, so it is not mistaken for this one.
    """
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        missing = getattr(error, "name", None)
        if missing is not None and module_name != missing and not module_name.startswith(missing + "."):
            raise
        top = module_name.partition(".")[0]
        package = _DISTRIBUTIONS.get(top, top)
        raise ImportError(f"{feature} needs {package}: pip install 'descentlab[{extra}]'",
                          name=module_name) from None
