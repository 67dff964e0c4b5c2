"""Adadelta (Zeiler 2012).

Symbols: ``G`` = ``square_avg`` (EMA of g²), ``H`` = ``acc_delta`` (EMA of Δ²), γ = ``rho``::

    G ← γ G + (1 − γ) g²
    Δ ← RMS(H) / RMS(G) · g
    H ← γ H + (1 − γ) Δ²
    w ← w − η Δ

with ``RMS(x) = √(x + ε)`` (``eps_placement="inside"``: the paper, PyTorch, Keras) or ``√x + ε``
(``"outside"``: the lecture notes). η = 1 reproduces the pure algorithm.
"""

from __future__ import annotations

from torch import Tensor

from descentlab.rules.common import EpsPlacement, root_with_eps


def adadelta(
    param: Tensor,
    grad: Tensor,
    square_avg: Tensor,
    acc_delta: Tensor,
    *,
    lr: float,
    rho: float,
    eps: float,
    eps_placement: EpsPlacement,
) -> None:
    """One Adadelta step."""
    square_avg.mul_(rho).addcmul_(grad, grad, value=1 - rho)
    std = root_with_eps(square_avg, eps, eps_placement)
    delta = root_with_eps(acc_delta, eps, eps_placement).div(std).mul_(grad)  # div: √'s output stays for autograd
    acc_delta.mul_(rho).addcmul_(delta, delta, value=1 - rho)
    param.add_(delta, alpha=-lr)
