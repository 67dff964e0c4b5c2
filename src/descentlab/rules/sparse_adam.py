"""SparseAdam: Adam on the coordinates a sparse gradient touches (torch.optim.SparseAdam).

For the coordinates ``i`` present in the (coalesced) sparse gradient ``g`` only — every other coordinate of
``w``, ``m`` = ``exp_avg`` and ``v`` = ``exp_avg_sq`` (both start at 0) is left as it is; ``t`` the step (a
plain number, advanced for every parameter with a gradient, even an empty one)::

    m_i ← β₁ m_i + (1 − β₁) g_i
    v_i ← β₂ v_i + (1 − β₂) g_i²
    w_i ← w_i − η √(1 − β₂^t) / (1 − β₁^t) · m_i / (√v_i + ε)

A gradient with no entries changes nothing. This is Adam with bias correction folded into the step size, with
``√v`` not corrected before ε is added (the paper's "efficient" form); it differs from dense Adam on coordinates
that skip steps, whose moments do not decay meanwhile ("lazy" Adam).
"""

from __future__ import annotations

import math

from torch import Tensor

from descentlab.rules.common import bias_correction


def sparse_adam(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    step_count: int,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
) -> None:
    """One SparseAdam step; ``grad`` must be sparse (a dense one is refused with torch's message). ``step_count``
    is ``state["step"]``, a plain int as torch keeps it, already advanced."""
    if not grad.is_sparse:
        raise RuntimeError("SparseAdam does not support dense gradients, please consider Adam instead")
    grad = grad.coalesce()  # the update is non-linear: indices must be unique
    indices, values = grad._indices(), grad._values()
    if values.numel() == 0:
        return
    size = grad.size()

    def sparse(entries: Tensor) -> Tensor:
        if indices.dim() == 0 or entries.dim() == 0:
            return grad.new().resize_as_(grad)
        return grad.new(indices, entries, size)

    old_m = exp_avg.sparse_mask(grad)._values()
    m_delta = values.sub(old_m).mul_(1 - beta1)  # m_i ← m_i + (1 − β₁)(g_i − m_i)
    exp_avg.add_(sparse(m_delta))
    old_v = exp_avg_sq.sparse_mask(grad)._values()
    v_delta = values.pow(2).sub_(old_v).mul_(1 - beta2)
    exp_avg_sq.add_(sparse(v_delta))
    numer = m_delta.add_(old_m)  # the new m_i, without reading the sparse sum back
    denom = v_delta.add_(old_v).sqrt_().add_(eps)
    step_size = lr * math.sqrt(bias_correction(beta2, step_count)) / bias_correction(beta1, step_count)
    param.add_(sparse(-step_size * numer.div_(denom)))
