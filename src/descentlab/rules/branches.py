"""Step-dependent scalars and branches that work on every path a rule runs on.

A rule's scalars are Python numbers on the reference loop, :class:`~descentlab.fused.tensor_list.ScalarList`\\ s
(one number per tensor) on the multi-tensor path, and 0-d tensors while ``torch.compile`` traces the step (see
``rules.common.host_value``). A branch on such a scalar (RAdam's ``ρ_t > 5``, ASGD's ``μ ≠ 1``) is a Python
``if`` for a number, one pass per side for a list (the tensors split by the branch they take), and has no
Python form under compile, where the rule writes it with ``torch.where`` instead (:func:`is_traced`).
"""

from __future__ import annotations

from typing import Any, Callable

from torch import Tensor


def is_traced(value: Any) -> bool:
    """Whether a step scalar is a tensor (``torch.compile`` is tracing): branches must then be ``torch.where``."""
    return isinstance(value, Tensor)


def elementwise(fn: Callable[[Any], Any], value: Any) -> Any:
    """``fn(value)`` for a number; ``fn`` of each number of a per-tensor list."""
    mapped = getattr(value, "map", None)
    return mapped(fn) if callable(mapped) and not isinstance(value, Tensor) else fn(value)


def by_branch(flags: Any, *items: Any) -> list[tuple[bool, tuple[Any, ...]]]:
    """``[(flag, items)]`` for one flag; for per-tensor flags (a list), one entry per side that some tensor takes,
    with each item (a list of tensors or of numbers; a plain number is shared) cut to that side's tensors."""
    values = getattr(flags, "values", None)
    if values is None:
        return [(bool(flags), items)]
    sides: dict[bool, list[int]] = {}
    for index, flag in enumerate(values):
        sides.setdefault(bool(flag), []).append(index)
    if len(sides) == 1:
        return [(next(iter(sides)), items)]
    return [(side, tuple(item.take(indices) if hasattr(item, "take") and not isinstance(item, Tensor) else item for item in items))
            for side, indices in sides.items()]
