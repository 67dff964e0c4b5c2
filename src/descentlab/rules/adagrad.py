"""Adagrad (Duchi, Hazan & Singer 2011).

Symbols: ``G`` is PyTorch's ``sum`` (starts at ``initial_accumulator_value``), ``t`` the step::

    η_t = η / (1 + (t − 1) · lr_decay)
    G   ← G + g²
    w   ← w − η_t g / D,        D = √G + ε  (outside, PyTorch)  or  √(G + ε)  (inside)

``G`` only grows, so the effective step ``η_t / D`` shrinks towards zero.
"""

from __future__ import annotations

from torch import Tensor

from descentlab.rules.common import EpsPlacement, root_with_eps


def adagrad(
    param: Tensor,
    grad: Tensor,
    sum_: Tensor,
    *,
    step: float,
    lr: float,
    lr_decay: float,
    eps: float,
    eps_placement: EpsPlacement,
) -> None:
    """One Adagrad step; ``sum_`` is ``G``."""
    clr = lr / (1 + (step - 1) * lr_decay)
    sum_.addcmul_(grad, grad, value=1)
    std = root_with_eps(sum_, eps, eps_placement)
    param.addcdiv_(grad, std, value=-clr)
