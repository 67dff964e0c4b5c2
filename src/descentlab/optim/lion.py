"""``Lion``: lion-pytorch's ``lion_pytorch.Lion`` (its defaults, state and results)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from descentlab.optim.base import RuleOptimizer
from descentlab.optim.validation import as_float, check_bool, check_range
from descentlab.rules.lion import lion
from descentlab.rules.plan import StepPlan


def check_betas_closed(value: Any) -> tuple[float, float]:
    """``(β₁, β₂)``, each in [0, 1] (lion-pytorch's range: 1 included)."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {value!r}")
    return (check_range("betas[0]", value[0], 0.0, 1.0, high_open=False),
            check_range("betas[1]", value[1], 0.0, 1.0, high_open=False))


class Lion(RuleOptimizer):
    r"""Lion (EvoLved Sign Momentum) — a drop-in for lion-pytorch's ``lion_pytorch.Lion``.

    Symbols: ``η`` = ``lr``, ``(β₁, β₂)`` = ``betas``, ``m`` = ``state["exp_avg"]`` (starts at 0), ``λ`` =
    ``weight_decay``, ``η₀`` = ``init_lr`` (the constructor's ``lr``)::

        g ← −g if maximize
        w ← w (1 − η λ)                    (decoupled_weight_decay=True: w ← w (1 − η λ / η₀))
        c ← β₁ m + (1 − β₁) g
        w ← w − η sign(c)
        m ← β₂ m + (1 − β₂) g

    The weight decay is always decoupled (AdamW's ``w ← w(1 − ηλ)``, applied before the step), as lion-pytorch
    does it; lion-pytorch's ``decoupled_weight_decay=True`` divides λ by the constructor's ``lr`` (for every
    group, as lion-pytorch does), so the decay per step is ``λ`` at the initial rate and follows a schedule's
    shape without its size. Defaults are lion-pytorch's: ``lr=1e-4``, ``betas=(0.9, 0.99)``, ``weight_decay=0``.

    Conventions: lion-pytorch's state is ``exp_avg`` alone (no step counter); so is this one, and state_dicts move
    between the two. ``use_triton`` is accepted for its signature and ignored (descentlab picks its own path,
    ``impl``; the Triton kernel computes the same step). Beyond lion-pytorch: ``maximize``, ``impl``,
    ``nonfinite``, ``state_dtype``; ``lr = 0`` is allowed (lion-pytorch asserts ``lr > 0``) except with
    ``decoupled_weight_decay=True``, which divides by it. ``sign(NaN) = 0``: a NaN gradient freezes its
    coordinate instead of reaching the weight (as in lion-pytorch); ``nonfinite="raise"`` or ``"skip"`` catch it.
    Complex parameters are stepped as pairs of reals (the sign of the real and of the imaginary part, as
    descentlab steps every complex parameter); lion-pytorch's ``sgn_`` would take ``c / |c|`` instead.

    Example::

        >>> import torch, descentlab
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.0]))
        >>> opt = descentlab.Lion([w], lr=0.1)
        >>> w.grad = torch.tensor([0.5, -3.0, 0.0]); opt.step()    # every coordinate moves by η or not at all
        >>> [round(x, 4) for x in w.tolist()]
        [0.9, -1.9, 0.0]

    Reference: X. Chen et al., "Symbolic Discovery of Optimization Algorithms", 2023 (arXiv:2302.06675);
    https://github.com/lucidrains/lion-pytorch.
    """

    extra_options = ("decoupled_weight_decay", "init_lr", "maximize")

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        use_triton: bool = False,
        decoupled_weight_decay: bool = False,
        *,
        maximize: bool = False,
        impl: str = "auto",
        nonfinite: str = "ignore",
        state_dtype: torch.dtype | None = None,
    ) -> None:
        check_bool("use_triton", use_triton)
        init_lr = check_range("lr", lr)
        defaults = dict(lr=lr, betas=betas, weight_decay=weight_decay, decoupled_weight_decay=decoupled_weight_decay,
                        init_lr=init_lr, maximize=maximize, impl=impl, nonfinite=nonfinite, state_dtype=state_dtype)
        super().__init__(params, defaults)

    def _validate(self, group: dict[str, Any]) -> None:
        check_range("lr", group["lr"])
        check_betas_closed(group["betas"])
        check_range("weight_decay", group["weight_decay"])
        check_bool("decoupled_weight_decay", group["decoupled_weight_decay"])
        check_bool("maximize", group["maximize"])
        init_lr = check_range("init_lr", group["init_lr"])
        if group["decoupled_weight_decay"] and init_lr == 0:
            raise ValueError("decoupled_weight_decay=True divides weight_decay by the initial lr, which must be > 0; "
                             "got lr=0")

    def _init_state(self, param: Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def plan(self, group: dict[str, Any]) -> StepPlan:
        decay = float(group["weight_decay"])
        if group["decoupled_weight_decay"]:
            decay /= float(group["init_lr"])  # lion-pytorch: wd /= init_lr
        return StepPlan(lion, ("exp_avg",),
                        dict(lr=float(group["lr"]), beta1=as_float("betas[0]", group["betas"][0]),
                             beta2=as_float("betas[1]", group["betas"][1])),
                        maximize=group["maximize"], weight_decay=decay, decoupled=True)
