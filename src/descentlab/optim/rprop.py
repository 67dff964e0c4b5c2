"""``Rprop``: ``torch.optim.Rprop``."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from descentlab.optim.base import RuleOptimizer, new_step_counter
from descentlab.optim.sgd import check_torch_flags
from descentlab.optim.validation import as_float, check_bool, check_range
from descentlab.rules.plan import StepPlan
from descentlab.rules.rprop import rprop


def check_etas(value: Any) -> tuple[float, float]:
    """``etas = (η₋, η₊)`` with ``0 < η₋ < 1 < η₊`` (torch's condition)."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"etas must be a pair (etaminus, etaplus), got {value!r}")
    low, high = as_float("etas[0]", value[0]), as_float("etas[1]", value[1])
    if not 0.0 < low < 1.0:
        raise ValueError(f"etas[0] (etaminus) must be in (0, 1), got {value[0]!r}")
    if not (1.0 < high < math.inf):
        raise ValueError(f"etas[1] (etaplus) must be in (1, inf), got {value[1]!r}")
    return low, high


def check_step_sizes(value: Any) -> tuple[float, float]:
    """``step_sizes = (Δ_min, Δ_max)`` with ``0 ≤ Δ_min ≤ Δ_max`` (Δ_max may be inf)."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"step_sizes must be a pair (min, max), got {value!r}")
    low = check_range("step_sizes[0]", value[0])
    high = check_range("step_sizes[1]", value[1], high_open=False)
    if low > high:
        raise ValueError(f"step_sizes[0] must not exceed step_sizes[1], got {tuple(value)!r}")
    return low, high


class Rprop(RuleOptimizer):
    r"""Rprop, resilient backpropagation — a drop-in for ``torch.optim.Rprop``.

    Symbols: ``η`` = ``lr`` (the initial step size), ``(η₋, η₊)`` = ``etas``, ``[Δ_min, Δ_max]`` = ``step_sizes``,
    ``p`` = ``state["prev"]`` (starts at 0), ``Δ`` = ``state["step_size"]`` (starts at η), element-wise::

        g ← −g if maximize;   g ← g + λ w   (weight_decay λ: descentlab's option, coupled L2; torch has none)
        s = sign(g p);   Δ ← clamp(Δ · (η₊ if s > 0, η₋ if s < 0, 1 if s = 0), Δ_min, Δ_max)
        g ← 0 where s < 0
        w ← w − sign(g) Δ;   p ← g

    Conventions: PyTorch's Rprop (the "Rprop−" variant without weight backtracking: after a sign change the
    coordinate rests one step instead of undoing the previous one); ``lr`` is only Δ's initial value, so changing
    it after the first step has no effect (as in torch). Full-batch gradients suit it: with noisy mini-batch
    gradients the signs flip at random and the step sizes shrink.

    Example::

        >>> import torch, descentlab
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
        >>> opt = descentlab.Rprop([w], lr=0.1)
        >>> (w ** 2).sum().backward(); opt.step()    # first step: w ← w − η sign(g)
        >>> [round(x, 4) for x in w.tolist()]
        [0.9, -0.9]
    """

    supports_capturable = True  # capturable=True as torch.optim.Rprop takes it (see RuleOptimizer)
    extra_options = ("weight_decay",)
    #: The rate is only Δ's start and Δ is clipped to ``step_sizes``: a step is not linear in ``lr`` (the lab's races
    #: step each rate separately).
    step_is_linear_in_lr = False

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-2,
        etas: tuple[float, float] = (0.5, 1.2),
        step_sizes: tuple[float, float] = (1e-6, 50),
        *,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        weight_decay: float = 0,
        impl: str = "auto",
        nonfinite: str = "ignore",
        state_dtype: torch.dtype | None = None,
    ) -> None:
        defaults = dict(lr=lr, etas=etas, step_sizes=step_sizes, foreach=foreach, maximize=maximize,
                        differentiable=differentiable, capturable=capturable, weight_decay=weight_decay, impl=impl,
                        nonfinite=nonfinite, state_dtype=state_dtype)
        super().__init__(params, defaults)

    def _validate(self, group: dict[str, Any]) -> None:
        check_range("lr", group["lr"])
        check_etas(group["etas"])
        check_step_sizes(group["step_sizes"])
        check_range("weight_decay", group["weight_decay"])
        check_bool("maximize", group["maximize"])
        check_torch_flags(group)

    def _init_state(self, param: Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        lr = as_float("lr", group["lr"])
        state["step"] = new_step_counter()
        state["prev"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["step_size"] = torch.full_like(param, complex(lr, lr) if param.is_complex() else lr)

    def plan(self, group: dict[str, Any]) -> StepPlan:
        etaminus, etaplus = check_etas(group["etas"])
        low, high = check_step_sizes(group["step_sizes"])
        return StepPlan(rprop, ("prev", "step_size"),
                        dict(etaminus=etaminus, etaplus=etaplus, step_size_min=low, step_size_max=high),
                        maximize=group["maximize"], weight_decay=group["weight_decay"], counts_steps=True)
