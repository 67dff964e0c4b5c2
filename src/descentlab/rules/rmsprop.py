"""RMSProp (Hinton, lecture 6e) and its centered variant (Graves 2013).

Symbols: ``S`` = ``square_avg``, β = PyTorch's ``alpha``, ``ḡ`` = ``grad_avg`` (centered only),
``b`` = ``momentum_buffer`` (momentum only)::

    S ← β S + (1 − β) g²
    (centered)  ḡ ← β ḡ + (1 − β) g;   S' = max(S − ḡ², 0)   (else S' = S)
    D = √S' + ε  (outside, PyTorch)   or   √(S' + ε)  (inside: lecture notes, Keras)
    w ← w − η g / D                          (no momentum)
    b ← μ b + g / D;   w ← w − η b           (momentum μ > 0)
"""

from __future__ import annotations

from torch import Tensor

from descentlab.rules.common import EpsPlacement, root_with_eps


def _apply(param: Tensor, grad: Tensor, denom: Tensor, momentum_buffer: Tensor | None, lr: float, momentum: float) -> None:
    if momentum_buffer is None:
        param.addcdiv_(grad, denom, value=-lr)
    else:
        momentum_buffer.mul_(momentum).addcdiv_(grad, denom)
        param.add_(momentum_buffer, alpha=-lr)


def rmsprop(
    param: Tensor,
    grad: Tensor,
    square_avg: Tensor,
    momentum_buffer: Tensor | None = None,
    *,
    lr: float,
    alpha: float,
    eps: float,
    momentum: float,
    eps_placement: EpsPlacement,
) -> None:
    """One RMSProp step; pass ``momentum_buffer`` exactly when ``momentum > 0``."""
    square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
    denom = root_with_eps(square_avg, eps, eps_placement)
    _apply(param, grad, denom, momentum_buffer, lr, momentum)


def centered_rmsprop(
    param: Tensor,
    grad: Tensor,
    square_avg: Tensor,
    grad_avg: Tensor,
    momentum_buffer: Tensor | None = None,
    *,
    lr: float,
    alpha: float,
    eps: float,
    momentum: float,
    eps_placement: EpsPlacement,
) -> None:
    """One centered RMSProp step: the variance ``S − ḡ²`` replaces ``S``."""
    square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
    grad_avg.lerp_(grad, 1 - alpha)
    # S − ḡ² ≥ 0 in exact arithmetic; rounding can make it slightly negative (always with β = 0), where
    # √ would give NaN (as in torch). Clamping leaves every non-negative value bit-for-bit unchanged.
    variance = square_avg.addcmul(grad_avg, grad_avg, value=-1).clamp_min_(0)
    denom = root_with_eps(variance, eps, eps_placement)
    _apply(param, grad, denom, momentum_buffer, lr, momentum)
