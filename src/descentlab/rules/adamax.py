"""Adamax (Kingma & Ba 2015, §7.1): Adam with the infinity norm in place of the second moment.

Symbols: ``m`` = ``exp_avg``, ``u`` = ``exp_inf`` (both start at 0), ``t`` the step::

    m ← β₁ m + (1 − β₁) g
    u ← max(β₂ u, |g| + ε)
    w ← w − η / (1 − β₁^t) · m / u

``u`` needs no bias correction (a maximum is not an average). ε is added to ``|g|`` inside the maximum, as
PyTorch does, so ``u ≥ ε`` and the division is always defined; the paper has no ε.
"""

from __future__ import annotations

import torch
from torch import Tensor

from descentlab.rules.common import bias_correction as _bias_correction
from descentlab.rules.common import addcdiv_, maximum_


def adamax(
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
    """One Adamax step."""
    exp_avg.lerp_(grad, 1 - beta1)
    maximum_(exp_inf.mul_(beta2), grad.abs().add_(eps))
    addcdiv_(param, exp_avg, exp_inf, -(lr / _bias_correction(beta1, step)))
