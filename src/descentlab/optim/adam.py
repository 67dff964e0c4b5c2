"""``Adam`` and ``AdamW``: ``torch.optim.Adam`` / ``AdamW`` with the lecture conventions as options."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from descentlab.optim.base import RuleOptimizer, new_step_counter
from descentlab.optim.sgd import check_torch_flags
from descentlab.optim.validation import (as_float, check_betas, check_bool, check_choice, check_range,
                                         check_tensor_betas, check_tensor_lr)
from descentlab.rules.adam import adam, amsgrad
from descentlab.rules.adam_forms import adam_efficient, amsgrad_corrected, amsgrad_efficient
from descentlab.rules.common import EPS_PLACEMENTS
from descentlab.rules.plan import StepPlan

#: ``amsgrad_max``: of which second moment AMSGrad keeps the running maximum — ``"raw"`` v (PyTorch, Keras) or
#: the bias-corrected ``"corrected"`` v̂ (optax).
AMSGRAD_MAXIMA: tuple[str, ...] = ("raw", "corrected")


class Adam(RuleOptimizer):
    r"""Adam — a drop-in for ``torch.optim.Adam``.

    Symbols: ``η`` = ``lr``, ``(β₁, β₂)`` = ``betas``, ``m`` = ``state["exp_avg"]``,
    ``v`` = ``state["exp_avg_sq"]``, ``v_max`` = ``state["max_exp_avg_sq"]`` (amsgrad only), all
    starting at 0; ``t`` = ``state["step"]``; ``λ`` = ``weight_decay``::

        g ← −g if maximize
        g ← g + λ w                      (coupled, default)   |   w ← w − η λ w   (decoupled_weight_decay)
        m ← β₁ m + (1 − β₁) g
        v ← β₂ v + (1 − β₂) g²
        amsgrad:  v_max ← max(v_max, v), and v_max replaces v below
        m̂ = m / (1 − β₁^t),  v̂ = v / (1 − β₂^t)       (bias_correction=True, default)
        m̂ = m,               v̂ = v                    (bias_correction=False)
        w ← w − η m̂ / D,   D = √v̂ + ε  (eps_placement="outside": paper, PyTorch; default)
                           D = √(v̂ + ε) (eps_placement="inside": the lecture notes)
        efficient_form=True:   w ← w − η √(1 − β₂^t)/(1 − β₁^t) · m / (√v + ε)   (ε is Keras's ε̂)
        amsgrad_max="corrected":  v̂_max ← max(v̂_max, v̂) (state["max_corrected_exp_avg_sq"]), D from v̂_max

    Conventions: Keras/TensorFlow use the paper's "efficient" form (``efficient_form=True``, with Keras's
    ε̂ = 1e-7), equal to the standard one with ``ε = ε̂ / √(1 − β₂^t)`` (a step-dependent ε), so they differ
    from PyTorch wherever ``√v̂`` is comparable to ε; Keras's AMSGrad is that form on the maximum of the raw v.
    optax's ``amsgrad`` keeps the maximum of the corrected ``v̂`` (``amsgrad_max="corrected"``); PyTorch and
    Keras of the raw ``v``. Keras's ``weight_decay`` is decoupled (``decoupled_weight_decay=True``). One of
    the notes gives β₂ = 0.99; the paper's (and this default) is 0.999.

    Example::

        >>> import torch, descentlab
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
        >>> opt = descentlab.Adam([w], lr=0.1)
        >>> (w ** 2).sum().backward(); opt.step()    # first step ≈ η sign(g)
        >>> [round(x, 4) for x in w.tolist()]
        [0.9, -0.9]
    """

    supports_capturable = True  # capturable=True as torch.optim.Adam takes it (see RuleOptimizer)
    extra_options = ("eps_placement", "bias_correction", "efficient_form", "amsgrad_max")

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
        eps_placement: str = "outside",
        bias_correction: bool = True,
        efficient_form: bool = False,
        amsgrad_max: str = "raw",
        impl: str = "auto",
        nonfinite: str = "ignore",
        state_dtype: torch.dtype | None = None,
    ) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, foreach=foreach, capturable=capturable,
                        differentiable=differentiable, fused=fused,
                        decoupled_weight_decay=decoupled_weight_decay, eps_placement=eps_placement,
                        bias_correction=bias_correction, efficient_form=efficient_form, amsgrad_max=amsgrad_max,
                        impl=impl, nonfinite=nonfinite, state_dtype=state_dtype)
        super().__init__(params, defaults)

    def _validate(self, group: dict[str, Any]) -> None:
        check_tensor_lr(group)  # torch.optim.Adam's checks in its order, with its wording as well
        check_range("lr", group["lr"], as_torch=True)
        check_range("eps", group["eps"], as_torch=True)
        check_betas(group["betas"], as_torch=True)
        check_range("weight_decay", group["weight_decay"], as_torch=True)
        check_tensor_betas(group)
        check_bool("amsgrad", group["amsgrad"])
        check_bool("maximize", group["maximize"])
        check_bool("decoupled_weight_decay", group["decoupled_weight_decay"])
        check_bool("bias_correction", group["bias_correction"])
        placement = check_choice("eps_placement", group["eps_placement"], EPS_PLACEMENTS)
        efficient = check_bool("efficient_form", group["efficient_form"])
        maximum = check_choice("amsgrad_max", group["amsgrad_max"], AMSGRAD_MAXIMA)
        check_torch_flags(group)
        if efficient and placement != "outside":
            raise ValueError(f"efficient_form=True adds ε outside the root (m / (√v + ε̂)); it needs "
                             f"eps_placement='outside', got {placement!r}")
        if maximum == "corrected" and not group["amsgrad"]:
            raise ValueError("amsgrad_max='corrected' chooses AMSGrad's maximum; it needs amsgrad=True")
        if maximum == "corrected" and efficient:
            raise ValueError("amsgrad_max='corrected' (optax) keeps the maximum of v̂, which efficient_form=True "
                             "(Keras) never forms; use amsgrad_max='raw' with efficient_form=True")

    @staticmethod
    def _max_key(group: dict[str, Any]) -> str:
        return "max_corrected_exp_avg_sq" if group["amsgrad_max"] == "corrected" else "max_exp_avg_sq"

    def _init_state(self, param: Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        state["step"] = new_step_counter()
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        if group["amsgrad"]:
            state[self._max_key(group)] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def plan(self, group: dict[str, Any]) -> StepPlan:
        beta1, beta2 = (as_float("betas[0]", group["betas"][0]), as_float("betas[1]", group["betas"][1]))
        hp = dict(lr=float(group["lr"]), beta1=beta1, beta2=beta2, eps=group["eps"],
                  eps_placement=group["eps_placement"], bias_correction=group["bias_correction"])
        common = dict(maximize=group["maximize"], weight_decay=group["weight_decay"],
                      decoupled=group["decoupled_weight_decay"], counts_steps=True)
        moments = ("exp_avg", "exp_avg_sq")
        if group["efficient_form"]:
            del hp["eps_placement"]
            if group["amsgrad"]:
                return StepPlan(amsgrad_efficient, moments + ("max_exp_avg_sq",), hp, **common)
            return StepPlan(adam_efficient, moments, hp, **common)
        if group["amsgrad"] and group["amsgrad_max"] == "corrected":
            return StepPlan(amsgrad_corrected, moments + ("max_corrected_exp_avg_sq",), hp, **common)
        return StepPlan(amsgrad if group["amsgrad"] else adam,
                        moments + ("max_exp_avg_sq",) if group["amsgrad"] else moments, hp, **common)


class AdamW(Adam):
    r"""AdamW (Loshchilov & Hutter 2019) — a drop-in for ``torch.optim.AdamW``.

    Adam with decoupled weight decay, applied to the weights before the Adam update::

        w ← w − η λ w;   then the Adam step of :class:`Adam` with g not decayed

    Defaults as PyTorch: ``weight_decay=1e-2``. With λ = 0 it equals :class:`Adam`.
    ``eps_placement``, ``bias_correction``, ``efficient_form`` (Keras's ``AdamW``) and ``amsgrad_max`` (optax's
    maximum of v̂) work as in :class:`Adam`.
    """

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        eps_placement: str = "outside",
        bias_correction: bool = True,
        efficient_form: bool = False,
        amsgrad_max: str = "raw",
        impl: str = "auto",
        nonfinite: str = "ignore",
        state_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True, eps_placement=eps_placement,
                         bias_correction=bias_correction, efficient_form=efficient_form, amsgrad_max=amsgrad_max,
                         impl=impl, nonfinite=nonfinite, state_dtype=state_dtype)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
