"""NAdam (Dozat 2016), in PyTorch's form with momentum decay ψ.

Symbols: ``m`` = ``exp_avg``, ``v`` = ``exp_avg_sq``, ``Π`` = ``mu_product`` (starts at 1)::

    μ_t = β₁ (1 − ½ · 0.96^(t ψ)),   μ_{t+1} likewise;   Π ← Π μ_t
    m ← β₁ m + (1 − β₁) g
    v ← β₂ v + (1 − β₂) g²
    v̂ = v / (1 − β₂^t);   D = √v̂ + ε (outside, PyTorch) or √(v̂ + ε) (inside)
    w ← w − η (1 − μ_t) / (1 − Π) · g / D − η μ_{t+1} / (1 − Π μ_{t+1}) · m / D
"""

from __future__ import annotations

from torch import Tensor

from descentlab.rules.common import EpsPlacement, addcdiv_, host_value, root_with_eps
from descentlab.rules.common import bias_correction as _bias_correction


def momentum_coefficient(beta1: float, momentum_decay: float, step: float) -> float:
    """``μ_t = β₁ (1 − ½ · 0.96^(t ψ))`` in Python float (float64)."""
    return beta1 * (1.0 - 0.5 * (0.96 ** (step * momentum_decay)))


def nadam(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    mu_product: Tensor,
    *,
    step: float,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    momentum_decay: float,
    eps_placement: EpsPlacement,
) -> None:
    """One NAdam step; ``mu_product`` is a 0-d tensor updated in place."""
    c2 = _bias_correction(beta2, step)
    mu = momentum_coefficient(beta1, momentum_decay, step)
    mu_next = momentum_coefficient(beta1, momentum_decay, step + 1)
    mu_product.mul_(mu)
    product = host_value(mu_product)
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    denom = root_with_eps(exp_avg_sq.div(c2), eps, eps_placement)
    addcdiv_(param, grad, denom, -lr * (1.0 - mu) / (1.0 - product))
    addcdiv_(param, exp_avg, denom, (-lr * mu_next) / (1.0 - product * mu_next))
