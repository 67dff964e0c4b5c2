"""``Momentum`` and ``Nesterov``: the lecture notes' names for gradient descent with momentum."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from descentlab.optim.base import RuleOptimizer, new_step_counter
from descentlab.optim.validation import check_bool, check_choice, check_range
from descentlab.rules.plan import StepPlan
from descentlab.rules.sgd import ema_momentum, heavy_ball

MOMENTUM_FORMS = ("ema", "sum")


class Momentum(RuleOptimizer):
    r"""Gradient descent with momentum, in the lecture notes' form by default.

    Symbols: ``η`` = ``lr``, ``β`` = ``beta``, ``λ`` = ``weight_decay``; state
    ``momentum_buffer`` (``v`` or ``a``, starts at 0) and, with bias correction, ``step``::

        g ← g + λ w
        form="ema" (default):  v ← β v + (1 − β) g;   w ← w − η v            (Ng's lectures)
           with bias_correction=True:                 w ← w − η v / (1 − β^t)
        form="sum":            a ← β a + g;           w ← w − η a            (torch.optim.SGD)
        decoupled_weight_decay=True:  w ← w (1 − η λ) before the step, in place of g ← g + λ w

    Conventions: the two forms give the same trajectory when ``η_sum = η_ema (1 − β)``.
    ``form="sum"`` equals ``torch.optim.SGD(lr, momentum=β)``; bias correction exists only for the
    ema form (the sum form has no average to correct).

    Example::

        >>> import torch, descentlab
        >>> w = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = descentlab.Momentum([w], lr=0.1, beta=0.9)
        >>> (w ** 2).sum().backward(); opt.step()   # v = 0.1 * 2, w = 1 - 0.1 * 0.2
        >>> round(w.item(), 6)
        0.98
    """

    extra_options = ("decoupled_weight_decay",)

    def __init__(
        self,
        params: Any,
        lr: float | Tensor,
        beta: float = 0.9,
        *,
        form: str = "ema",
        bias_correction: bool = False,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
        maximize: bool = False,
        impl: str = "auto",
        nonfinite: str = "ignore",
        state_dtype: torch.dtype | None = None,
    ) -> None:
        defaults = dict(lr=lr, beta=beta, form=form, bias_correction=bias_correction,
                        weight_decay=weight_decay, decoupled_weight_decay=decoupled_weight_decay, maximize=maximize,
                        impl=impl, nonfinite=nonfinite, state_dtype=state_dtype)
        super().__init__(params, defaults)

    def _validate(self, group: dict[str, Any]) -> None:
        check_range("lr", group["lr"])
        check_range("beta", group["beta"], 0.0, 1.0)
        check_range("weight_decay", group["weight_decay"])
        form = check_choice("form", group["form"], MOMENTUM_FORMS)
        check_bool("bias_correction", group["bias_correction"])
        check_bool("decoupled_weight_decay", group["decoupled_weight_decay"])
        check_bool("maximize", group["maximize"])
        if group["bias_correction"] and form != "ema":
            raise ValueError("bias_correction=True requires form='ema' (the sum form is not an average)")

    def _init_state(self, param: Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        state["step"] = new_step_counter()
        state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def plan(self, group: dict[str, Any]) -> StepPlan:
        common = dict(maximize=group["maximize"], weight_decay=group["weight_decay"],
                      decoupled=group["decoupled_weight_decay"], counts_steps=True)
        if group["form"] == "sum":
            return StepPlan(heavy_ball, ("momentum_buffer",), dict(lr=float(group["lr"]), momentum=group["beta"],
                            dampening=0.0, nesterov=False, first_step=False), **common)
        return StepPlan(ema_momentum, ("momentum_buffer",), dict(lr=float(group["lr"]), beta=group["beta"],
                        nesterov=False, bias_correction=group["bias_correction"]), **common)

class Nesterov(RuleOptimizer):
    r"""Nesterov accelerated gradient (NAG) in the stored look-ahead form.

    The textbook form evaluates the gradient at the look-ahead point ``w_t − η β a_t``. An optimizer only
    sees the gradient where the parameters are, so the parameters hold the look-ahead point
    ``u_t = w_t − η β a_t`` itself. With ``g = ∇L(u_t)``, ``η`` = ``lr``, ``β`` = ``beta`` and state
    ``a`` = ``momentum_buffer`` (starts at 0)::

        g ← g + λ w                    (decoupled_weight_decay=True: u ← u (1 − η λ) instead)
        a ← β a + g
        u ← u − η (g + β a)

    This is exactly ``torch.optim.SGD(lr, momentum=β, nesterov=True)``. The textbook iterate is
    ``w_t = u_t + η β a_t``: read it with :meth:`textbook_iterate`.

    Example::

        >>> import torch, descentlab
        >>> u = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = descentlab.Nesterov([u], lr=0.1, beta=0.9)
        >>> (u ** 2).sum().backward(); opt.step()
        >>> round(u.item(), 6), round(opt.textbook_iterate(u).item(), 6)
        (0.62, 0.8)
    """

    extra_options = ("decoupled_weight_decay",)

    def __init__(self, params: Any, lr: float | Tensor, beta: float = 0.9, *, weight_decay: float = 0.0,
                 decoupled_weight_decay: bool = False, maximize: bool = False, impl: str = "auto",
                 nonfinite: str = "ignore", state_dtype: torch.dtype | None = None) -> None:
        defaults = dict(lr=lr, beta=beta, weight_decay=weight_decay, decoupled_weight_decay=decoupled_weight_decay,
                        maximize=maximize, impl=impl, nonfinite=nonfinite, state_dtype=state_dtype)
        super().__init__(params, defaults)

    def _validate(self, group: dict[str, Any]) -> None:
        check_range("lr", group["lr"])
        check_range("beta", group["beta"], 0.0, 1.0)
        check_range("weight_decay", group["weight_decay"])
        check_bool("decoupled_weight_decay", group["decoupled_weight_decay"])
        check_bool("maximize", group["maximize"])

    def _init_state(self, param: Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def plan(self, group: dict[str, Any]) -> StepPlan:
        return StepPlan(heavy_ball, ("momentum_buffer",), dict(lr=float(group["lr"]), momentum=group["beta"],
                        dampening=0.0, nesterov=True, first_step=False),
                        maximize=group["maximize"], weight_decay=group["weight_decay"],
                        decoupled=group["decoupled_weight_decay"])

    @torch.no_grad()
    def textbook_iterate(self, param: Tensor) -> Tensor:
        """The textbook NAG iterate ``w_t = u_t + η β a_t`` for one parameter (a new tensor)."""
        for group in self.param_groups:
            if any(p is param for p in group["params"]):
                buf = self.state[param].get("momentum_buffer")
                if buf is None:
                    return param.detach().clone()
                return param.detach() + float(group["lr"]) * group["beta"] * buf
        raise ValueError("textbook_iterate: the tensor is not a parameter of this optimizer")
