"""Gradient descent and momentum.

Plain GD (batch, stochastic and mini-batch GD share it; they differ only in the batch ``g`` is
computed on)::

    w ← w − η g

Momentum, ``sum`` form (``torch.optim.SGD``; buffer ``a``, PyTorch's ``momentum_buffer``)::

    a ← β a + (1 − dampening) g        (first step: a ← g, undamped, as PyTorch does)
    w ← w − η a                        (Nesterov: w ← w − η (g + β a))

Momentum, ``ema`` form (the lecture notes; buffer ``v`` starts at 0)::

    v ← β v + (1 − β) g
    w ← w − η v / c                    (c = 1 − β^t with bias correction, else 1;
                                        Nesterov: use (1 − β) g + β v in place of v)

With both buffers at zero, ``v_t = (1 − β) a_t``: the ``ema`` form with rate η equals the ``sum`` form
with rate ``η (1 − β)``.
"""

from __future__ import annotations

from torch import Tensor

from descentlab.rules.common import bias_correction as _bias_correction
from descentlab.rules.common import dense_gradient


def sgd(param: Tensor, grad: Tensor, *, lr: float) -> None:
    """``w ← w − η g`` (a sparse ``g`` touches only its entries, as in ``torch.optim.SGD``)."""
    param.add_(grad, alpha=-lr)


def heavy_ball(
    param: Tensor,
    grad: Tensor,
    momentum_buffer: Tensor,
    *,
    lr: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    first_step: bool,
) -> None:
    """Momentum in the ``sum`` form: ``a ← β a + (1 − d) g`` (``a ← g`` on the first step), ``w ← w − η a``.

    With ``nesterov``: ``w ← w − η (g + β a)`` (the stored look-ahead form of NAG). A sparse ``g`` is added
    densified (``torch.optim.SGD`` keeps a sparse buffer then: equal to rounding).
    """
    grad = dense_gradient(grad)
    if first_step:
        momentum_buffer.copy_(grad)
    else:
        momentum_buffer.mul_(momentum).add_(grad, alpha=1 - dampening)
    direction = grad.add(momentum_buffer, alpha=momentum) if nesterov else momentum_buffer
    param.add_(direction, alpha=-lr)


def ema_momentum(
    param: Tensor,
    grad: Tensor,
    momentum_buffer: Tensor,
    *,
    lr: float,
    beta: float,
    step: float,
    nesterov: bool,
    bias_correction: bool,
) -> None:
    """Momentum in the ``ema`` form: ``v ← β v + (1 − β) g``, ``w ← w − η v / (1 − β^t)?``.

    With ``nesterov``: the direction is ``(1 − β) g + β v``. A sparse ``g`` is added densified.
    """
    grad = dense_gradient(grad)
    momentum_buffer.mul_(beta).add_(grad, alpha=1 - beta)
    direction = grad.mul(1 - beta).add_(momentum_buffer, alpha=beta) if nesterov else momentum_buffer
    scale = lr / _bias_correction(beta, step) if bias_correction else lr
    param.add_(direction, alpha=-scale)
