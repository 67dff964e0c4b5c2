"""Adafactor (Shazeer & Stern 2018) as torch.optim.Adafactor computes it: factored second moments, a relative
step size and update clipping.

Symbols: ``t`` the step, ``τ`` = ``beta2_decay`` (≤ 0), ``η`` = ``lr``, ``(ε₁, ε₂)`` = ``eps`` (ε₁ = None: the
machine epsilon of the parameter's dtype), ``d`` the clipping threshold, ``λ`` = ``weight_decay``,
``RMS(x) = ‖x‖₂ / √numel(x)``::

    β̂₂ = 1 − t^τ;   ρ = min(η, 1/√t);   α = max(ε₂, RMS(w)) · ρ          (RMS of w before the decay)
    w ← w (1 − η λ)
    matrix (dim ≥ 2, factored over the last two dimensions; state row_var R, col_var C, both start at 0):
        R ← β̂₂ R + (1 − β̂₂) mean_{last}(g²)           (a column: one number per row)
        C ← β̂₂ C + (1 − β̂₂) mean_{second-last}(g²)    (a row: one number per column)
        V̂ = R C / max(mean(R), ε₁)                     (the rank-1 estimate of the second moment)
    vector (dim ≤ 1; state variance V, starts at 0):
        V ← β̂₂ V + (1 − β̂₂) g²;   V̂ = V
    U = g / max(√V̂, ε₁)                                (as clamp(V̂, ε₁²)^(−1/2) · g)
    w ← w − α / max(1, RMS(U)/d) · U

Conventions: the paper uses no η (ρ = min(0.01, 1/√t)), adds ε₁ to g² inside the factors and divides by the
plain row mean; torch uses η as ρ's cap and the decay coefficient and applies ε₁ afterwards (clamps), and means
instead of sums (the same estimate). These rules follow torch exactly, operation by operation.

Every path runs this code: on the reference loop ``param`` is one tensor and ``step`` a number; on the
multi-tensor path they are a ``TensorList`` and a ``ScalarList`` (``descentlab.fused.tensor_list``), so the norms
read as numbers (``RMS(w)``, ``RMS(U)``) are one ``_foreach_norm`` and one read for the whole list, the scalars
``α``, ``β̂₂`` and the clipping are per-tensor numbers, and the element-wise updates are one ``_foreach_*`` call
each. Only the factored second moment's reductions over one dimension and its rank-1 product have no
``_foreach_*`` op; they run tensor by tensor (``rules.per_tensor.each``), the same ops on the same tensors.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from descentlab.rules.branches import by_branch, elementwise
from descentlab.rules.per_tensor import each


def _scales(param: Any, step: Any, lr: float, beta2_decay: float, eps1: float | None, eps2: float
            ) -> tuple[Any, Any, float]:
    """``(1 − β̂₂, α, ε₁)`` at step ``t``: numbers for one tensor, per-tensor lists for a list (``RMS(w)`` read
    from one norm per tensor)."""
    one_minus_beta2 = step**beta2_decay
    rho = elementwise(lambda t: min(lr, 1 / (t**0.5)), step)
    rms = param.norm(2).item() / (param.numel() ** 0.5)
    alpha = elementwise(lambda r: max(eps2, r), rms) * rho
    return one_minus_beta2, alpha, torch.finfo(param.dtype).eps if eps1 is None else eps1


def _apply(param: Any, grad: Any, update: Any, alpha: Any, d: float) -> None:
    """``w ← w − α / max(1, RMS(U)/d) · U`` with ``U = g · update^(−1/2)`` (``update``: V̂ clamped to ε₁², owned)."""
    update.rsqrt_()
    update.mul_(grad)
    denom = elementwise(lambda r: max(1.0, r), update.norm(2).item() / ((update.numel() ** 0.5) * d))
    param.add_(update, alpha=-alpha / denom)


def _norm_over(grad: Tensor, *, dim: int) -> Tensor:
    return torch.norm(grad, dim=dim, keepdim=True)


def _product(row_var: Tensor, col_var: Tensor) -> Tensor:
    return row_var @ col_var


def _row_mean(row_var: Tensor) -> Tensor:
    return row_var.mean(dim=-2, keepdim=True)


def _factored_estimate(grad: Any, row_var: Any, col_var: Any, one_minus_beta2: Any, eps1: float) -> Any:
    """The factored moments updated, and the rank-1 estimate ``V̂`` (new tensors): the reductions over one
    dimension and the product per tensor, the rest element-wise."""
    row_mean = each(_norm_over, grad, dim=-1).square_().div_(grad.size(-1))  # mean(g², last dim)
    row_var.lerp_(row_mean, one_minus_beta2)
    col_mean = each(_norm_over, grad, dim=-2).square_().div_(grad.size(-2))
    col_var.lerp_(col_mean, one_minus_beta2)
    var_estimate = each(_product, row_var, col_var)
    var_estimate.div_(each(_row_mean, row_var).clamp_min_(eps1))
    return var_estimate


def adafactor_factored(param: Tensor, grad: Tensor, row_var: Tensor, col_var: Tensor, *, step: Any, lr: float,
                       beta2_decay: float, eps1: float | None, eps2: float, d: float, weight_decay: float) -> None:
    """One Adafactor step of a tensor with two or more dimensions (factored ``row_var``, ``col_var``)."""
    for nonempty, (p, g, rows, cols, t) in by_branch(param.numel() > 0, param, grad, row_var, col_var, step):
        if not nonempty:
            continue  # nothing to step (torch divides by numel = 0 here and raises ZeroDivisionError)
        one_minus_beta2, alpha, eps = _scales(p, t, lr, beta2_decay, eps1, eps2)
        if weight_decay != 0:
            p.mul_(1 - lr * weight_decay)
        _apply(p, g, _factored_estimate(g, rows, cols, one_minus_beta2, eps).clamp_min_(eps * eps), alpha, d)


def adafactor_vector(param: Tensor, grad: Tensor, variance: Tensor, *, step: Any, lr: float, beta2_decay: float,
                     eps1: float | None, eps2: float, d: float, weight_decay: float) -> None:
    """One Adafactor step of a vector or a 0-d tensor (an unfactored ``variance``)."""
    for nonempty, (p, g, v, t) in by_branch(param.numel() > 0, param, grad, variance, step):
        if not nonempty:
            continue  # as above
        one_minus_beta2, alpha, eps = _scales(p, t, lr, beta2_decay, eps1, eps2)
        if weight_decay != 0:
            p.mul_(1 - lr * weight_decay)
        v.lerp_(g * g, one_minus_beta2)
        _apply(p, g, v.clamp_min(eps * eps), alpha, d)
