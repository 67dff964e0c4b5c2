"""RAdam (Liu et al. 2020, "On the variance of the adaptive learning rate and beyond"): Adam whose adaptive rate
is switched on only once its variance is tractable, and then rectified.

Symbols: ``m`` = ``exp_avg``, ``v`` = ``exp_avg_sq`` (both start at 0), ``t`` the step::

    m ← β₁ m + (1 − β₁) g
    v ← β₂ v + (1 − β₂) g²
    m̂ = m / (1 − β₁^t)
    ρ_∞ = 2 / (1 − β₂) − 1;   ρ_t = ρ_∞ − 2 t β₂^t / (1 − β₂^t)
    ρ_t > 5:   l = √(1 − β₂^t) / (√v + ε);   r = √((ρ_t − 4)(ρ_t − 2) ρ_∞ / ((ρ_∞ − 4)(ρ_∞ − 2) ρ_t))
               w ← w − η m̂ r l
    else:      w ← w − η m̂                      (momentum SGD with a bias-corrected buffer)

With β₂ = 0.999 the first 5 steps take the un-rectified branch (ρ_t ≤ 5 up to t = 5). The tensor ops are
PyTorch's, in its order (``((m / c₁) · η) · l · r`` with ``l = (√v + ε)⁻¹ · √c₂``), so the reference path
equals ``torch.optim.RAdam`` bit for bit. On the multi-tensor path tensors whose step counters disagree may
take different branches: each side is one pass (:func:`descentlab.rules.branches.by_branch`); under
``torch.compile`` the branch is a ``torch.where``, as torch's ``capturable`` path writes it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from descentlab.rules.branches import by_branch, is_traced
from descentlab.rules.common import bias_correction as _bias_correction


def sma_length(beta2: float, step: float) -> float:
    """``ρ_t = ρ_∞ − 2 t β₂^t / (1 − β₂^t)``, the length of the approximated simple moving average."""
    rho_inf = 2 / (1 - beta2) - 1
    return rho_inf - 2 * step * (beta2**step) / _bias_correction(beta2, step)


def rectification(beta2: float, rho: float) -> float:
    """``r_t = √((ρ_t − 4)(ρ_t − 2) ρ_∞ / ((ρ_∞ − 4)(ρ_∞ − 2) ρ_t))`` (meaningful for ρ_t > 5)."""
    rho_inf = 2 / (1 - beta2) - 1
    return ((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho)) ** 0.5


def radam(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    *,
    step: float,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
) -> None:
    """One RAdam step."""
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    c1, c2 = _bias_correction(beta1, step), _bias_correction(beta2, step)
    rho = sma_length(beta2, step)
    if is_traced(rho):  # torch.compile: no Python branch on a traced value
        adaptive = exp_avg_sq.sqrt().add(eps).reciprocal() * c2**0.5
        traced: Any = rho  # a 0-d tensor here
        update = torch.where(traced > 5.0, rectification(beta2, rho) * adaptive, 1.0)
        param.add_(exp_avg / c1 * lr * update, alpha=-1.0)
        return
    for rectified, (w, m, v, c1_, c2_, rho_) in by_branch(rho > 5.0, param, exp_avg, exp_avg_sq, c1, c2, rho):
        corrected = m / c1_ * lr
        if rectified:
            adaptive = v.sqrt().add(eps).reciprocal() * c2_**0.5  # torch's  √c₂ / (√v + ε)
            w.add_(corrected * adaptive * rectification(beta2, rho_), alpha=-1.0)
        else:
            w.add_(corrected, alpha=-1.0)
