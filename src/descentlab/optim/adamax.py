"""``Adamax``: ``torch.optim.Adamax``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from descentlab.optim.base import RuleOptimizer, new_step_counter
from descentlab.optim.sgd import check_torch_flags
from descentlab.optim.validation import as_float, check_betas, check_bool, check_choice, check_range
from descentlab.rules.adamax import adamax
from descentlab.rules.adamax_forms import adamax_eps_outside
from descentlab.rules.plan import StepPlan


#: ``eps_placement`` of Adamax: ε added to ``|g|`` ``"inside"`` the maximum, or to ``u`` ``"outside"`` it (Keras).
EPS_PLACEMENTS: tuple[str, ...] = ("inside", "outside")


class Adamax(RuleOptimizer):
    r"""Adamax — a drop-in for ``torch.optim.Adamax``.

    Symbols: ``η`` = ``lr``, ``(β₁, β₂)`` = ``betas``, ``m`` = ``state["exp_avg"]``, ``u`` = ``state["exp_inf"]``
    (both start at 0), ``t`` = ``state["step"]``, ``λ`` = ``weight_decay``::

        g ← −g if maximize;   g ← g + λ w   (decoupled_weight_decay=True: w ← w (1 − η λ) instead)
        m ← β₁ m + (1 − β₁) g
        u ← max(β₂ u, |g| + ε)                       (eps_placement="inside": PyTorch, optax; default)
        w ← w − η / (1 − β₁^t) · m / u
        eps_placement="outside" (Keras):  u ← max(β₂ u, |g|);   w ← w − η / (1 − β₁^t) · m / (u + ε)

    Conventions: ε sits inside the maximum (PyTorch, optax); Keras writes ``u ← max(β₂ u, |g|)`` and adds ε to
    the denominator, ``m / (u + ε)``: the two agree while ``|g| + ε`` wins the maximum and differ by about
    ``ε / u`` relative once ``β₂ u`` does (PyTorch's ``u`` then carries a decayed ε, Keras's adds a fresh one).
    Keras's ``weight_decay`` is decoupled (``decoupled_weight_decay=True``).

    Example::

        >>> import torch, descentlab
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
        >>> opt = descentlab.Adamax([w], lr=0.1)
        >>> (w ** 2).sum().backward(); opt.step()    # first step: η sign(g)
        >>> [round(x, 4) for x in w.tolist()]
        [0.9, -0.9]
    """

    supports_capturable = True  # capturable=True as torch.optim.Adamax takes it (see RuleOptimizer)
    extra_options = ("eps_placement", "decoupled_weight_decay")

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
        eps_placement: str = "inside",
        decoupled_weight_decay: bool = False,
        impl: str = "auto",
        nonfinite: str = "ignore",
        state_dtype: torch.dtype | None = None,
    ) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=foreach, maximize=maximize,
                        differentiable=differentiable, capturable=capturable, eps_placement=eps_placement,
                        decoupled_weight_decay=decoupled_weight_decay, impl=impl, nonfinite=nonfinite,
                        state_dtype=state_dtype)
        super().__init__(params, defaults)

    def _validate(self, group: dict[str, Any]) -> None:
        check_range("lr", group["lr"], as_torch=True)
        check_range("eps", group["eps"], as_torch=True)
        check_betas(group["betas"], as_torch=True)
        check_range("weight_decay", group["weight_decay"], as_torch=True)
        check_bool("maximize", group["maximize"])
        check_choice("eps_placement", group["eps_placement"], EPS_PLACEMENTS)
        check_bool("decoupled_weight_decay", group["decoupled_weight_decay"])
        check_torch_flags(group)

    def _init_state(self, param: Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        state["step"] = new_step_counter()
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["exp_inf"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def plan(self, group: dict[str, Any]) -> StepPlan:
        return StepPlan(adamax if group["eps_placement"] == "inside" else adamax_eps_outside, ("exp_avg", "exp_inf"),
                        dict(lr=float(group["lr"]), beta1=as_float("betas[0]", group["betas"][0]),
                             beta2=as_float("betas[1]", group["betas"][1]), eps=group["eps"]),
                        maximize=group["maximize"], weight_decay=group["weight_decay"],
                        decoupled=group["decoupled_weight_decay"], counts_steps=True)
