"""``Muon``: ``torch.optim.Muon``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from descentlab.optim.base import RuleOptimizer
from descentlab.optim.validation import as_float, check_bool, check_choice, check_range
from descentlab.rules.muon import ADJUST_LR_FNS, muon
from descentlab.rules.plan import StepPlan

#: torch.optim.Muon's defaults: Keller Jordan's quintic coefficients, ε and five iterations.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
EPS = 1e-7
NS_STEPS = 5
#: ``ns_dtype``: the precision of the Newton–Schulz iteration (torch's bfloat16, or a wider one to study it).
NS_DTYPES = (torch.bfloat16, torch.float32, torch.float64)


def check_matrices(name: str, params: Any) -> None:
    """Muon steps matrices only: any parameter that is not 2-D (or is complex) is a ``ValueError``."""
    for param in params:
        if param.ndim != 2:
            raise ValueError(f"{name} only supports 2D parameters whereas we found a parameter with size: "
                             f"{param.size()}")
        if param.is_complex():
            raise ValueError(f"{name} does not support complex parameters")


class Muon(RuleOptimizer):
    r"""Muon — a drop-in for ``torch.optim.Muon`` (2-D parameters only: the hidden layers' weight matrices).

    Symbols: ``η`` = ``lr``, ``μ`` = ``momentum``, ``λ`` = ``weight_decay``, ``B`` = ``state["momentum_buffer"]``
    (starts at 0), ``(a, b, c)`` = ``ns_coefficients``, ``k`` = ``ns_steps``; for a matrix ``W`` (m × n)::

        B ← μ B + (1 − μ) g
        U ← (1 − μ) g + μ B   (nesterov=True, default)   |   U ← B
        O ← NS_k(U): X ← U / max(‖U‖_F, ε) in bfloat16;  k times  A ← X Xᵀ,  X ← a X + (b A + c A²) X
        W ← W (1 − η λ)                                  (decoupled weight decay, with the unadjusted η)
        W ← W − η' O,   η' = η √max(1, m/n)   (adjust_lr_fn=None / "original")   |   0.2 η √max(m, n)
                                                                                  ("match_rms_adamw")

    ``O`` is approximately the orthogonal factor ``U Vᵀ`` of ``U = U Σ Vᵀ``: every direction of the update gets
    about the same size. Biases, gains and embeddings belong to another optimizer (AdamW): see
    :func:`descentlab.param_groups`.

    ``ns_dtype`` (keyword-only, descentlab's): the iteration's precision — bfloat16 as torch and Keller Jordan run
    it, or float32 / float64 to see what the rounding does.

    Conventions: Keller Jordan's reference accumulates ``B ← μ B + g``; torch (and this class) averages, which
    the normalisation inside NS makes the same direction. The iteration runs in bfloat16 as in both.

    Example::

        >>> import torch, descentlab
        >>> w = torch.nn.Parameter(torch.eye(2))
        >>> opt = descentlab.Muon([w], lr=0.1, weight_decay=0.0)
        >>> w.grad = torch.tensor([[1.0, 0.0], [0.0, 1.0]]); opt.step()
        >>> bool((w.diagonal() < 1).all())
        True
    """

    extra_options = ("ns_dtype",)

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
        eps: float = EPS,
        ns_steps: int = NS_STEPS,
        adjust_lr_fn: str | None = None,
        *,
        ns_dtype: torch.dtype = torch.bfloat16,
        impl: str = "auto",
        nonfinite: str = "ignore",
        state_dtype: torch.dtype | None = None,
    ) -> None:
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                        ns_coefficients=ns_coefficients, eps=eps, ns_steps=ns_steps, adjust_lr_fn=adjust_lr_fn,
                        ns_dtype=ns_dtype, impl=impl, nonfinite=nonfinite, state_dtype=state_dtype)
        super().__init__(params, defaults)

    def _validate(self, group: dict[str, Any]) -> None:
        check_range("lr", group["lr"])
        check_range("weight_decay", group["weight_decay"])
        check_range("momentum", group["momentum"])
        check_bool("nesterov", group["nesterov"])
        coefficients = group["ns_coefficients"]
        if not isinstance(coefficients, (tuple, list)) or len(coefficients) != 3:
            raise ValueError(f"ns_coefficients must be three numbers (a, b, c), got {coefficients!r}")
        for i, value in enumerate(coefficients):
            as_float(f"ns_coefficients[{i}]", value)
        check_range("eps", group["eps"])
        steps = group["ns_steps"]
        if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps < 100:
            raise ValueError(f"ns_steps must be an integer in [0, 100), got {steps!r}")
        check_choice("adjust_lr_fn", group["adjust_lr_fn"], ADJUST_LR_FNS)
        if group["ns_dtype"] not in NS_DTYPES:
            raise ValueError(f"ns_dtype must be one of torch.bfloat16, torch.float32, torch.float64, got "
                             f"{group['ns_dtype']!r}")
        check_matrices(type(self).__name__, group.get("params", ()))

    def _init_state(self, param: Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def plan(self, group: dict[str, Any]) -> StepPlan:
        return StepPlan(muon, ("momentum_buffer",),
                        dict(lr=float(group["lr"]), momentum=float(group["momentum"]), nesterov=group["nesterov"],
                             ns_coefficients=tuple(float(c) for c in group["ns_coefficients"]),
                             ns_steps=group["ns_steps"], eps=float(group["eps"]), adjust_lr_fn=group["adjust_lr_fn"],
                             ns_dtype=group["ns_dtype"], weight_decay=float(group["weight_decay"])))
