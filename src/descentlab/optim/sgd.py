"""``SGD``: ``torch.optim.SGD`` with the lecture's ``ema`` momentum form as an option."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from descentlab.optim.base import RuleOptimizer
from descentlab.optim.validation import check_bool, check_choice, check_range, worded
from descentlab.rules.plan import StepPlan
from descentlab.rules.momentum_lr_inside import heavy_ball_lr_inside
from descentlab.rules.sgd import ema_momentum, heavy_ball, sgd

MOMENTUM_FORMS = ("sum", "ema")


def check_torch_flags(group: dict[str, Any]) -> None:
    """``foreach`` / ``fused`` are accepted as hints (descentlab picks its own path), validated as torch validates
    them; ``differentiable=True`` makes the step take part in autograd (the reference loop, grad mode on);
    ``capturable`` must be a bool (the classes that take it, as torch's do, set ``supports_capturable``; the base
    class refuses it for the others)."""
    for flag in ("foreach", "fused"):
        if flag in group and group[flag] is not None:
            check_bool(flag, group[flag])
    if group.get("fused") and group.get("foreach"):
        raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
    if group.get("fused") and group.get("differentiable"):
        raise RuntimeError("`fused` does not support `differentiable`")
    check_bool("differentiable", group.get("differentiable", False))
    check_bool("capturable", group.get("capturable", False))


class SGD(RuleOptimizer):
    r"""Stochastic gradient descent with optional momentum — a drop-in for ``torch.optim.SGD``.

    Symbols: ``η`` = ``lr``, ``β`` = ``momentum``, ``d`` = ``dampening``, ``λ`` = ``weight_decay``;
    state ``a`` = ``state["momentum_buffer"]`` (created on the first step)::

        g ← −g if maximize;   g ← g + λ w
        β = 0:        w ← w − η g
        sum form:     a ← β a + (1 − d) g   (a ← g on the first step);   w ← w − η a
        nesterov:     w ← w − η (g + β a)   in place of the line above
        ema form:     v ← β v + (1 − β) g   (v starts at 0);   w ← w − η v
        lr_in_buffer: b ← β b + η g   (b starts at 0);   w ← w − b   (nesterov: w ← w − (β b + η g))
        decoupled_weight_decay:  w ← w (1 − η λ) before the step, in place of g ← g + λ w

    Conventions: ``momentum_form="sum"`` (default) is PyTorch's accumulation form; ``"ema"`` is the
    lecture notes' (Ng) average, which equals the sum form with rate ``η(1 − β)``. PyTorch's
    ``dampening=β`` is *not* the ema form: PyTorch sets ``a ← g`` on the first step.
    ``lr_in_buffer=True`` is Keras's ``SGD`` (``m ← βm − η_t g; w ← w + m``, with ``m = −b``): equal to the sum
    form at a constant rate, different once a schedule changes η (each gradient keeps the rate it came with).
    Keras applies its ``weight_decay`` decoupled: ``decoupled_weight_decay=True``.
    ``foreach`` and ``fused`` are accepted for compatibility; descentlab chooses its own path.

    Example::

        >>> import torch, descentlab
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = descentlab.SGD([w], lr=0.1, momentum=0.9)
        >>> (w ** 2).sum().backward(); opt.step()
        >>> w.data
        tensor([ 0.8000, -1.6000])
    """

    extra_options = ("momentum_form", "lr_in_buffer", "decoupled_weight_decay")
    complex_as_real = False  # torch.optim.SGD steps complex tensors in complex arithmetic

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
        momentum_form: str = "sum",
        lr_in_buffer: bool = False,
        decoupled_weight_decay: bool = False,
        impl: str = "auto",
        nonfinite: str = "ignore",
        state_dtype: torch.dtype | None = None,
    ) -> None:
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize, foreach=foreach,
                        differentiable=differentiable, fused=fused, momentum_form=momentum_form, lr_in_buffer=lr_in_buffer,
                        decoupled_weight_decay=decoupled_weight_decay, impl=impl, nonfinite=nonfinite,
                        state_dtype=state_dtype)
        super().__init__(params, defaults)

    def _validate(self, group: dict[str, Any]) -> None:
        check_range("lr", group["lr"], as_torch=True)
        momentum = check_range("momentum", group["momentum"], 0.0, 1.0, as_torch=True)
        check_range("weight_decay", group["weight_decay"], as_torch=True)
        dampening = check_range("dampening", group["dampening"], 0.0, 1.0, high_open=False)
        check_bool("nesterov", group["nesterov"])
        check_bool("maximize", group["maximize"])
        form = check_choice("momentum_form", group["momentum_form"], MOMENTUM_FORMS)
        lr_in_buffer = check_bool("lr_in_buffer", group["lr_in_buffer"])
        check_bool("decoupled_weight_decay", group["decoupled_weight_decay"])
        check_torch_flags(group)
        if group["nesterov"] and (momentum <= 0 or dampening != 0):
            raise ValueError(worded(
                f"nesterov=True requires momentum > 0 and dampening = 0, got momentum={group['momentum']!r}, "
                f"dampening={group['dampening']!r}", "nesterov"))
        if form == "ema" and dampening != 0:
            raise ValueError(f"dampening must be 0 with momentum_form='ema' (the ema form already weights g by 1 - momentum), got {group['dampening']!r}")
        if lr_in_buffer and form != "sum":
            raise ValueError(f"lr_in_buffer=True requires momentum_form='sum' (Keras's buffer b ← βb + ηg), got "
                             f"momentum_form={form!r}")
        if lr_in_buffer and dampening != 0:
            raise ValueError(f"dampening must be 0 with lr_in_buffer=True (Keras's buffer b ← βb + ηg is undamped), "
                             f"got {group['dampening']!r}")

    def _init_state(self, param: Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        if group["momentum"] != 0:
            state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    #: as torch.optim.SGD: plain GD adds a sparse gradient as it is (torch's result to the bit); the momentum forms
    #: keep a dense buffer and add the gradient densified (torch keeps a sparse one: equal to rounding)
    accepts_sparse_gradients = True

    def plan(self, group: dict[str, Any]) -> StepPlan:
        lr, momentum = float(group["lr"]), group["momentum"]
        common = dict(maximize=group["maximize"], weight_decay=group["weight_decay"],
                      decoupled=group["decoupled_weight_decay"])
        if momentum == 0:
            return StepPlan(sgd, (), dict(lr=lr), **common)
        if group["lr_in_buffer"]:
            return StepPlan(heavy_ball_lr_inside, ("momentum_buffer",),
                            dict(lr=lr, momentum=momentum, nesterov=group["nesterov"]), **common)
        if group["momentum_form"] == "sum":
            return StepPlan(heavy_ball, ("momentum_buffer",), dict(lr=lr, momentum=momentum,
                            dampening=group["dampening"], nesterov=group["nesterov"]), **common)
        return StepPlan(ema_momentum, ("momentum_buffer",), dict(lr=lr, beta=momentum, step=1.0,
                        nesterov=group["nesterov"], bias_correction=False), **common)

    def _add_missing_state(self, param: Tensor, group: dict[str, Any], state: dict[str, Any],
                           missing: list[str]) -> bool:
        """Momentum switched on after steps were taken without it: a fresh buffer, filled as on a first step."""
        state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        return True
