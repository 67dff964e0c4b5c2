"""Compiled kernels: ``torch.compile`` (Inductor) of :mod:`descentlab.fused.kernels`, built at first use.

One compiled function per kernel with dynamic shapes, so its cost is paid once per kernel and
hyperparameter set, whatever the number or sizes of the tensors (measured in docs/speed.md).
If the compiler is unavailable or fails, :func:`compiled` returns ``None`` after one warning and the
caller falls back to the reference rule.
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch

from descentlab.fused import kernels

_CACHE: dict[str, Callable[..., None] | None] = {}
KERNEL_NAMES: tuple[str, ...] = ("rmsprop", "adadelta")


def compiled(name: str) -> Callable[..., None] | None:
    """The compiled kernel ``name`` (one of :data:`KERNEL_NAMES`), or ``None`` if compilation is unavailable."""
    if name not in KERNEL_NAMES:
        raise ValueError(f"kernel must be one of {KERNEL_NAMES}, got {name!r}")
    if name not in _CACHE:
        raw = getattr(kernels, f"{name}_kernel")
        try:
            _CACHE[name] = torch.compile(raw, dynamic=True, fullgraph=True)
        except Exception as err:  # pragma: no cover - depends on the installation
            warnings.warn(f"descentlab: torch.compile unavailable ({err}); using the reference rule", stacklevel=3)
            _CACHE[name] = None
    return _CACHE[name]


def mark_failed(name: str, err: BaseException) -> None:
    """Remember that kernel ``name`` failed to compile/run, warn once, and never try it again."""
    warnings.warn(f"descentlab: fused {name} kernel failed ({type(err).__name__}: {err}); "
                  "using the reference rule from now on", stacklevel=3)
    _CACHE[name] = None
