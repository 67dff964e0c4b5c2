"""Choosing, tensor by tensor, between the fused kernel and the reference rule.

``impl="fused"`` uses the compiled kernel for every tensor of at least :data:`FUSED_MIN_NUMEL`
elements it can handle; ``impl="auto"`` uses it only for such tensors once the tensor has taken
:data:`AUTO_MIN_STEPS` steps, so the one-off compile cost (≈ 20–40 s on a cold 2-core machine, see
docs/speed.md) is only paid where the steps saved repay it. Anything unusual — complex, sparse,
non-contiguous, mixed dtypes or devices, a dtype other than float32/float64, ``differentiable`` /
``capturable``, or an optimizer without a kernel — takes the reference path, which stays the oracle.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from descentlab.fused import cpu_step
from descentlab.fused.compiled import compiled, mark_failed
from descentlab.fused.compiled_rules import COMPILED_RULES
from descentlab.rules.plan import StepPlan

#: Both ``"fused"`` and ``"auto"`` fuse only tensors at least this large: a call of the compiled kernel
#: costs ≈ 250 µs of Dynamo guard evaluation and dispatch on the 2-core CI machine (measured in
#: docs/speed.md), so below ≈ 1 M elements the reference rule is as fast or faster.
FUSED_MIN_NUMEL = 1 << 20
#: ``impl="auto"`` fuses only tensors at least this large …
AUTO_MIN_NUMEL = FUSED_MIN_NUMEL
#: … and only after this many steps of that tensor (compile cost ÷ time saved per step, rounded up).
AUTO_MIN_STEPS = 1000
FUSED_DTYPES = (torch.float32, torch.float64)
def _plain(t: Tensor, like: Tensor) -> bool:
    return (isinstance(t, Tensor) and t.is_contiguous() and t.dtype == like.dtype and t.device == like.device
            and t.shape == like.shape and t.layout == torch.strided)


def _tensors(plan: StepPlan) -> tuple[str, ...]:
    """The plan's state entries shaped like the parameter (not its 0-d scalars)."""
    return tuple(key for key in plan.state if key not in plan.extra)


def eligible(plan: StepPlan, param: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]) -> str | None:
    """The compiled kernel's name to use for this tensor, or ``None`` for the reference path."""
    impl = group["impl"]
    if impl not in ("auto", "fused") or group.get("differentiable") or group.get("capturable"):
        return None
    if param.is_cpu and cpu_step.ENABLED:
        return None  # CPU tensors belong to the C kernels (cpu_step); what they left, the reference rule takes
    if param.dtype not in FUSED_DTYPES or param.is_complex() or not param.is_contiguous() or not _plain(grad, param):
        return None
    if param.numel() < FUSED_MIN_NUMEL:
        return None
    if not plan.counts_steps or not isinstance(state.get("step"), Tensor):
        return None
    if impl == "auto" and (param.numel() < AUTO_MIN_NUMEL or float(state["step"]) < AUTO_MIN_STEPS):
        return None
    entry = COMPILED_RULES.get(plan.rule)
    if entry is None or (plan.decoupled and not entry.decoupled):
        return None
    if not all(key in state and _plain(state[key], param) for key in _tensors(plan)):
        return None  # the reference path raises its own error for a missing state
    if not all(isinstance(state.get(key), Tensor) for key in plan.extra):
        return None
    return entry.kernel


def takes(plan: StepPlan, param: Tensor, state_of: Any, group: dict[str, Any]) -> bool:
    """Whether the compiled kernels take ``param`` this step (a quick size test first)."""
    if param.numel() < FUSED_MIN_NUMEL or param.grad is None:
        return False
    return eligible(plan, param, param.grad, state_of.get(param, {}), group) is not None


def _static_key(plan: StepPlan, param: Tensor) -> tuple[Any, ...]:
    """What a compiled variant is specialised on: dtype, device, and every hyperparameter but the rate."""
    options = tuple(sorted((k, tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in plan.hp.items()
                           if k not in ("lr", "step", "first_step")))
    return (param.dtype, param.device.type, plan.name, options, bool(plan.maximize), float(plan.weight_decay),
            bool(plan.decoupled))


def try_fused_update(plan: StepPlan, param: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]) -> bool:
    """Step ``param`` with the compiled kernel of ``plan``'s rule and return True, or return False (nothing
    changed). The step counter is advanced here, as the reference loop would."""
    name = eligible(plan, param, grad, state, group)
    if name is None:
        return False
    fn = compiled(name, _static_key(plan, param))
    if fn is None:
        return False
    step = state["step"].item() + 1
    try:
        COMPILED_RULES[plan.rule].run(fn, plan, param.detach(), grad, state, step)
    except Exception as err:  # compile failure: the tensors are untouched when Inductor fails to build
        mark_failed(name, err)
        return False
    state["step"] += 1
    return True
