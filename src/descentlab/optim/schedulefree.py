"""``ScheduleFreeAdamW`` / ``ScheduleFreeSGD``: facebookresearch's ``schedulefree.AdamWScheduleFree`` /
``schedulefree.SGDScheduleFree`` (defaults, param-group keys, state keys, ``train()`` / ``eval()`` and results)."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor

from descentlab.optim.base import RuleOptimizer
from descentlab.optim.sgd import check_torch_flags
from descentlab.optim.validation import as_float, check_betas, check_bool, check_range
from descentlab.rules.common import bias_correction
from descentlab.rules.plan import StepPlan
from descentlab.rules.schedulefree import schedulefree_adamw, schedulefree_sgd


def _check_real(name: str, value: Any, low: float = -math.inf) -> float:
    x = as_float(name, value)
    if not (math.isfinite(x) and x >= low):
        raise ValueError(f"{name} must be a finite number >= {low:g}, got {value!r}")
    return x


def _check_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")


class _ScheduleFree(RuleOptimizer):
    """What the two share: the group's running scalars, the step that advances them once per group, and the
    ``train()`` / ``eval()`` switch. Subclasses name the interpolation coefficient β (:meth:`_beta`)."""

    #: The parameters hold y (train mode) or x (eval mode), never a point that moves by −η·D(state, g): a step is
    #: not linear in the rate (the average's weights are lr_max^weight_lr_power), so one run cannot stand in for
    #: many rates (the lab's batched race; see docs/optimizers.md).
    step_is_linear_in_lr = False
    #: ``train()`` / ``eval()`` move the parameters between y and x: ``descentlab.fit`` evaluates and checkpoints in
    #: eval mode (``descentlab.train.eval_switch``).
    has_train_eval_switch = True

    def _beta(self, group: dict[str, Any]) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def _validate_schedule(self, group: dict[str, Any]) -> None:
        check_range("lr", group["lr"])
        check_range("weight_decay", group["weight_decay"])
        check_range("warmup_steps", group["warmup_steps"])
        _check_real("r", group["r"], 0.0)
        _check_real("weight_lr_power", group["weight_lr_power"], 0.0)
        check_bool("maximize", group["maximize"])
        check_bool("train_mode", group["train_mode"])
        _check_count("k", group["k"])
        _check_real("weight_sum", group["weight_sum"], 0.0)
        _check_real("lr_max", group["lr_max"], -1.0)
        _check_real("scheduled_lr", group["scheduled_lr"], 0.0)
        check_torch_flags(group)

    # -- the group's scalars -----------------------------------------------------------------------------------
    def _advance(self, group: dict[str, Any]) -> None:
        """The package's per-group bookkeeping for the step about to be taken (``k`` is still this step's)::

            η = lr · min(1, (k + 1) / warmup_steps);   η_max ← max(η, η_max)
            w_{k+1} = (k + 1)^r · η_max^weight_lr_power;   W ← W + w_{k+1}
        """
        k = group["k"]
        warmup = group["warmup_steps"]
        sched = (k + 1) / warmup if k < warmup else 1.0
        lr = as_float("lr", group["lr"]) * sched
        group["scheduled_lr"] = lr
        group["lr_max"] = max(lr, group["lr_max"])
        group["weight_sum"] = group["weight_sum"] + self._weight(group)

    @staticmethod
    def _weight(group: dict[str, Any]) -> float:
        return ((group["k"] + 1) ** group["r"]) * (group["lr_max"] ** group["weight_lr_power"])

    def _scalars(self, group: dict[str, Any]) -> tuple[float, float]:
        """``(η, c_{k+1})`` of the step being taken: the warmed-up rate and the averaging weight ``w_{k+1} / W``
        (0 while ``W = 0``, as the package)."""
        weight_sum = group["weight_sum"]
        ckp1 = self._weight(group) / weight_sum if weight_sum != 0 else 0.0
        return group["scheduled_lr"], ckp1

    def _step_group(self, group: dict[str, Any], grad_inv_scale: float = 0.0) -> None:
        """Advance the group's scalars once (whether or not a tensor has a gradient, as the package), run the
        per-tensor rule on every path, then count the step."""
        self._advance(group)
        super()._step_group(group, grad_inv_scale)
        group["k"] = group["k"] + 1

    # -- train / eval ------------------------------------------------------------------------------------------
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One step at y. Like the package, refused in eval mode (the parameters hold x): call ``train()``."""
        if not self.param_groups[0]["train_mode"]:
            raise RuntimeError(f"{type(self).__name__} is in eval mode (the parameters hold the averaged weights x) "
                               "when step() is called: call optimizer.train() before training steps and "
                               "optimizer.eval() before evaluating or saving")
        return super().step(closure)

    @torch.no_grad()
    def eval(self) -> None:
        """Set the parameters to x, the average to evaluate: ``w ← w + (1 − 1/β)(z − w)``."""
        self._switch(False, lambda beta: 1 - 1 / beta)

    @torch.no_grad()
    def train(self) -> None:
        """Set the parameters to y, where gradients are taken: ``w ← w + (1 − β)(z − w)``."""
        self._switch(True, lambda beta: 1 - beta)

    def _switch(self, to_train: bool, weight: Callable[[float], float]) -> None:
        for group in self.param_groups:
            if group["train_mode"] == to_train:
                continue
            towards = weight(self._beta(group))
            for param in group["params"]:
                state = self.state.get(param)
                if state and "z" in state:
                    param.lerp_(state["z"].to(device=param.device, dtype=param.dtype), towards)
            group["train_mode"] = to_train


class ScheduleFreeAdamW(_ScheduleFree):
    r"""Schedule-free AdamW — a drop-in for ``schedulefree.AdamWScheduleFree``.

    Symbols: ``η`` = ``lr``, ``(β₁, β₂)`` = ``betas``, ``λ`` = ``weight_decay``, ``z`` = ``state["z"]`` (starts
    at w), ``v`` = ``state["exp_avg_sq"]`` (starts at 0); per param group ``k`` = ``group["k"]`` (steps taken),
    ``W`` = ``group["weight_sum"]``, ``η_max`` = ``group["lr_max"]``. The parameter holds ``y`` in train mode,
    ``x = (y − (1 − β₁) z) / β₁`` in eval mode (see :mod:`descentlab.rules.schedulefree`)::

        g ← −g if maximize
        η_k = η · min(1, (k + 1) / warmup_steps);   η_max ← max(η_max, η_k)
        w_k = (k + 1)^r · η_max^weight_lr_power;   W ← W + w_k;   c = w_k / W
        v ← β₂ v + (1 − β₂) g²
        d = g / (√(v / (1 − β₂^{k+1})) + ε) + λ y
        y ← y + c (z − y);   y ← y + η_k (β₁ (1 − c) − 1) d;   z ← z − η_k d
        eval():  w ← w + (1 − 1/β₁)(z − w)   (y → x);    train():  w ← w + (1 − β₁)(z − w)   (x → y)

    Defaults are the package's: ``lr=0.0025``, ``betas=(0.9, 0.999)``, ``eps=1e-8``, ``weight_decay=0``,
    ``warmup_steps=0``, ``r=0``, ``weight_lr_power=2``; so are the group keys (``k``, ``train_mode``,
    ``weight_sum``, ``lr_max``, ``scheduled_lr``, …) and the state keys (``z``, ``exp_avg_sq``): state_dicts move
    between the two.

    Conventions: the step count and the sums live in the param group, so a tensor whose first gradient comes
    late starts its ``v`` with the group's bias correction, as in the package. ``λ`` is added to the normalised
    gradient at ``y`` (neither Adam's coupled nor AdamW's decoupled form). The package divides ``.grad`` in place;
    here the gradient is left as it was. Differences from the package: a new optimizer starts in train mode
    (the package starts in eval mode and refuses ``step()`` until ``train()`` is called — on a fresh optimizer
    ``train()`` changes nothing else, so code calling it gets the same numbers, and ``torch.optim`` loops that
    never call it run); ``step()`` in eval mode raises ``RuntimeError`` (the package: ``Exception``).
    ``maximize``, ``impl``, ``nonfinite`` and ``state_dtype`` are descentlab's options.

    Example::

        >>> import torch, descentlab
        >>> w = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = descentlab.ScheduleFreeAdamW([w], lr=0.1)
        >>> w.grad = torch.tensor([2.0]); opt.step()    # first step: c = 1, so y = z = x = 1 − η g/(|g| + ε)
        >>> round(w.item(), 4)
        0.9
        >>> opt.eval(); round(w.item(), 4)              # the parameter now holds x
        0.9

    Reference: A. Defazio et al., "The Road Less Scheduled", 2024 (arXiv:2405.15682);
    https://github.com/facebookresearch/schedule_free.
    """

    extra_options = ("maximize",)

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 0.0025,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
        foreach: bool | None = True,
        *,
        maximize: bool = False,
        impl: str = "auto",
        nonfinite: str = "ignore",
        state_dtype: torch.dtype | None = None,
    ) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, r=r, k=0, warmup_steps=warmup_steps, train_mode=True,
                        weight_sum=0.0, lr_max=-1.0, scheduled_lr=0.0, weight_lr_power=weight_lr_power,
                        weight_decay=weight_decay, foreach=foreach, maximize=maximize, impl=impl,
                        nonfinite=nonfinite, state_dtype=state_dtype)
        super().__init__(params, defaults)

    def _beta(self, group: dict[str, Any]) -> float:
        return as_float("betas[0]", group["betas"][0])

    def _validate(self, group: dict[str, Any]) -> None:
        beta1, _ = check_betas(group["betas"])
        if beta1 == 0:
            raise ValueError("betas[0] must be in (0, 1), got 0.0: eval() divides by it")
        check_range("eps", group["eps"])
        self._validate_schedule(group)

    def _init_state(self, param: Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        state["z"] = torch.clone(param, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def plan(self, group: dict[str, Any]) -> StepPlan:
        lr, ckp1 = self._scalars(group)
        beta2 = as_float("betas[1]", group["betas"][1])
        return StepPlan(schedulefree_adamw, ("z", "exp_avg_sq"),
                        dict(lr=lr, beta1=self._beta(group), beta2=beta2, eps=group["eps"],
                             decay=float(group["weight_decay"]), ckp1=ckp1,
                             bias_correction2=bias_correction(beta2, group["k"] + 1)),
                        maximize=group["maximize"])


class ScheduleFreeSGD(_ScheduleFree):
    r"""Schedule-free SGD — a drop-in for ``schedulefree.SGDScheduleFree``.

    Symbols: ``η`` = ``lr``, ``β`` = ``momentum``, ``λ`` = ``weight_decay``, ``z`` = ``state["z"]`` (starts at w);
    per param group ``k``, ``W`` = ``group["weight_sum"]``, ``η_max`` = ``group["lr_max"]`` as in
    :class:`ScheduleFreeAdamW`::

        g ← −g if maximize;   g ← g + λ y
        η_k = η · min(1, (k + 1) / warmup_steps);   η_max ← max(η_max, η_k)
        w_k = (k + 1)^r · η_max^weight_lr_power;   W ← W + w_k;   c = w_k / W
        y ← y + c (z − y);   y ← y + η_k (β (1 − c) − 1) g;   z ← z − η_k g
        eval():  w ← w + (1 − 1/β)(z − w)   (y → x);    train():  w ← w + (1 − β)(z − w)   (x → y)

    Defaults, group keys and state keys (``z``) are the package's: ``lr=1.0``, ``momentum=0.9``,
    ``weight_decay=0``, ``warmup_steps=0``, ``r=0``, ``weight_lr_power=2``. Conventions as
    :class:`ScheduleFreeAdamW` (starts in train mode; the package adds ``λ y`` to ``.grad`` in place, here the
    gradient is left alone).

    Example::

        >>> import torch, descentlab
        >>> w = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = descentlab.ScheduleFreeSGD([w], lr=0.1)
        >>> w.grad = torch.tensor([2.0]); opt.step()    # c = 1: y = z = 1 − η g
        >>> round(w.item(), 4)
        0.8
    """

    extra_options = ("maximize",)

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1.0,
        momentum: float = 0.9,
        weight_decay: float = 0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2,
        foreach: bool | None = True,
        *,
        maximize: bool = False,
        impl: str = "auto",
        nonfinite: str = "ignore",
        state_dtype: torch.dtype | None = None,
    ) -> None:
        defaults = dict(lr=lr, momentum=momentum, r=r, k=0, warmup_steps=warmup_steps, train_mode=True,
                        weight_sum=0.0, lr_max=-1.0, scheduled_lr=0.0, weight_lr_power=weight_lr_power,
                        weight_decay=weight_decay, foreach=foreach, maximize=maximize, impl=impl,
                        nonfinite=nonfinite, state_dtype=state_dtype)
        super().__init__(params, defaults)

    def _beta(self, group: dict[str, Any]) -> float:
        return as_float("momentum", group["momentum"])

    def _validate(self, group: dict[str, Any]) -> None:
        check_range("momentum", group["momentum"], 0.0, 1.0, low_open=True)
        self._validate_schedule(group)

    def _init_state(self, param: Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        state["z"] = torch.clone(param, memory_format=torch.preserve_format)

    def plan(self, group: dict[str, Any]) -> StepPlan:
        lr, ckp1 = self._scalars(group)
        return StepPlan(schedulefree_sgd, ("z",), dict(lr=lr, momentum=self._beta(group), ckp1=ckp1),
                        maximize=group["maximize"], weight_decay=float(group["weight_decay"]))
