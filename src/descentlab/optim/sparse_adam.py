"""``SparseAdam``: ``torch.optim.SparseAdam``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from descentlab.optim.base import RuleOptimizer
from descentlab.optim.validation import as_float, check_betas, check_bool, check_range
from descentlab.rules.plan import StepPlan
from descentlab.rules.sparse_adam import sparse_adam


class SparseAdam(RuleOptimizer):
    r"""SparseAdam — a drop-in for ``torch.optim.SparseAdam``: "lazy" Adam for sparse gradients
    (``nn.Embedding(sparse=True)``); it refuses dense gradients, as torch's does.

    Symbols: ``η`` = ``lr``, ``(β₁, β₂)`` = ``betas``, ``m`` = ``state["exp_avg"]``, ``v`` = ``state["exp_avg_sq"]``
    (both start at 0), ``t`` = ``state["step"]`` (a plain int, as torch keeps it). Only the coordinates ``i`` the
    gradient holds change::

        g ← −g if maximize
        m_i ← β₁ m_i + (1 − β₁) g_i;   v_i ← β₂ v_i + (1 − β₂) g_i²
        w_i ← w_i − η √(1 − β₂^t)/(1 − β₁^t) · m_i / (√v_i + ε)

    Conventions: dense Adam decays every coordinate's moments each step; here a row that is not looked up keeps
    its moments until it is (which is what makes embeddings cheap). No weight decay (torch has none).

    Example::

        >>> import torch, descentlab
        >>> emb = torch.nn.Embedding(4, 2, sparse=True)
        >>> opt = descentlab.SparseAdam(emb.parameters(), lr=0.1)
        >>> before = emb.weight.detach().clone()
        >>> emb(torch.tensor([1])).sum().backward(); opt.step()
        >>> [bool((emb.weight[i] != before[i]).all()) for i in range(4)]
        [False, True, False, False]
    """

    #: The reference loop passes sparse gradients to the rule instead of refusing them.
    accepts_sparse_gradients = True

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        maximize: bool = False,
        *,
        impl: str = "auto",
        nonfinite: str = "ignore",
        state_dtype: torch.dtype | None = None,
    ) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, maximize=maximize, impl=impl, nonfinite=nonfinite,
                        state_dtype=state_dtype)
        super().__init__(params, defaults)

    def _validate(self, group: dict[str, Any]) -> None:
        check_range("lr", group["lr"], low_open=True)
        check_range("eps", group["eps"], low_open=True)
        check_betas(group["betas"])
        check_bool("maximize", group["maximize"])
        params = list(group.get("params", ()))
        dense = [i for i, p in enumerate(params) if p.is_sparse]
        if dense:
            raise ValueError(f"Sparse params at indices {dense}: SparseAdam requires dense parameter tensors")
        complex_ = [i for i, p in enumerate(params) if p.is_complex()]
        if complex_:
            raise ValueError(f"Complex params at indices {complex_}: SparseAdam does not support complex parameters")

    def _init_state(self, param: Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        state["step"] = 0
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """As every optimizer loads a state, except that ``step`` stays as saved — the plain number torch's
        SparseAdam keeps (the base class would turn it into a tensor)."""
        entries = [entry for entry in state.get("state", {}).values() if isinstance(entry, dict) and "step" in entry]
        saved = [(entry, entry["step"]) for entry in entries]
        super().__setstate__(state)
        for entry, step in saved:
            entry["step"] = step

    def plan(self, group: dict[str, Any]) -> StepPlan:
        return StepPlan(sparse_adam, ("exp_avg", "exp_avg_sq", "step"),
                        dict(lr=float(group["lr"]), beta1=as_float("betas[0]", group["betas"][0]),
                             beta2=as_float("betas[1]", group["betas"][1]), eps=float(group["eps"])),
                        maximize=group["maximize"], counts_steps=True, extra=("step",))
