"""Muon (Jordan et al. 2024): momentum, then the update orthogonalised by a Newton–Schulz iteration.

For a matrix parameter ``W`` (m × n) with gradient ``G``; ``B`` = ``momentum_buffer`` (starts at 0), ``μ`` the
momentum, ``η`` the rate::

    B ← μ B + (1 − μ) G                            (torch's lerp; Keller Jordan's B ← μB + G differs by 1 − μ,
                                                    which the normalisation below removes)
    U ← (1 − μ) G + μ B   if nesterov,  else  U ← B
    X ← U / max(‖U‖_F, ε)   in bfloat16 (ns_dtype), transposed when m > n so that X X^T is the smaller Gram matrix
    k times:  A ← X X^T;   P ← b A + c A A;   X ← a X + P X          ((a, b, c) = ns_coefficients)
    O ← X (transposed back)
    W ← W − η' O,   η' = η √max(1, m/n)  (adjust_lr_fn="original" / None)  or  0.2 η √max(m, n)  ("match_rms_adamw")

The quintic's coefficients (3.4445, −4.7750, 2.0315) push every singular value of ``X`` towards ~1 in five
steps without converging exactly (they land in about [0.7, 1.2]); ``O`` is close to ``U V^T`` of ``U = U Σ V^T``.
With ``nesterov=False`` and parameters already in bfloat16, torch's ``U.bfloat16()`` returns ``B`` itself and
its in-place normalisation then rescales the momentum buffer; this rule always copies (same values otherwise).
Decoupled weight decay ``W ← W (1 − η λ)`` (with the unadjusted η) is the rule's, after the iteration, as torch
does it — also on the multi-tensor path, so that bfloat16 weights round as on the reference loop.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from descentlab.rules.per_tensor import each

#: Adjustments of the rate to the matrix's shape (torch.optim.Muon's ``adjust_lr_fn``; ``None`` = "original").
ADJUST_LR_FNS: tuple[str | None, ...] = (None, "original", "match_rms_adamw")


def newton_schulz(update: Tensor, ns_coefficients: tuple[float, float, float], ns_steps: int, eps: float,
                  ns_dtype: torch.dtype = torch.bfloat16) -> Tensor:
    """The orthogonalised ``update`` (a new tensor of ``ns_dtype``, torch's bfloat16 by default): ``ns_steps``
    quintic Newton–Schulz iterations (see the module docstring), in torch.optim.Muon's operations and order."""
    if ns_steps >= 100:
        raise ValueError("Number of steps must be less than 100 for computational efficiency")
    if update.dim() != 2:
        raise ValueError("Input tensor gradient must be a 2D matrix")
    if len(ns_coefficients) != 3:
        raise ValueError("Coefficients must be a tuple of exactly 3 values")
    a, b, c = ns_coefficients
    x = update.to(ns_dtype, copy=True)  # a copy even in ns_dtype: the in-place steps below must not reach B
    tall = update.size(0) > update.size(1)
    if tall:
        x = x.T
    x.div_(x.norm().clamp(min=eps))  # the spectral norm is at most the Frobenius norm: now ≤ 1
    for _ in range(ns_steps):
        gram = x @ x.T
        poly = torch.addmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.addmm(x, poly, x, beta=a)
    return x.T if tall else x


def adjusted_lr(lr: float, adjust_lr_fn: str | None, shape: Any) -> float:
    """``η'`` for a matrix of ``shape`` (m, n): ``η √max(1, m/n)`` ("original", None) or ``0.2 η √max(m, n)``."""
    rows, cols = shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        ratio = math.sqrt(max(1, rows / cols))
    elif adjust_lr_fn == "match_rms_adamw":
        ratio = 0.2 * math.sqrt(max(rows, cols))
    else:
        ratio = 1.0
    return lr * ratio


def _muon_one(param: Tensor, grad: Tensor, momentum_buffer: Tensor, *, lr: float, momentum: float, nesterov: bool,
              ns_coefficients: tuple[float, float, float], ns_steps: int, eps: float, adjust_lr_fn: str | None,
              ns_dtype: torch.dtype, weight_decay: float) -> None:
    if grad.dim() != 2:
        raise ValueError("Param gradient must be a 2D matrix")
    momentum_buffer.lerp_(grad, 1 - momentum)
    update = grad.lerp(momentum_buffer, momentum) if nesterov else momentum_buffer
    ortho = newton_schulz(update, ns_coefficients, ns_steps, eps, ns_dtype)
    param.mul_(1 - lr * weight_decay)  # decoupled, with the unadjusted rate (torch applies it here, always)
    param.add_(ortho, alpha=-adjusted_lr(lr, adjust_lr_fn, param.shape))


def muon(
    param: Tensor,
    grad: Tensor,
    momentum_buffer: Tensor,
    *,
    lr: float,
    momentum: float,
    nesterov: bool,
    ns_coefficients: tuple[float, float, float],
    ns_steps: int,
    eps: float,
    adjust_lr_fn: str | None,
    weight_decay: float = 0.0,
    ns_dtype: torch.dtype = torch.bfloat16,
) -> None:
    """One Muon step of a matrix. On a list of matrices it runs matrix by matrix
    (:func:`~descentlab.rules.per_tensor.each`): the iteration is matrix products, and the momentum's lerps stay
    with it so that bfloat16 parameters round exactly as on the reference loop (``_foreach_lerp`` keeps a float32
    intermediate the single-tensor bf16 lerp does not)."""
    each(_muon_one, param, grad, momentum_buffer, lr=lr, momentum=momentum, nesterov=nesterov,
         ns_coefficients=ns_coefficients, ns_steps=ns_steps, eps=eps, adjust_lr_fn=adjust_lr_fn, ns_dtype=ns_dtype,
         weight_decay=weight_decay)
