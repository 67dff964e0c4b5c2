"""RMSProp's momentum in the forms of Keras and optax: the rate inside the buffer, and Nesterov's look-ahead.

Symbols as in :mod:`descentlab.rules.rmsprop` (``S``, ``ḡ``, ``D``, buffer ``b`` = ``momentum_buffer``, μ =
``momentum``); ``S`` starts at ``initial_scale`` (the optimizer's ``_init_state``), the rest at 0::

    S ← β S + (1 − β) g²;   (centered) ḡ ← β ḡ + (1 − β) g;  D from S (or S − ḡ²) as in rules.rmsprop
    lr_in_buffer=False:  b ← μ b + g / D;      w ← w − η b          (PyTorch; as rules.rmsprop)
        nesterov:                              w ← w − η (g / D + μ b)
    lr_in_buffer=True:   b ← μ b + η g / D;    w ← w − b            (Keras, TensorFlow, optax)
        nesterov:                              w ← w − (η g / D + μ b)      (optax ``nesterov=True``)

At a constant rate the two buffer forms agree (``b_inside = η b_outside``); with a schedule they differ. The
plain forms (no Nesterov, rate outside) stay in :mod:`descentlab.rules.rmsprop`, which has a C kernel.
"""

from __future__ import annotations

from torch import Tensor

from descentlab.rules.common import EpsPlacement, root_with_eps


def _momentum_step(param: Tensor, grad: Tensor, denom: Tensor, buf: Tensor, *, lr: float, momentum: float,
                   lr_in_buffer: bool, nesterov: bool) -> None:
    if lr_in_buffer:
        buf.mul_(momentum).addcdiv_(grad, denom, value=lr)
        if nesterov:
            param.addcdiv_(grad, denom, value=-lr).add_(buf, alpha=-momentum)
        else:
            param.add_(buf, alpha=-1.0)
    else:
        buf.mul_(momentum).addcdiv_(grad, denom)
        if nesterov:
            param.addcdiv_(grad, denom, value=-lr).add_(buf, alpha=-lr * momentum)
        else:
            param.add_(buf, alpha=-lr)


def rmsprop_momentum(
    param: Tensor,
    grad: Tensor,
    square_avg: Tensor,
    momentum_buffer: Tensor,
    *,
    lr: float,
    alpha: float,
    eps: float,
    momentum: float,
    eps_placement: EpsPlacement,
    lr_in_buffer: bool,
    nesterov: bool,
) -> None:
    """One RMSProp step with momentum in the form ``lr_in_buffer`` / ``nesterov`` name."""
    square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
    denom = root_with_eps(square_avg, eps, eps_placement)
    _momentum_step(param, grad, denom, momentum_buffer, lr=lr, momentum=momentum, lr_in_buffer=lr_in_buffer,
                   nesterov=nesterov)


def centered_rmsprop_momentum(
    param: Tensor,
    grad: Tensor,
    square_avg: Tensor,
    grad_avg: Tensor,
    momentum_buffer: Tensor,
    *,
    lr: float,
    alpha: float,
    eps: float,
    momentum: float,
    eps_placement: EpsPlacement,
    lr_in_buffer: bool,
    nesterov: bool,
) -> None:
    """One centered RMSProp step (``S − ḡ²`` in place of ``S``) with momentum in the named form."""
    square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
    grad_avg.lerp_(grad, 1 - alpha)
    variance = square_avg.addcmul(grad_avg, grad_avg, value=-1).clamp_min_(0)  # as rules.rmsprop
    denom = root_with_eps(variance, eps, eps_placement)
    _momentum_step(param, grad, denom, momentum_buffer, lr=lr, momentum=momentum, lr_in_buffer=lr_in_buffer,
                   nesterov=nesterov)
