"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"): the sign of an interpolated
momentum as the step.

Symbols: ``m`` = ``exp_avg`` (starts at 0), ``β₁`` interpolates the step direction, ``β₂`` the momentum::

    c ← β₁ m + (1 − β₁) g
    w ← w − η sign(c)
    m ← β₂ m + (1 − β₂) g

Every coordinate moves by exactly ``η`` (or 0 where ``c = 0``), so Lion's rates are typically 3–10× smaller than
Adam's. ``c`` is computed as ``m·β₁`` then ``+ (1 − β₁) g`` (not a lerp), and ``m`` as ``m·β₂ + (1 − β₂) g``,
in the order lion-pytorch computes them, so the two round alike. ``sign(NaN) = 0`` in torch (and in
lion-pytorch): a NaN gradient does not reach the weights, it stays in ``m`` and freezes that coordinate.
"""

from __future__ import annotations

from torch import Tensor


def lion(param: Tensor, grad: Tensor, exp_avg: Tensor, *, lr: float, beta1: float, beta2: float) -> None:
    """One Lion step (decoupled weight decay is the executor's, applied before: ``w ← w (1 − η λ)``)."""
    update = exp_avg.mul(beta1).add_(grad, alpha=1 - beta1).sign()
    param.add_(update, alpha=-lr)
    exp_avg.mul_(beta2).add_(grad, alpha=1 - beta2)
