"""``Adagrad``: ``torch.optim.Adagrad`` with a choice of where ε goes."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from descentlab.optim.base import RuleOptimizer, new_step_counter
from descentlab.optim.sgd import check_torch_flags
from descentlab.optim.validation import check_bool, check_choice, check_range
from descentlab.rules.adagrad import adagrad
from descentlab.rules.common import EPS_PLACEMENTS
from descentlab.rules.plan import StepPlan


class Adagrad(RuleOptimizer):
    r"""Adagrad — a drop-in for ``torch.optim.Adagrad``.

    Symbols: ``η`` = ``lr``, ``G`` = ``state["sum"]`` (starts at ``initial_accumulator_value``),
    ``t`` = ``state["step"]``, ``λ`` = ``weight_decay``::

        g ← −g if maximize;   g ← g + λ w   (decoupled_weight_decay=True: w ← w (1 − η λ) instead, as Keras)
        η_t = η / (1 + (t − 1) lr_decay)
        G ← G + g²
        w ← w − η_t g / D,      D = √G + ε   (eps_placement="outside", PyTorch; default)
                                D = √(G + ε) (eps_placement="inside")

    Conventions: like PyTorch, the state is created in the constructor. ``G`` only grows, so the
    effective step shrinks towards zero — the weakness RMSProp and Adadelta repair.
    Sparse gradients (``nn.Embedding(sparse=True)``) are taken on the reference path as ``torch.optim.Adagrad``
    takes them — only the entries the gradient names are read and written — except with coupled weight decay,
    refused as torch refuses it.

    Example::

        >>> import torch, descentlab
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
        >>> opt = descentlab.Adagrad([w], lr=0.1)
        >>> (w ** 2).sum().backward(); opt.step()   # first step: η sign(g)
        >>> w.data
        tensor([ 0.9000, -0.9000])
    """

    extra_options = ("eps_placement", "decoupled_weight_decay")

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        eps_placement: str = "outside",
        decoupled_weight_decay: bool = False,
        impl: str = "auto",
        nonfinite: str = "ignore",
        state_dtype: torch.dtype | None = None,
    ) -> None:
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, foreach=foreach,
                        maximize=maximize, differentiable=differentiable, fused=fused,
                        eps_placement=eps_placement, decoupled_weight_decay=decoupled_weight_decay, impl=impl,
                        nonfinite=nonfinite,
                        state_dtype=state_dtype)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(self._working_copy(p, group), group, self.state[p])

    def _validate(self, group: dict[str, Any]) -> None:
        check_range("lr", group["lr"], as_torch=True)
        check_range("lr_decay", group["lr_decay"], as_torch=True)
        check_range("weight_decay", group["weight_decay"], as_torch=True)
        check_range("initial_accumulator_value", group["initial_accumulator_value"], as_torch=True)
        check_range("eps", group["eps"], as_torch=True)
        check_bool("maximize", group["maximize"])
        check_choice("eps_placement", group["eps_placement"], EPS_PLACEMENTS)
        check_bool("decoupled_weight_decay", group["decoupled_weight_decay"])
        check_torch_flags(group)

    accepts_sparse_gradients = True

    def _init_state(self, param: Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        init = group["initial_accumulator_value"]
        state["step"] = new_step_counter()
        state["sum"] = torch.full_like(param, complex(init, init) if param.is_complex() else init,
                                       memory_format=torch.preserve_format)

    def plan(self, group: dict[str, Any]) -> StepPlan:
        return StepPlan(adagrad, ("sum",), dict(lr=float(group["lr"]), lr_decay=group["lr_decay"], eps=group["eps"],
                                                eps_placement=group["eps_placement"]),
                        maximize=group["maximize"], weight_decay=group["weight_decay"],
                        decoupled=group["decoupled_weight_decay"], counts_steps=True)
