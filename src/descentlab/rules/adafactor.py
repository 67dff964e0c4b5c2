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
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from descentlab.rules.per_tensor import each


def _scales(param: Tensor, step: float, lr: float, beta2_decay: float, eps1: float | None, eps2: float
            ) -> tuple[float, float, float]:
    """``(1 − β̂₂, α, ε₁)`` of one tensor at step ``t``."""
    one_minus_beta2 = step**beta2_decay
    rho = min(lr, 1 / (step**0.5))
    alpha = max(eps2, param.norm(2).item() / (param.numel() ** 0.5)) * rho
    return one_minus_beta2, alpha, torch.finfo(param.dtype).eps if eps1 is None else eps1


def _apply(param: Tensor, grad: Tensor, var_estimate: Tensor, alpha: float, eps1: float, d: float) -> None:
    update = var_estimate.clamp_(min=eps1 * eps1).rsqrt_()
    update.mul_(grad)
    denom = max(1.0, update.norm(2).item() / ((update.numel() ** 0.5) * d))
    param.add_(update, alpha=-alpha / denom)


def _factored_one(param: Tensor, grad: Tensor, row_var: Tensor, col_var: Tensor, *, step: float, lr: float,
                  beta2_decay: float, eps1: float | None, eps2: float, d: float, weight_decay: float) -> None:
    if param.numel() == 0:
        return  # nothing to step (torch divides by numel = 0 here and raises ZeroDivisionError)
    one_minus_beta2, alpha, eps1 = _scales(param, step, lr, beta2_decay, eps1, eps2)
    if weight_decay != 0:
        param.mul_(1 - lr * weight_decay)
    row_mean = torch.norm(grad, dim=-1, keepdim=True).square_().div_(grad.size(-1))  # mean(g², last dim)
    row_var.lerp_(row_mean, one_minus_beta2)
    col_mean = torch.norm(grad, dim=-2, keepdim=True).square_().div_(grad.size(-2))
    col_var.lerp_(col_mean, one_minus_beta2)
    var_estimate = row_var @ col_var
    var_estimate.div_(row_var.mean(dim=-2, keepdim=True).clamp_(min=eps1))
    _apply(param, grad, var_estimate, alpha, eps1, d)


def _vector_one(param: Tensor, grad: Tensor, variance: Tensor, *, step: float, lr: float, beta2_decay: float,
                eps1: float | None, eps2: float, d: float, weight_decay: float) -> None:
    if param.numel() == 0:
        return  # as above
    one_minus_beta2, alpha, eps1 = _scales(param, step, lr, beta2_decay, eps1, eps2)
    if weight_decay != 0:
        param.mul_(1 - lr * weight_decay)
    variance.lerp_(grad * grad, one_minus_beta2)
    _apply(param, grad, variance.clone(), alpha, eps1, d)


def adafactor_factored(param: Tensor, grad: Tensor, row_var: Tensor, col_var: Tensor, *, step: Any, lr: float,
                       beta2_decay: float, eps1: float | None, eps2: float, d: float, weight_decay: float) -> None:
    """One Adafactor step of a tensor with two or more dimensions (factored ``row_var``, ``col_var``)."""
    each(_factored_one, param, grad, row_var, col_var, step=step, lr=lr, beta2_decay=beta2_decay, eps1=eps1,
         eps2=eps2, d=d, weight_decay=weight_decay)


def adafactor_vector(param: Tensor, grad: Tensor, variance: Tensor, *, step: Any, lr: float, beta2_decay: float,
                     eps1: float | None, eps2: float, d: float, weight_decay: float) -> None:
    """One Adafactor step of a vector or a 0-d tensor (an unfactored ``variance``)."""
    each(_vector_one, param, grad, variance, step=step, lr=lr, beta2_decay=beta2_decay, eps1=eps1, eps2=eps2, d=d,
         weight_decay=weight_decay)
