"""Schedule-free SGD and AdamW (Defazio et al. 2024, "The Road Less Scheduled"): momentum replaced by an average
of the iterates, and no learning-rate schedule.

Three sequences: ``z`` (the SGD / Adam iterates, ``state["z"]``), ``x`` (their weighted average: the weights to
evaluate) and ``y = (1 − β) z + β x`` (where the gradient is taken; ``β`` = ``momentum`` / ``betas[0]``). The
parameter holds ``y`` while training and ``x`` while evaluating; ``x`` is never stored, since
``x = (y − (1 − β) z) / β``. With ``g = ∇L(y)``, ``c = c_{k+1}`` the averaging weight of this step and ``η`` its
(warmed-up) rate::

    x_{k+1} = (1 − c) x_k + c z_{k+1},   z_{k+1} = z_k − η d,   y_{k+1} = (1 − β) z_{k+1} + β x_{k+1}

which, on ``y`` and ``z`` alone, is the in-place step both rules take::

    y ← y + c (z − y)                 (lerp)
    y ← y + η (β (1 − c) − 1) d
    z ← z − η d

SGD: ``d = g`` (coupled weight decay ``g + λ y`` is the executor's). AdamW: ``v ← β₂ v + (1 − β₂) g²``,
``d = g / (√(v / (1 − β₂^{k+1})) + ε) + λ y`` — the decay is added after the normalisation, at ``y``, as the
schedulefree package does, so it is part of this rule (``decay`` = λ). The scalars ``c``, ``η`` and
``1 − β₂^{k+1}`` are the group's (one step count ``k`` per param group, see :mod:`descentlab.optim.schedulefree`).
"""

from __future__ import annotations

from torch import Tensor


def _interpolate(param: Tensor, z: Tensor, d: Tensor, *, lr: float, beta: float, ckp1: float) -> None:
    param.lerp_(z, ckp1)
    param.add_(d, alpha=lr * (beta * (1 - ckp1) - 1))
    z.add_(d, alpha=-lr)


def schedulefree_sgd(param: Tensor, grad: Tensor, z: Tensor, *, lr: float, momentum: float, ckp1: float) -> None:
    """One schedule-free SGD step on ``y`` (``param``) and ``z``."""
    _interpolate(param, z, grad, lr=lr, beta=momentum, ckp1=ckp1)


def schedulefree_adamw(param: Tensor, grad: Tensor, z: Tensor, exp_avg_sq: Tensor, *, lr: float, beta1: float,
                       beta2: float, eps: float, decay: float, ckp1: float, bias_correction2: float) -> None:
    """One schedule-free AdamW step on ``y`` (``param``), ``z`` and ``v`` (``exp_avg_sq``)."""
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    denom = exp_avg_sq.div(bias_correction2).sqrt_().add_(eps)
    d = grad.div(denom)  # the package divides .grad in place; the parameter's gradient is left alone here
    if decay != 0:  # out of place: g / D of a zero gradient (torch's ZeroTensor) is itself an immutable ZeroTensor
        d = d.add(param, alpha=decay)
    _interpolate(param, z, d, lr=lr, beta=beta1, ckp1=ckp1)
