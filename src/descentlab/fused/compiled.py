"""Compiled kernels: ``torch.compile`` (Inductor) of :mod:`descentlab.fused.kernels`, built at first use.

One compiled function per kernel with dynamic shapes, so its cost is paid once per kernel and
hyperparameter set, whatever the number or sizes of the tensors (measured in docs/speed.md).
If the compiler is unavailable or fails, :func:`compiled` returns ``None`` after one warning and the
caller falls back to the reference rule.
"""

from __future__ import annotations

import warnings
import types
from typing import Callable, Hashable

import torch

from descentlab.fused import kernels

_CACHE: dict[tuple[Hashable, ...], Callable[..., None] | None] = {}
_FAILED: set[str] = set()
KERNEL_NAMES: tuple[str, ...] = ("rmsprop", "adadelta", "nadam", "adam", "adagrad")


def _private_copy(fn: Callable[..., None], tag: int) -> Callable[..., None]:
    """``fn`` with its own code object: Dynamo's cache (and its recompile limit) is per code object,
    so each (dtype, hyperparameter set) gets its own cache entry instead of evicting the others."""
    code = fn.__code__.replace(co_name=f"{fn.__name__}_{tag}")
    return types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)


def compiled(name: str, key: tuple[Hashable, ...] = ()) -> Callable[..., None] | None:
    """The compiled kernel ``name`` (one of :data:`KERNEL_NAMES`) specialised for ``key`` (dtype and
    the hyperparameters compiled in as constants), or ``None`` if compilation is unavailable."""
    if name not in KERNEL_NAMES:
        raise ValueError(f"kernel must be one of {KERNEL_NAMES}, got {name!r}")
    if name in _FAILED:
        return None
    full_key = (name, *key)
    if full_key not in _CACHE:
        raw = _private_copy(getattr(kernels, f"{name}_kernel"), len(_CACHE))
        try:
            _CACHE[full_key] = torch.compile(raw, dynamic=True, fullgraph=True)
        except Exception as err:  # pragma: no cover - depends on the installation
            mark_failed(name, err)
            return None
    return _CACHE[full_key]


def mark_failed(name: str, err: BaseException) -> None:
    """Remember that kernel ``name`` failed to compile/run, warn once, and never try it again."""
    warnings.warn(f"descentlab: fused {name} kernel failed ({type(err).__name__}: {err}); "
                  "using the reference rule from now on", stacklevel=3)
    _FAILED.add(name)
