"""Running one tensor's computation on each tensor of a list: the lift of the rules' non-element-wise parts.

A rule is written for one tensor; the multi-tensor path calls it with a ``TensorList``
(:mod:`descentlab.fused.tensor_list`), whose methods are ``torch._foreach_*`` ops. Matrix products, reductions
over one dimension, transposes and norms read as a number have no ``_foreach_*`` op: a rule that needs them puts
them in a function of single tensors and calls :func:`each`, which runs that function directly on tensors and,
on a list, once per tensor (``TensorList.each``). So the rule is still written once, and the list path rounds
exactly as the single-tensor path (the same ops on the same tensors).
"""

from __future__ import annotations

from typing import Any, Callable

from torch import Tensor


def each(fn: Callable[..., Any], first: Any, *others: Any, **kwargs: Any) -> Any:
    """``fn(first, *others, **kwargs)`` for tensors; for a list of tensors, ``first.each(fn, *others, **kwargs)``
    (one call per tensor, the others taken element by element when they are lists too)."""
    if isinstance(first, Tensor):
        return fn(first, *others, **kwargs)
    return first.each(fn, *others, **kwargs)
