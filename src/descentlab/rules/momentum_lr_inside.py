"""Momentum with the rate inside the buffer (Keras's ``SGD``, optax's RMSprop momentum).

Symbols as in :mod:`descentlab.rules.sgd`; the buffer ``b`` (``momentum_buffer``, starts at 0) accumulates
*steps*, not gradients::

    b ← β b + η_t g;   w ← w − b                 (Keras: m = −b,  m ← β m − η_t g;  w ← w + m)
    nesterov:          w ← w − (β b + η_t g)

With a constant rate ``b_t = η a_t`` (``a`` the ``sum`` form's buffer, which torch starts at ``g``), so this is
``torch.optim.SGD`` exactly; once a schedule changes ``η_t`` the two differ: here each gradient keeps the rate
of the step it arrived at, there every past gradient is rescaled by today's rate.
"""

from __future__ import annotations

from torch import Tensor


def heavy_ball_lr_inside(
    param: Tensor,
    grad: Tensor,
    momentum_buffer: Tensor,
    *,
    lr: float,
    momentum: float,
    nesterov: bool,
) -> None:
    """``b ← β b + η g``;  ``w ← w − b`` (``nesterov``: ``w ← w − (β b + η g)``)."""
    momentum_buffer.mul_(momentum).add_(grad, alpha=lr)
    if nesterov:
        param.add_(grad, alpha=-lr).add_(momentum_buffer, alpha=-momentum)
    else:
        param.add_(momentum_buffer, alpha=-1.0)
