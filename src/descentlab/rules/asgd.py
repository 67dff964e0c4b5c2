"""ASGD, averaged stochastic gradient descent (Polyak & Juditsky 1992; Bottou's schedule), in PyTorch's form.

Symbols: ``ā`` = ``ax`` (the running average of the iterates, starts at 0), ``η_t`` = ``eta`` (starts at the
learning rate η), ``μ_t`` = ``mu`` (starts at 1) — both 0-d state —, ``λ`` = ``lambd``, ``α`` = ``alpha``,
``t₀`` = ``t0``, ``t`` the step::

    w ← w (1 − λ η_t)
    w ← w − η_t g
    ā ← ā + μ_t (w − ā)           (ā ← w while μ_t = 1)
    η_{t+1} = η / (1 + λ η t)^α
    μ_{t+1} = 1 / max(1, t − t₀)

The parameters follow SGD with a slowly decaying rate; ``ax`` averages them from step ``t₀`` on (with
``μ = 1/(t − t₀)`` it is the plain mean of the iterates since then). ``η_t`` and ``μ_t`` are read from the state
as PyTorch stores them (0-d tensors of its scalar dtype, so float32-rounded by default) and written back as it
writes them; the next values use the learning rate of this step.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from descentlab.rules.branches import by_branch, elementwise, is_traced
from descentlab.rules.common import host_value


def asgd(
    param: Tensor,
    grad: Tensor,
    ax: Tensor,
    eta: Tensor,
    mu: Tensor,
    *,
    step: float,
    lr: float,
    lambd: float,
    alpha: float,
    t0: float,
) -> None:
    """One ASGD step; ``eta`` and ``mu`` are 0-d tensors updated in place."""
    rate, weight = host_value(eta), host_value(mu)
    if is_traced(rate):  # torch.compile: tensor-valued scalars, torch's capturable form
        param.mul_(1 - lambd * rate)
        param.addcmul_(grad, rate, value=-1)
        ax.add_(param.sub(ax).mul_(weight))
        eta.copy_(lr / ((1 + lambd * lr * step) ** alpha))
        since_t0: Any = step - t0  # a 0-d tensor here
        mu.copy_(1 / since_t0.clamp(min=1))
        return
    param.mul_(1 - lambd * rate)
    param.add_(grad, alpha=-rate)
    for averaging, (w, a, m) in by_branch(weight != 1, param, ax, weight):
        if averaging:
            a.add_(w.sub(a).mul_(m))
        else:
            a.copy_(w)
    eta.fill_(lr / ((1 + lambd * lr * step) ** alpha))
    mu.fill_(elementwise(lambda s: 1 / max(1, s - t0), step))
