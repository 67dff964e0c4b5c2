"""``NAdam``: ``torch.optim.NAdam`` with a choice of where ε goes."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from descentlab.optim.base import RuleOptimizer, new_step_counter, scalar_dtype
from descentlab.optim.sgd import check_torch_flags
from descentlab.optim.validation import check_betas, check_bool, check_choice, check_range, worded
from descentlab.rules.common import EPS_PLACEMENTS
from descentlab.rules.plan import StepPlan
from descentlab.rules.nadam import nadam


#: ``mu_product_dtype``: ``None`` (PyTorch's scalar dtype) or a dtype for the running product ``Π``.
MU_PRODUCT_DTYPES: tuple[Any, ...] = (None, torch.float32, torch.float64)


class NAdam(RuleOptimizer):
    r"""NAdam (Dozat 2016) — a drop-in for ``torch.optim.NAdam``.

    Symbols: ``η`` = ``lr``, ``(β₁, β₂)`` = ``betas``, ``ψ`` = ``momentum_decay``,
    ``m`` = ``state["exp_avg"]``, ``v`` = ``state["exp_avg_sq"]`` (start at 0),
    ``Π`` = ``state["mu_product"]`` (starts at 1), ``t`` = ``state["step"]``::

        g ← −g if maximize;   g ← g + λ w  (or w ← w − η λ w with decoupled_weight_decay)
        μ_t = β₁ (1 − ½ 0.96^(t ψ));   Π ← Π μ_t
        m ← β₁ m + (1 − β₁) g;   v ← β₂ v + (1 − β₂) g²;   v̂ = v / (1 − β₂^t)
        D = √v̂ + ε (eps_placement="outside", PyTorch; default)  or  √(v̂ + ε) ("inside")
        w ← w − η (1 − μ_t)/(1 − Π) · g/D − η μ_{t+1}/(1 − Π μ_{t+1}) · m/D

    Conventions: ``decoupled_weight_decay=True`` gives NAdamW, as in PyTorch. ``momentum_decay=math.inf`` makes
    ``μ_t = β₁`` for every t (``Π = β₁^t``): optax's ``nadam`` (``adam(nesterov=True)``). Keras 3's ``Nadam`` is
    ``momentum_decay=1.0`` (its ``0.96^t``). ``mu_product_dtype=torch.float64`` keeps ``Π`` in float64 (as Keras
    keeps it in the variables' dtype); the default ``None`` keeps PyTorch's scalar dtype (float32 unless the
    default dtype is float64), whose rounding ``1 − Π`` amplifies (≈ 1e-8 relative against a float64 Π).

    Example::

        >>> import torch, descentlab
        >>> w = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = descentlab.NAdam([w], lr=0.01)
        >>> (w ** 2).sum().backward(); opt.step()
        >>> w.item() < 1.0
        True
    """

    supports_capturable = True  # capturable=True as torch.optim.NAdam takes it (see RuleOptimizer)
    extra_options = ("eps_placement", "mu_product_dtype")

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        eps_placement: str = "outside",
        mu_product_dtype: torch.dtype | None = None,
        impl: str = "auto",
        nonfinite: str = "ignore",
        state_dtype: torch.dtype | None = None,
    ) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, momentum_decay=momentum_decay,
                        decoupled_weight_decay=decoupled_weight_decay, maximize=maximize, foreach=foreach,
                        capturable=capturable, differentiable=differentiable, eps_placement=eps_placement,
                        mu_product_dtype=mu_product_dtype, impl=impl, nonfinite=nonfinite,
                        state_dtype=state_dtype)
        super().__init__(params, defaults)

    def _validate(self, group: dict[str, Any]) -> None:
        check_range("lr", group["lr"], as_torch=True)
        check_range("eps", group["eps"], as_torch=True)
        check_betas(group["betas"], as_torch=True)
        check_range("weight_decay", group["weight_decay"], as_torch=True)
        psi = group["momentum_decay"]
        if not (isinstance(psi, (int, float)) and not isinstance(psi, bool) and psi >= 0):  # NaN fails psi >= 0
            raise ValueError(worded(f"momentum_decay must be in [0, inf] (inf: the constant μ = β₁ of optax's "
                                    f"nadam), got {psi!r}", "momentum_decay", psi))
        if group.get("mu_product_dtype") not in MU_PRODUCT_DTYPES:
            raise ValueError(f"mu_product_dtype must be one of None, torch.float32, torch.float64, got "
                             f"{group.get('mu_product_dtype')!r}")
        check_bool("decoupled_weight_decay", group["decoupled_weight_decay"])
        check_bool("maximize", group["maximize"])
        check_choice("eps_placement", group["eps_placement"], EPS_PLACEMENTS)
        check_torch_flags(group)

    def _init_state(self, param: Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        state["step"] = new_step_counter()
        state["mu_product"] = torch.tensor(1.0, dtype=group["mu_product_dtype"] or scalar_dtype())
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def plan(self, group: dict[str, Any]) -> StepPlan:
        beta1, beta2 = group["betas"]
        return StepPlan(nadam, ("exp_avg", "exp_avg_sq", "mu_product"),
                        dict(lr=float(group["lr"]), beta1=float(beta1), beta2=float(beta2), eps=group["eps"],
                             momentum_decay=group["momentum_decay"], eps_placement=group["eps_placement"]),
                        maximize=group["maximize"], weight_decay=group["weight_decay"],
                        decoupled=group["decoupled_weight_decay"], counts_steps=True, extra=("mu_product",))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As torch loads it, except that ``Π`` keeps the saved precision where ``mu_product_dtype`` names one
        (torch's loader casts every floating state entry to the parameter's dtype)."""
        super().load_state_dict(state_dict)
        for saved, group in zip(state_dict["param_groups"], self.param_groups):
            dtype = group.get("mu_product_dtype")
            if dtype is None:
                continue
            for saved_id, param in zip(saved["params"], group["params"]):
                entry = state_dict["state"].get(saved_id)
                if entry and isinstance(entry.get("mu_product"), Tensor):
                    self.state[param]["mu_product"] = entry["mu_product"].to(dtype=dtype, copy=True)
