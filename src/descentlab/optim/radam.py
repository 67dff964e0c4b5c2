"""``RAdam``: ``torch.optim.RAdam``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from descentlab.optim.base import RuleOptimizer, new_step_counter
from descentlab.optim.sgd import check_torch_flags
from descentlab.optim.validation import as_float, check_betas, check_bool, check_range
from descentlab.rules.plan import StepPlan
from descentlab.rules.radam import radam


class RAdam(RuleOptimizer):
    r"""RAdam, rectified Adam — a drop-in for ``torch.optim.RAdam``.

    Symbols: ``η`` = ``lr``, ``(β₁, β₂)`` = ``betas``, ``m`` = ``state["exp_avg"]``, ``v`` = ``state["exp_avg_sq"]``
    (both start at 0), ``t`` = ``state["step"]``, ``λ`` = ``weight_decay``::

        g ← −g if maximize;   g ← g + λ w   (decoupled_weight_decay=True, RAdamW: w ← w (1 − η λ) instead)
        m ← β₁ m + (1 − β₁) g;   v ← β₂ v + (1 − β₂) g²;   m̂ = m / (1 − β₁^t)
        ρ_∞ = 2 / (1 − β₂) − 1;   ρ_t = ρ_∞ − 2 t β₂^t / (1 − β₂^t)
        ρ_t > 5:  w ← w − η m̂ · r_t · √(1 − β₂^t) / (√v + ε),
                  r_t = √((ρ_t − 4)(ρ_t − 2) ρ_∞ / ((ρ_∞ − 4)(ρ_∞ − 2) ρ_t))
        else:     w ← w − η m̂

    Conventions: PyTorch's form (ε added to √v, not to the corrected √v̂); the paper's warm-up threshold is
    ``ρ_t > 4``, PyTorch's (and the authors' code's) ``ρ_t > 5``, kept here. ``decoupled_weight_decay=True`` is
    the authors' implementation (RAdamW).

    Example::

        >>> import torch, descentlab
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
        >>> opt = descentlab.RAdam([w], lr=0.1)
        >>> (w ** 2).sum().backward(); opt.step()    # first steps un-rectified: w ← w − η m̂ = w − η g
        >>> [round(x, 4) for x in w.tolist()]
        [0.8, -0.8]
    """

    supports_capturable = True  # capturable=True as torch.optim.RAdam takes it (see RuleOptimizer)
    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        impl: str = "auto",
        nonfinite: str = "ignore",
        state_dtype: torch.dtype | None = None,
    ) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        decoupled_weight_decay=decoupled_weight_decay, foreach=foreach, maximize=maximize,
                        capturable=capturable, differentiable=differentiable, impl=impl, nonfinite=nonfinite,
                        state_dtype=state_dtype)
        super().__init__(params, defaults)

    def _validate(self, group: dict[str, Any]) -> None:
        check_range("lr", group["lr"], as_torch=True)
        check_range("eps", group["eps"], as_torch=True)
        check_betas(group["betas"], as_torch=True)
        check_range("weight_decay", group["weight_decay"], as_torch=True)
        check_bool("decoupled_weight_decay", group["decoupled_weight_decay"])
        check_bool("maximize", group["maximize"])
        check_torch_flags(group)

    def _init_state(self, param: Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        state["step"] = new_step_counter()
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def plan(self, group: dict[str, Any]) -> StepPlan:
        return StepPlan(radam, ("exp_avg", "exp_avg_sq"),
                        dict(lr=float(group["lr"]), beta1=as_float("betas[0]", group["betas"][0]),
                             beta2=as_float("betas[1]", group["betas"][1]), eps=group["eps"]),
                        maximize=group["maximize"], weight_decay=group["weight_decay"],
                        decoupled=group["decoupled_weight_decay"], counts_steps=True)
