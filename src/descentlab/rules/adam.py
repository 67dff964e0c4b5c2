"""Adam (Kingma & Ba 2015) and AMSGrad (Reddi, Kale & Kumar 2018, PyTorch's form).

Symbols: ``m`` = ``exp_avg``, ``v`` = ``exp_avg_sq``, ``v_max`` = ``max_exp_avg_sq``::

    m ← β₁ m + (1 − β₁) g
    v ← β₂ v + (1 − β₂) g²
    (AMSGrad)  v_max ← max(v_max, v);  use v_max in place of v below
    m̂ = m / (1 − β₁^t),   v̂ = v / (1 − β₂^t)     (both factors are 1 without bias correction)
    w ← w − η m̂ / D,      D = √v̂ + ε  (outside: the paper, PyTorch)  or  √(v̂ + ε)  (inside: notes)

Decoupled weight decay (AdamW) is applied to ``w`` before this rule, coupled decay to ``g``.
"""

from __future__ import annotations

from torch import Tensor

from descentlab.rules.common import EpsPlacement, addcdiv_, maximum_
from descentlab.rules.common import bias_correction as _bias_correction

import torch


def _update_moments(grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, beta1: float, beta2: float) -> None:
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)


def _apply(
    param: Tensor,
    exp_avg: Tensor,
    second: Tensor,
    *,
    step: float,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    eps_placement: EpsPlacement,
    bias_correction: bool,
) -> None:
    c1 = _bias_correction(beta1, step) if bias_correction else 1.0
    c2 = _bias_correction(beta2, step) if bias_correction else 1.0
    if eps_placement == "outside":
        denom = (second.sqrt() / c2**0.5).add_(eps)
    else:
        denom = (second / c2).add_(eps).sqrt_()
    addcdiv_(param, exp_avg, denom, -(lr / c1))


def adam(
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
    eps_placement: EpsPlacement,
    bias_correction: bool,
) -> None:
    """One Adam step."""
    _update_moments(grad, exp_avg, exp_avg_sq, beta1, beta2)
    _apply(param, exp_avg, exp_avg_sq, step=step, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
           eps_placement=eps_placement, bias_correction=bias_correction)


def amsgrad(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    max_exp_avg_sq: Tensor,
    *,
    step: float,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    eps_placement: EpsPlacement,
    bias_correction: bool,
) -> None:
    """One AMSGrad step: the running maximum of the raw ``v`` replaces ``v``."""
    _update_moments(grad, exp_avg, exp_avg_sq, beta1, beta2)
    maximum_(max_exp_avg_sq, exp_avg_sq)
    _apply(param, exp_avg, max_exp_avg_sq, step=step, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
           eps_placement=eps_placement, bias_correction=bias_correction)
