"""Pieces every rule shares: gradient preparation, weight decay, bias correction, ε placement."""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Iterator, Literal, overload

import torch
from torch import Tensor

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

EpsPlacement = Literal["inside", "outside"]
EPS_PLACEMENTS: tuple[str, ...] = ("inside", "outside")


def prepare_gradient(param: Tensor, grad: Tensor, *, weight_decay: float, maximize: bool) -> Tensor:
    """Return the gradient the rule should follow.

    ``g ← −g`` when maximising, then coupled (L2) weight decay ``g ← g + λ w``.
    The parameter's own ``.grad`` is never modified.
    """
    if maximize:
        grad = torch.neg(grad)
    if weight_decay != 0:
        grad = grad.add(param, alpha=weight_decay)
    return grad


def dense_gradient(grad: Any) -> Any:
    """A sparse gradient as a dense tensor (duplicate indices summed), for rules whose state is dense anyway (the
    momentum buffers); anything else as it is."""
    return grad.to_dense() if isinstance(grad, Tensor) and grad.is_sparse else grad


#: Set (by :func:`tensor_scalars`) while an executor runs a ``capturable=True`` group's step.
_TENSOR_SCALARS: ContextVar[bool] = ContextVar("descentlab_tensor_scalars", default=False)


@contextmanager
def tensor_scalars() -> Iterator[None]:
    """Within the block, :func:`host_value` returns the 0-d state tensors as tensors (float64 copies on CUDA and the
    CPU), not numbers: the step of a ``capturable=True`` group, whose step scalars (``1 − β^t`` and the like) must
    stay tensors on the parameter's device — no ``.item()``, no host synchronisation, so the step can be captured in
    a CUDA graph. The executor that runs such a group enters it (a context variable: it holds for this thread's
    step only)."""
    token = _TENSOR_SCALARS.set(True)
    try:
        yield
    finally:
        _TENSOR_SCALARS.reset(token)


def host_value(counter: Any) -> Any:
    """The number a 0-d state tensor holds (``step``, NAdam's ``Π``), for the rule's Python-float scalars — or the
    tensor itself while ``torch.compile`` traces the step or a ``capturable`` step runs (:func:`tensor_scalars`):
    a Python float taken from a tensor inside a graph becomes a dynamic float, which Inductor has been seen to get
    wrong (``1 − β^t`` off from step 3, Adam 38 % off after 12 steps); with the tensor the scalars are ordinary
    graph values, and a capturable step reads nothing back to the host."""
    if torch.compiler.is_compiling():
        return counter
    if _TENSOR_SCALARS.get():
        # float64 scalars where the device has float64, so 1 − β₂ᵗ keeps the precision of the Python-float path (a
        # float32 1 − 0.999ᵗ loses four digits to cancellation); 0-d tensors never widen the tensors they scale
        wide = isinstance(counter, Tensor) and counter.device.type in ("cuda", "cpu") and counter.dtype != torch.float64
        return counter.to(torch.float64) if wide else counter
    return counter.item()


def addcdiv_(out: Tensor, tensor1: Tensor, tensor2: Tensor, value: Any) -> Tensor:
    """``out ← out + value · tensor1 / tensor2`` in place. ``value`` is a Python number on the reference path (then
    exactly ``Tensor.addcdiv_``); a 0-d tensor in a capturable step, where ``addcdiv_``'s ``value`` would be read to
    the host (``aten._local_scalar_dense``, a device synchronisation): it is then multiplied in as a tensor."""
    if isinstance(value, Tensor) and not torch.compiler.is_compiling():
        return out.add_(torch.div(tensor1, tensor2).mul_(value))
    return out.addcdiv_(tensor1, tensor2, value=value)


def decay_weights(param: Tensor, *, lr: float, weight_decay: float) -> None:
    """Decoupled weight decay (AdamW): ``w ← w − η λ w``, applied before the rule."""
    if weight_decay != 0:
        param.mul_(1 - lr * weight_decay)


@overload
def bias_correction(beta: float, step: float) -> float: ...
@overload
def bias_correction(beta: float, step: NDArray[np.float64]) -> NDArray[np.float64]: ...
def bias_correction(beta: float, step: Any) -> Any:
    """``1 − β^t`` computed in Python float (float64) — or a float64 array of steps — never in a tensor's dtype."""
    return 1.0 - beta**step


def root_with_eps(x: Tensor, eps: float, placement: EpsPlacement) -> Tensor:
    """A new tensor ``√(x + ε)`` (``placement="inside"``) or ``√x + ε`` (``"outside"``)."""
    if placement == "inside":
        return x.add(eps).sqrt_()
    return x.sqrt() + eps  # not add_: √'s backward reads its output (differentiable steps)


def maximum_(out: Tensor, other: Tensor) -> Tensor:
    """``out ← max(out, other)`` in place. While autograd records the step (``differentiable=True``) the old
    ``out`` is kept for the backward pass, since an ``out=`` op cannot be differentiated."""
    if torch.is_grad_enabled() and isinstance(out, Tensor) and (out.requires_grad or other.requires_grad):
        return out.copy_(torch.maximum(out.clone(), other))
    return torch.maximum(out, other, out=out)
