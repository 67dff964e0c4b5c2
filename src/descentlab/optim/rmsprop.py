"""``RMSprop``: ``torch.optim.RMSprop`` with a choice of where ε goes."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from descentlab.optim.base import RuleOptimizer, new_step_counter
from descentlab.optim.sgd import check_torch_flags
from descentlab.optim.validation import check_bool, check_choice, check_range
from descentlab.rules.common import EPS_PLACEMENTS
from descentlab.rules.plan import StepPlan
from descentlab.rules.rmsprop import centered_rmsprop, rmsprop
from descentlab.rules.rmsprop_momentum import centered_rmsprop_momentum, rmsprop_momentum


class RMSprop(RuleOptimizer):
    r"""RMSProp — a drop-in for ``torch.optim.RMSprop``.

    Symbols: ``η`` = ``lr``, ``β`` = ``alpha``, ``S`` = ``state["square_avg"]``, ``ḡ`` =
    ``state["grad_avg"]`` (centered only), ``b`` = ``state["momentum_buffer"]`` (momentum > 0 only),
    starting at 0 (``S`` at ``initial_scale``); ``λ`` = ``weight_decay``, ``μ`` = ``momentum``::

        g ← −g if maximize;   g ← g + λ w   (decoupled_weight_decay=True: w ← w (1 − η λ) instead)
        S ← β S + (1 − β) g²
        centered:  ḡ ← β ḡ + (1 − β) g;   S' = S − ḡ²   (else S' = S)
        D = √S' + ε    (eps_placement="outside": PyTorch; default)
        D = √(S' + ε)  (eps_placement="inside": the lecture notes, Keras/TensorFlow)
        μ = 0:  w ← w − η g / D
        μ > 0:  b ← μ b + g / D;   w ← w − η b
           nesterov=True:        w ← w − η (g / D + μ b)
           lr_in_buffer=True:    b ← μ b + η g / D;   w ← w − b   (nesterov: w ← w − (η g / D + μ b))

    Conventions: PyTorch's defaults (β = 0.99, ε = 1e-8, η = 0.01) are kept so the class stays a
    drop-in; the lecture notes use β = 0.9 with ε inside the root:
    ``RMSprop(params, lr=0.01, alpha=0.9, eps_placement="inside")``. The first step from zero state
    moves each coordinate by ``η / √(1 − β)`` (ε aside). ``alpha`` must lie in [0, 1).
    Keras / TensorFlow put the rate inside the momentum buffer (``lr_in_buffer=True``; equal at a constant
    rate, different under a schedule), apply ``weight_decay`` decoupled and default to ``alpha=0.9,
    eps=1e-7, eps_placement="inside", lr=1e-3``; optax's ``rmsprop`` also puts the rate inside the buffer and
    offers ``nesterov=True`` and ``initial_scale`` (TF1 started ``S`` at 1). Presets: ``descentlab.optim.registry``.

    Example (formulas.md's worked example)::

        >>> import torch, descentlab
        >>> w = torch.nn.Parameter(torch.tensor([0.8, 1.2, 0.5], dtype=torch.float64))
        >>> w.grad = torch.tensor([0.1, -0.3, 0.2], dtype=torch.float64)
        >>> opt = descentlab.RMSprop([w], lr=0.01, alpha=0.9, eps_placement="inside")
        >>> opt.step(); [round(x, 6) for x in w.tolist()]
        [0.768377, 1.231623, 0.468377]
    """

    supports_capturable = True  # capturable=True as torch.optim.RMSprop takes it (see RuleOptimizer)
    extra_options = ("eps_placement", "lr_in_buffer", "nesterov", "initial_scale", "decoupled_weight_decay")

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        *,
        eps_placement: str = "outside",
        lr_in_buffer: bool = False,
        nesterov: bool = False,
        initial_scale: float = 0.0,
        decoupled_weight_decay: bool = False,
        impl: str = "auto",
        nonfinite: str = "ignore",
        state_dtype: torch.dtype | None = None,
    ) -> None:
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                        weight_decay=weight_decay, capturable=capturable, foreach=foreach,
                        maximize=maximize, differentiable=differentiable, eps_placement=eps_placement,
                        lr_in_buffer=lr_in_buffer, nesterov=nesterov, initial_scale=initial_scale,
                        decoupled_weight_decay=decoupled_weight_decay, impl=impl, nonfinite=nonfinite,
                        state_dtype=state_dtype)
        super().__init__(params, defaults)

    def _validate(self, group: dict[str, Any]) -> None:
        check_range("lr", group["lr"], as_torch=True)
        check_range("eps", group["eps"], as_torch=True)
        momentum = check_range("momentum", group["momentum"], 0.0, 1.0, as_torch=True)
        check_range("weight_decay", group["weight_decay"], as_torch=True)
        check_range("alpha", group["alpha"], 0.0, 1.0, as_torch=True)
        check_bool("centered", group["centered"])
        check_bool("lr_in_buffer", group["lr_in_buffer"])
        if check_bool("nesterov", group["nesterov"]) and momentum <= 0:
            raise ValueError(f"nesterov=True requires momentum > 0, got momentum={group['momentum']!r}")
        check_range("initial_scale", group["initial_scale"])
        check_bool("decoupled_weight_decay", group["decoupled_weight_decay"])
        check_bool("maximize", group["maximize"])
        check_choice("eps_placement", group["eps_placement"], EPS_PLACEMENTS)
        check_torch_flags(group)

    def _init_state(self, param: Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        state["step"] = new_step_counter()
        init = float(group["initial_scale"])
        state["square_avg"] = (torch.zeros_like(param, memory_format=torch.preserve_format) if init == 0 else
                               torch.full_like(param, complex(init, init) if param.is_complex() else init,
                                               memory_format=torch.preserve_format))
        if group["momentum"] > 0:
            state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        if group["centered"]:
            state["grad_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def plan(self, group: dict[str, Any]) -> StepPlan:
        momentum = group["momentum"]
        state = ("square_avg", "grad_avg") if group["centered"] else ("square_avg",)
        hp = dict(lr=float(group["lr"]), alpha=group["alpha"], eps=group["eps"], momentum=momentum,
                  eps_placement=group["eps_placement"])
        common = dict(maximize=group["maximize"], weight_decay=group["weight_decay"],
                      decoupled=group["decoupled_weight_decay"], counts_steps=True)
        if momentum > 0 and (group["lr_in_buffer"] or group["nesterov"]):
            return StepPlan(centered_rmsprop_momentum if group["centered"] else rmsprop_momentum,
                            state + ("momentum_buffer",),
                            dict(hp, lr_in_buffer=group["lr_in_buffer"], nesterov=group["nesterov"]), **common)
        return StepPlan(centered_rmsprop if group["centered"] else rmsprop,
                        state + ("momentum_buffer",) if momentum > 0 else state, hp, **common)
