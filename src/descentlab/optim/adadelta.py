"""``Adadelta``: ``torch.optim.Adadelta`` with a choice of where ε goes."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from descentlab.optim.base import RuleOptimizer, new_step_counter
from descentlab.optim.sgd import check_torch_flags
from descentlab.optim.validation import check_bool, check_choice, check_range
from descentlab.rules.adadelta import adadelta
from descentlab.rules.common import EPS_PLACEMENTS
from descentlab.rules.plan import StepPlan


class Adadelta(RuleOptimizer):
    r"""Adadelta — a drop-in for ``torch.optim.Adadelta``.

    Symbols: ``η`` = ``lr``, ``γ`` = ``rho``, ``G`` = ``state["square_avg"]``,
    ``H`` = ``state["acc_delta"]`` (both start at 0), ``λ`` = ``weight_decay``::

        g ← −g if maximize;   g ← g + λ w   (decoupled_weight_decay=True: w ← w (1 − η λ) instead, as Keras)
        G ← γ G + (1 − γ) g²
        Δ = RMS(H) / RMS(G) · g
        H ← γ H + (1 − γ) Δ²
        w ← w − η Δ
        RMS(x) = √(x + ε)   (eps_placement="inside": Zeiler, PyTorch, Keras; default)
        RMS(x) = √x + ε     (eps_placement="outside": the lecture notes)

    Conventions: η = 1 (the default) is the pure algorithm, which has no learning rate.
    ``rho`` must lie in [0, 1) (PyTorch also accepts 1, which freezes both averages).

    Example::

        >>> import torch, descentlab
        >>> w = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = descentlab.Adadelta([w])
        >>> (w ** 2).sum().backward(); opt.step()
        >>> w.item() < 1.0
        True
    """

    supports_capturable = True  # capturable=True as torch.optim.Adadelta takes it (see RuleOptimizer)
    extra_options = ("eps_placement", "decoupled_weight_decay")

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        capturable: bool = False,
        maximize: bool = False,
        differentiable: bool = False,
        eps_placement: str = "inside",
        decoupled_weight_decay: bool = False,
        impl: str = "auto",
        nonfinite: str = "ignore",
        state_dtype: torch.dtype | None = None,
    ) -> None:
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize,
                        capturable=capturable, foreach=foreach, differentiable=differentiable,
                        eps_placement=eps_placement, decoupled_weight_decay=decoupled_weight_decay, impl=impl,
                        nonfinite=nonfinite,
                        state_dtype=state_dtype)
        super().__init__(params, defaults)

    def _validate(self, group: dict[str, Any]) -> None:
        check_range("lr", group["lr"], as_torch=True)
        check_range("rho", group["rho"], 0.0, 1.0, as_torch=True)
        check_range("eps", group["eps"], as_torch=True)
        check_range("weight_decay", group["weight_decay"], as_torch=True)
        check_bool("maximize", group["maximize"])
        check_choice("eps_placement", group["eps_placement"], EPS_PLACEMENTS)
        check_bool("decoupled_weight_decay", group["decoupled_weight_decay"])
        check_torch_flags(group)

    def _init_state(self, param: Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        state["step"] = new_step_counter()
        state["square_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["acc_delta"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def plan(self, group: dict[str, Any]) -> StepPlan:
        return StepPlan(adadelta, ("square_avg", "acc_delta"),
                        dict(lr=float(group["lr"]), rho=group["rho"], eps=group["eps"],
                             eps_placement=group["eps_placement"]),
                        maximize=group["maximize"], weight_decay=group["weight_decay"],
                        decoupled=group["decoupled_weight_decay"], counts_steps=True)
