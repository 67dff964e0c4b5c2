"""Adagrad (Duchi, Hazan & Singer 2011).

Symbols: ``G`` is PyTorch's ``sum`` (starts at ``initial_accumulator_value``), ``t`` the step::

    η_t = η / (1 + (t − 1) · lr_decay)
    G   ← G + g²
    w   ← w − η_t g / D,        D = √G + ε  (outside, PyTorch)  or  √(G + ε)  (inside)

``G`` only grows, so the effective step ``η_t / D`` shrinks towards zero. A sparse ``g`` (coalesced: one value
per index) updates only the entries it names, as in ``torch.optim.Adagrad``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from descentlab.rules.common import EpsPlacement, root_with_eps


def adagrad(
    param: Tensor,
    grad: Tensor,
    sum_: Tensor,
    *,
    step: float,
    lr: float,
    lr_decay: float,
    eps: float,
    eps_placement: EpsPlacement,
) -> None:
    """One Adagrad step; ``sum_`` is ``G``."""
    clr = lr / (1 + (step - 1) * lr_decay)
    if isinstance(grad, Tensor) and grad.is_sparse:
        _sparse_adagrad(param, grad, sum_, clr=clr, eps=eps, eps_placement=eps_placement)
        return
    sum_.addcmul_(grad, grad, value=1)
    std = root_with_eps(sum_, eps, eps_placement)
    param.addcdiv_(grad, std, value=-clr)


def _sparse_adagrad(param: Tensor, grad: Tensor, sum_: Tensor, *, clr: float, eps: float,
                    eps_placement: EpsPlacement) -> None:
    """torch.optim.Adagrad's sparse branch, op for op: ``G`` and ``w`` change only where ``g`` has entries."""
    grad = grad.coalesce()  # the update is not linear in g: one value per index (so no invariant check is needed)
    indices, values = grad._indices(), grad._values()
    sum_.add_(torch.sparse_coo_tensor(indices, values.pow(2), grad.size(), check_invariants=False))
    std = root_with_eps(sum_.sparse_mask(grad)._values(), eps, eps_placement)
    param.add_(torch.sparse_coo_tensor(indices, values / std, grad.size(), check_invariants=False), alpha=-clr)
