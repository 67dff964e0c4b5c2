"""Rprop (Riedmiller & Braun 1993), in PyTorch's form: per-coordinate step sizes driven by the sign of g only.

Symbols: ``p`` = ``prev`` (the previous gradient, starts at 0), ``Δ`` = ``step_size`` (starts at η),
``(η₋, η₊)`` = ``etas``, ``[Δ_min, Δ_max]`` = ``step_sizes``, element-wise::

    s = sign(g · p)
    f = η₊ if s > 0,   η₋ if s < 0,   1 if s = 0
    Δ ← clamp(Δ · f, Δ_min, Δ_max)
    g ← 0 where s < 0                       (after a sign change the coordinate rests one step)
    w ← w − sign(g) · Δ
    p ← g

The learning rate enters only as the initial step size. PyTorch writes the selections with masks
(``sign[sign.gt(0)] = η₊``, ``grad[sign.eq(η₋)] = 0``); here they are arithmetic on the 0/±1 values of ``s``,
every op exact (``u = max(s, 0)``, ``d = min(s, 0)``: ``f = (d − u + 1) + η₊ u − η₋ d``; the rested gradient is
``clamp(g, L, |L|)`` with ``L = log(−d)``, i.e. 0 where ``s < 0`` and ``−∞`` elsewhere), so that the same code
runs as ``torch._foreach_*`` calls on the multi-tensor path and still equals ``torch.optim.Rprop`` bit for bit
(``torch.sign`` of NaN is 0 on the CPU, so a NaN product leaves Δ unchanged, as there). One difference: where
``η₋`` rounds to 1 in the tensor's dtype (η₋ within 3e-8 of 1 in float32) PyTorch's ``eq(η₋)`` also rests the
coordinates with ``s = 0``; this rule rests only those with ``s < 0``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def rprop(
    param: Tensor,
    grad: Tensor,
    prev: Tensor,
    step_size: Tensor,
    *,
    etaminus: float,
    etaplus: float,
    step_size_min: float,
    step_size_max: float,
) -> None:
    """One Rprop step."""
    sign = grad.mul(prev.clone() if torch.is_grad_enabled() else prev).sign()  # prev is overwritten below
    up, down = sign.clamp_min(0), sign.clamp_max(0)  # 1 where s > 0; −1 where s < 0
    factor = down.add(up, alpha=-1).add_(1).add_(up, alpha=etaplus).add_(down, alpha=-etaminus)
    step_size.mul_(factor).clamp_(step_size_min, step_size_max)
    low = down.neg().log()  # 0 where s < 0, −inf elsewhere
    rested = grad.clamp_min(low).clamp_max_(low.abs())
    param.addcmul_(rested.sign(), step_size, value=-1)
    prev.copy_(rested)
