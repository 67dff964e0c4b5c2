"""Element-wise update kernels for the fused path: each is one pass over memory once compiled.

Each kernel is a second statement of one rule's maths, checked against the reference rule.
It writes the new parameter and state in place (``copy_`` of expressions that Inductor fuses
into one loop). Every scalar that may change between steps (the learning rate) arrives as a 0-d
tensor, so a schedule never triggers a recompilation; hyperparameters that a user rarely changes
(β, ε, momentum, weight decay) are Python floats and are specialised. The reference rules in
``descentlab.rules`` stay the oracle: ``tests/test_fused_*.py`` checks every kernel against them
step by step.
"""

from __future__ import annotations

from torch import Tensor


def _prepared(param: Tensor, grad: Tensor, weight_decay: float, maximize: bool) -> Tensor:
    """``g ← −g`` if maximising, then ``g ← g + λ w`` (as ``rules.common.prepare_gradient``)."""
    if maximize:
        grad = -grad
    if weight_decay != 0:
        grad = grad + weight_decay * param
    return grad


def _root(x: Tensor, eps: float, inside: bool) -> Tensor:
    """``√(x + ε)`` (inside) or ``√x + ε`` (outside), as ``rules.common.root_with_eps``."""
    return (x + eps).sqrt() if inside else x.sqrt() + eps


def rmsprop_kernel(
    param: Tensor, grad: Tensor, square_avg: Tensor, grad_avg: Tensor | None, momentum_buffer: Tensor | None,
    lr: Tensor, alpha: float, eps: float, momentum: float, weight_decay: float, maximize: bool, inside: bool,
) -> None:
    """RMSProp (all of ``descentlab.RMSprop``'s conventions)::

        S ← β S + (1 − β) g²;   centered: ḡ ← β ḡ + (1 − β) g,  S' = max(S − ḡ², 0)
        D = √S' + ε or √(S' + ε);   w ← w − η g / D   or   b ← μ b + g / D, w ← w − η b
    """
    g = _prepared(param, grad, weight_decay, maximize)
    s = square_avg * alpha + (1 - alpha) * (g * g)
    square_avg.copy_(s)
    if grad_avg is not None:
        a = grad_avg + (1 - alpha) * (g - grad_avg)
        grad_avg.copy_(a)
        s = (s - a * a).clamp_min(0)
    step = g / _root(s, eps, inside)
    if momentum_buffer is not None:
        b = momentum_buffer * momentum + step
        momentum_buffer.copy_(b)
        step = b
    param.copy_(param - lr * step)


def adadelta_kernel(
    param: Tensor, grad: Tensor, square_avg: Tensor, acc_delta: Tensor,
    lr: Tensor, rho: float, eps: float, weight_decay: float, maximize: bool, inside: bool,
) -> None:
    """Adadelta::

        G ← γ G + (1 − γ) g²;   Δ = RMS(H) / RMS(G) · g;   H ← γ H + (1 − γ) Δ²;   w ← w − η Δ
    """
    g = _prepared(param, grad, weight_decay, maximize)
    s = square_avg * rho + (1 - rho) * (g * g)
    square_avg.copy_(s)
    delta = _root(acc_delta, eps, inside) / _root(s, eps, inside) * g
    acc_delta.copy_(acc_delta * rho + (1 - rho) * (delta * delta))
    param.copy_(param - lr * delta)


def nadam_kernel(
    param: Tensor, grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor,
    decay: Tensor, grad_coef: Tensor, avg_coef: Tensor, bias2: Tensor,
    beta1: float, beta2: float, eps: float, weight_decay: float, maximize: bool, inside: bool,
) -> None:
    """NAdam; every step-dependent scalar is computed once per tensor in Python (see ``dispatch``)::

        w ← decay · w  (decoupled weight decay: decay = 1 − η λ, else 1; coupled: g ← g + λ w)
        m ← β₁ m + (1 − β₁) g;   v ← β₂ v + (1 − β₂) g²;   D = root(v / (1 − β₂^t), ε)
        w ← w − grad_coef · g / D − avg_coef · m / D
        grad_coef = η (1 − μ_t) / (1 − Π),   avg_coef = η μ_{t+1} / (1 − Π μ_{t+1})
    """
    g = _prepared(param, grad, weight_decay, maximize)
    p = param * decay
    m = exp_avg + (1 - beta1) * (g - exp_avg)
    exp_avg.copy_(m)
    v = exp_avg_sq * beta2 + (1 - beta2) * (g * g)
    exp_avg_sq.copy_(v)
    denom = _root(v / bias2, eps, inside)
    param.copy_(p - grad_coef * g / denom - avg_coef * m / denom)


def adam_kernel(
    param: Tensor, grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, max_exp_avg_sq: Tensor | None,
    decay: Tensor, step_size: Tensor, root_bias2: Tensor, bias2: Tensor,
    beta1: float, beta2: float, eps: float, weight_decay: float, maximize: bool, inside: bool,
) -> None:
    """Adam / AdamW / AMSGrad; the step-dependent scalars are hoisted into Python (see ``dispatch``)::

        w ← decay · w  (decoupled: decay = 1 − η λ, else 1; coupled: g ← g + λ w)
        m ← β₁ m + (1 − β₁) g;   v ← β₂ v + (1 − β₂) g²;   (AMSGrad) v_max ← max(v_max, v), used for v
        D = √v / √(1 − β₂^t) + ε  or  √(v / (1 − β₂^t) + ε);   w ← w − step_size · m / D,
        step_size = η / (1 − β₁^t)   (bias factors are 1 with bias_correction=False)
    """
    g = _prepared(param, grad, weight_decay, maximize)
    p = param * decay
    m = exp_avg + (1 - beta1) * (g - exp_avg)
    exp_avg.copy_(m)
    v = exp_avg_sq * beta2 + (1 - beta2) * (g * g)
    exp_avg_sq.copy_(v)
    if max_exp_avg_sq is not None:
        v = max_exp_avg_sq.maximum(v)
        max_exp_avg_sq.copy_(v)
    denom = (v / bias2 + eps).sqrt() if inside else v.sqrt() / root_bias2 + eps
    param.copy_(p - step_size * m / denom)


def adagrad_kernel(
    param: Tensor, grad: Tensor, sum_: Tensor, step_lr: Tensor,
    eps: float, weight_decay: float, maximize: bool, inside: bool,
) -> None:
    """Adagrad; ``step_lr`` = η / (1 + (t − 1) · lr_decay) is computed in Python::

        G ← G + g²;   w ← w − η_t g / D,   D = √G + ε  or  √(G + ε)
    """
    g = _prepared(param, grad, weight_decay, maximize)
    s = sum_ + g * g
    sum_.copy_(s)
    param.copy_(param - step_lr * g / _root(s, eps, inside))
