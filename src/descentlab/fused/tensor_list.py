"""Lists of tensors that the rules run on unchanged: the one lifting of ``descentlab.rules`` to many tensors.

A rule is written once for one tensor (``exp_avg.lerp_(grad, 1 - beta1)``, ``param.addcdiv_(m, d, value=-s)``).
Called with :class:`TensorList` arguments — and :class:`ScalarList` where a scalar differs per tensor (the step
``t``, so ``1 − β^t``) — each of those methods becomes one ``torch._foreach_*`` call over the whole list, in the
rule's own order of operations. So the multi-tensor path is not a second statement of the maths: it is the
rule's own code, and it rounds as the reference does (``_foreach_*`` kernels compute each element as the
single-tensor op does; a per-tensor scalar whose values all agree is passed as one number, as the reference
passes it).

Only what the rules use is lifted; anything else raises ``TypeError`` naming the operation.
"""

from __future__ import annotations

import operator
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import Tensor

Number = float | int | bool


class ScalarList:
    """One Python number per tensor, with element-wise arithmetic (``1.0 - beta ** step`` and the like)."""

    __slots__ = ("values",)

    def __init__(self, values: Iterable[Number]) -> None:
        self.values = list(values)

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        return f"ScalarList({self.values!r})"

    def common(self) -> Number | None:
        """The value every tensor shares, or ``None`` when they differ."""
        first = self.values[0] if self.values else None
        return first if all(v == first for v in self.values) else None

    def _map(self, other: Any, op: Callable[[Any, Any], Any]) -> ScalarList:
        if isinstance(other, ScalarList):
            return ScalarList(op(a, b) for a, b in zip(self.values, other.values))
        return ScalarList(op(a, other) for a in self.values)

    def _rmap(self, other: Any, op: Callable[[Any, Any], Any]) -> ScalarList:
        return ScalarList(op(other, a) for a in self.values)

    def __add__(self, other: Any) -> ScalarList: return self._map(other, operator.add)
    def __radd__(self, other: Any) -> ScalarList: return self._rmap(other, operator.add)
    def __sub__(self, other: Any) -> ScalarList: return self._map(other, operator.sub)
    def __rsub__(self, other: Any) -> ScalarList: return self._rmap(other, operator.sub)
    def __mul__(self, other: Any) -> ScalarList: return self._map(other, operator.mul)
    def __rmul__(self, other: Any) -> ScalarList: return self._rmap(other, operator.mul)
    def __truediv__(self, other: Any) -> ScalarList: return self._map(other, operator.truediv)
    def __rtruediv__(self, other: Any) -> ScalarList: return self._rmap(other, operator.truediv)
    def __pow__(self, other: Any) -> ScalarList: return self._map(other, operator.pow)
    def __rpow__(self, other: Any) -> ScalarList: return self._rmap(other, operator.pow)
    def __neg__(self) -> ScalarList: return ScalarList(-a for a in self.values)
    # comparisons give per-tensor flags (rules.branches.by_branch splits the tensors by them)
    def __gt__(self, other: Any) -> ScalarList: return self._map(other, operator.gt)
    def __lt__(self, other: Any) -> ScalarList: return self._map(other, operator.lt)
    def __ne__(self, other: Any) -> ScalarList: return self._map(other, operator.ne)  # type: ignore[override]

    def map(self, fn: Callable[[Any], Any]) -> ScalarList:
        """``fn`` of each number (``max(1, t − t₀)`` and the like: rules.branches.elementwise)."""
        return ScalarList(fn(a) for a in self.values)

    def take(self, indices: Sequence[int]) -> ScalarList:
        """The numbers of the tensors at ``indices``."""
        return ScalarList(self.values[i] for i in indices)


def _scalar(value: Any) -> Any:
    """A number for ``_foreach_*``: a Python number, or a list of them (one per tensor)."""
    if isinstance(value, ScalarList):
        shared = value.common()
        return value.values if shared is None else shared
    if isinstance(value, Tensor):
        raise TypeError("TensorList: a tensor-valued scalar; pass a Python number or a ScalarList")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, ScalarList))


class TensorList:
    """Tensors of one device and dtype, stepped together by ``torch._foreach_*`` ops (see the module docstring)."""

    __slots__ = ("tensors",)

    def __init__(self, tensors: Sequence[Tensor]) -> None:
        self.tensors = list(tensors)

    def __len__(self) -> int:
        return len(self.tensors)

    def __repr__(self) -> str:
        return f"TensorList({len(self.tensors)} tensors)"

    @property
    def dtype(self) -> torch.dtype:
        """The tensors' dtype (a bucket holds one)."""
        return self.tensors[0].dtype

    def size(self, dim: int) -> ScalarList:
        """Each tensor's size along ``dim``."""
        return ScalarList(t.size(dim) for t in self.tensors)

    def numel(self) -> ScalarList:
        """Each tensor's number of elements."""
        return ScalarList(t.numel() for t in self.tensors)

    def norm(self, p: Number = 2) -> TensorList:
        """Each tensor's ``p``-norm over all its elements, as 0-d tensors (one ``_foreach_norm``: each is
        ``linalg_vector_norm`` of the tensor, as ``Tensor.norm(p)`` computes it); ``.item()`` reads them all."""
        return TensorList(torch._foreach_norm(self.tensors, p))

    # -- in place --------------------------------------------------------------------------------
    def add_(self, other: Any, *, alpha: Any = 1) -> TensorList:
        if _is_number(other):
            torch._foreach_add_(self.tensors, _scalar(other))
            return self
        scale = _scalar(alpha)
        if isinstance(scale, list):  # no foreach overload of add takes one alpha per tensor: addcmul's does
            self.addcmul_(TensorList([_one(self.tensors[0])] * len(self.tensors)), other, value=ScalarList(scale))
        else:
            torch._foreach_add_(self.tensors, _tensors(other), alpha=scale)
        return self

    def mul_(self, other: Any) -> TensorList:
        torch._foreach_mul_(self.tensors, _operand(other))
        return self

    def div_(self, other: Any) -> TensorList:
        torch._foreach_div_(self.tensors, _operand(other))
        return self

    def lerp_(self, end: TensorList, weight: Any) -> TensorList:
        torch._foreach_lerp_(self.tensors, _tensors(end), _scalar(weight))
        return self

    def addcmul_(self, tensor1: TensorList, tensor2: TensorList, *, value: Any = 1) -> TensorList:
        torch._foreach_addcmul_(self.tensors, _tensors(tensor1), _tensors(tensor2), _scalar(value))
        return self

    def addcdiv_(self, tensor1: TensorList, tensor2: TensorList, *, value: Any = 1) -> TensorList:
        torch._foreach_addcdiv_(self.tensors, _tensors(tensor1), _tensors(tensor2), _scalar(value))
        return self

    def sqrt_(self) -> TensorList:
        torch._foreach_sqrt_(self.tensors)
        return self

    def square_(self) -> TensorList:
        """``x²`` as ``Tensor.square_`` computes it (``pow_(x, 2)``)."""
        torch._foreach_pow_(self.tensors, 2)
        return self

    def rsqrt_(self) -> TensorList:
        torch._foreach_rsqrt_(self.tensors)
        return self

    def clamp_min_(self, value: Any) -> TensorList:
        torch._foreach_clamp_min_(self.tensors, _operand(value))
        return self

    def clamp_max_(self, value: Any) -> TensorList:
        torch._foreach_clamp_max_(self.tensors, _operand(value))
        return self

    def clamp_(self, min: Number, max: Number) -> TensorList:
        """``clamp_(lo, hi)`` as ``min(max(x, lo), hi)`` (NaN stays NaN; lo > hi gives hi), torch's clamp."""
        return self.clamp_min_(min).clamp_max_(max)

    def fill_(self, value: Any) -> TensorList:
        """Each (0-d) tensor set to its number, rounded to its dtype as ``Tensor.fill_`` rounds it: one
        float64 tensor of the numbers, copied in with one call."""
        values = value.values if isinstance(value, ScalarList) else [value] * len(self.tensors)
        if self.tensors:
            source = torch.tensor(values, dtype=torch.float64, device=self.tensors[0].device)
            torch._foreach_copy_(self.tensors, list(source.unbind()))
        return self

    def copy_(self, other: TensorList) -> TensorList:
        torch._foreach_copy_(self.tensors, _tensors(other))
        return self

    def maximum_(self, other: TensorList) -> TensorList:
        torch._foreach_maximum_(self.tensors, _tensors(other))
        return self

    # -- new lists ---------------------------------------------------------------------------------
    def add(self, other: Any, *, alpha: Any = 1) -> TensorList:
        if _is_number(other):
            return TensorList(torch._foreach_add(self.tensors, _scalar(other)))
        scale = _scalar(alpha)
        if isinstance(scale, list):
            result = [t.clone() for t in self.tensors]
            return TensorList(result).add_(other, alpha=alpha)
        return TensorList(torch._foreach_add(self.tensors, _tensors(other), alpha=scale))

    def mul(self, other: Any) -> TensorList:
        return TensorList(torch._foreach_mul(self.tensors, _operand(other)))

    def div(self, other: Any) -> TensorList:
        return TensorList(torch._foreach_div(self.tensors, _operand(other)))

    def addcmul(self, tensor1: TensorList, tensor2: TensorList, *, value: Any = 1) -> TensorList:
        return TensorList(torch._foreach_addcmul(self.tensors, _tensors(tensor1), _tensors(tensor2), _scalar(value)))

    def sqrt(self) -> TensorList:
        return TensorList(torch._foreach_sqrt(self.tensors))

    def abs(self) -> TensorList:
        return TensorList(torch._foreach_abs(self.tensors))

    def sub(self, other: TensorList) -> TensorList:
        return TensorList(torch._foreach_sub(self.tensors, _tensors(other)))

    def reciprocal(self) -> TensorList:
        return TensorList(torch._foreach_reciprocal(self.tensors))

    def sign(self) -> TensorList:
        return TensorList(torch._foreach_sign(self.tensors))

    def neg(self) -> TensorList:
        return TensorList(torch._foreach_neg(self.tensors))

    def log(self) -> TensorList:
        return TensorList(torch._foreach_log(self.tensors))

    def clamp_min(self, value: Any) -> TensorList:
        return TensorList(torch._foreach_clamp_min(self.tensors, _operand(value)))

    def clamp_max(self, value: Any) -> TensorList:
        return TensorList(torch._foreach_clamp_max(self.tensors, _operand(value)))

    def take(self, indices: Sequence[int]) -> TensorList:
        """The tensors at ``indices`` (a rule's branch taken by some tensors only: rules.branches.by_branch)."""
        return TensorList([self.tensors[i] for i in indices])

    def __neg__(self) -> TensorList:
        return TensorList(torch._foreach_neg(self.tensors))

    def __add__(self, other: Any) -> TensorList:
        return self.add(other)

    def __truediv__(self, other: Any) -> TensorList:
        return self.div(other)

    def __mul__(self, other: Any) -> TensorList:
        return self.mul(other)

    def item(self) -> ScalarList:
        """The numbers held by a list of 0-d tensors (NAdam's running products, the step counters): one stack and
        one read for the whole list (one device synchronisation, not one per tensor); exact, since stacking only
        ever widens the dtype."""
        if not self.tensors:
            return ScalarList([])
        return ScalarList(torch.stack(self.tensors).tolist())

    def each(self, fn: Callable[..., Any], *others: Any, **kwargs: Any) -> TensorList | None:
        """``fn`` run once per tensor (``descentlab.rules.per_tensor.each``): the i-th call gets the i-th tensor of
        this list and of every other TensorList argument, the i-th number of every ScalarList, and the rest as
        given — the lift of what has no ``_foreach_*`` op (matrix products, reductions over a dimension, norms
        read as numbers). Returns the results as a list, or None when ``fn`` returns nothing."""
        def pick(value: Any, i: int) -> Any:
            if isinstance(value, TensorList):
                return value.tensors[i]
            return value.values[i] if isinstance(value, ScalarList) else value

        results = [fn(t, *(pick(o, i) for o in others), **{k: pick(v, i) for k, v in kwargs.items()})
                   for i, t in enumerate(self.tensors)]
        return None if all(r is None for r in results) else TensorList(results)

    # -- torch functions the rules call -----------------------------------------------------------
    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is torch.neg and len(args) == 1 and not kwargs:
            return -args[0]
        if func is torch.maximum and len(args) == 2 and set(kwargs) <= {"out"}:
            out = kwargs.get("out")
            if out is not None and out is args[0]:
                return args[0].maximum_(args[1])
            if out is None:
                return TensorList(torch._foreach_maximum(_tensors(args[0]), _tensors(args[1])))
        raise TypeError(f"TensorList does not lift {getattr(func, '__name__', func)!r}; the rule needs a "
                        "single-tensor path")


def _one(like: Tensor) -> Tensor:
    """A 0-d 1 of ``like``'s dtype and device: ``w + a·(1·u)`` by ``addcmul_(1, u, value=a)`` is ``w.add_(u, alpha=a)``
    to the bit (both compute ``w + a·u`` with one rounding — the CPU kernels fuse the multiply-add; checked for every
    rule by ``tests/test_foreach.py``), one call for any number of distinct ``a``."""
    return torch.ones((), dtype=like.dtype, device=like.device)


def _tensors(value: Any) -> list[Tensor]:
    if not isinstance(value, TensorList):
        raise TypeError(f"TensorList: expected another TensorList, got {type(value).__name__}")
    return value.tensors


def _operand(value: Any) -> Any:
    return _tensors(value) if isinstance(value, TensorList) else _scalar(value)
