"""Adamax with ε outside the maximum (``keras.optimizers.Adamax``).

Symbols as in :mod:`descentlab.rules.adamax` (``m`` = ``exp_avg``, ``u`` = ``exp_inf``, both start at 0)::

    m ← β₁ m + (1 − β₁) g
    u ← max(β₂ u, |g|)
    w ← w − η / (1 − β₁^t) · m / (u + ε)

PyTorch and optax add ε to ``|g|`` inside the maximum instead (:func:`descentlab.rules.adamax.adamax`), so their
``u`` carries a decayed ε; the two agree until a step where ``β₂ u`` wins the maximum.
"""

from __future__ import annotations

from torch import Tensor

from descentlab.rules.common import bias_correction as _bias_correction
from descentlab.rules.common import addcdiv_, maximum_


def adamax_eps_outside(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_inf: Tensor,
    *,
    step: float,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
) -> None:
    """One Adamax step with ``u ← max(β₂ u, |g|)`` and ``D = u + ε``."""
    exp_avg.lerp_(grad, 1 - beta1)
    maximum_(exp_inf.mul_(beta2), grad.abs())
    addcdiv_(param, exp_avg, exp_inf.add(eps), -(lr / _bias_correction(beta1, step)))
