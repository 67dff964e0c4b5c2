"""Delegation to torch's own fused kernels: a group whose plan is exactly torch's convention is stepped by
``torch._fused_adam_`` / ``_fused_adamw_`` / ``_fused_sgd_`` / ``_fused_adagrad_``, one call per (device, dtype).

Under ``impl="auto"`` every non-CPU tensor whose group's plan is eligible takes this path (on the CPU the C kernels of
:mod:`descentlab.fused.cpu_step` keep it); ``impl="torch_fused"`` forces it for every eligible tensor on any device,
the CPU included (torch ships these kernels there too, which is how the path is tested). The result is then
``torch.optim.X(fused=True)``'s to the bit.

Eligibility is read from the :class:`~descentlab.rules.plan.StepPlan` alone (no optimizer class is named)::

    rules.adam / rules.amsgrad   ε outside the root, bias correction on  →  _fused_adam_ (coupled λ), _fused_adamw_
                                 (decoupled λ)
    rules.sgd                    coupled λ                              →  _fused_sgd_, no momentum buffer
    rules.heavy_ball             coupled λ (torch's sum form: a ← β a + (1 − d) g, a ← g on the first step; Nesterov)
                                                                        →  _fused_sgd_ (``is_first_step`` for the
                                                                           tensors whose buffer is new)
    rules.adagrad                ε outside the root, coupled λ          →  _fused_adagrad_

with exactly the hyperparameters and state keys torch's kernels know (torch's names: ``exp_avg``, ``exp_avg_sq``,
``max_exp_avg_sq``, ``momentum_buffer``, ``sum``, ``step``). Any other convention — ε inside, no bias correction,
the ema or rate-in-buffer momentum forms, decoupled decay outside AdamW, a rule torch has no kernel for — is never
delegated: its tensors go back to the caller (the multi-tensor path or the reference loop), so a convention is
never silently changed.

A tensor is taken when it is a plain dense floating-point tensor (float32, float64, bf16, fp16; not complex, no
tensor subclass) on a device torch has fused kernels for, contiguous, with a gradient and state of its own dtype,
device and shape, and no wider ``state_dtype``. Its first step is taken here too (``init_state`` creates the
state), so the whole trajectory is the kernel's. Off the CPU the step counter lives on the parameter's device as
float32, as torch keeps it for ``fused=True`` (moved there once, as torch's ``load_state_dict`` does).

``torch.amp.GradScaler``: the scale goes to the kernels as ``grad_scale`` (each gradient divided by it, and left
unscaled, as torch's fused optimizers do). ``found_inf`` is taken as torch takes it — the kernels leave every tensor
unchanged where it is non-zero and the step counters are put back — although the optimizers never pass it: they
skip a step with ``found_inf`` whole before any executor runs.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from descentlab.rules.adagrad import adagrad
from descentlab.rules.adam import adam, amsgrad
from descentlab.rules.plan import StepPlan
from descentlab.rules.sgd import heavy_ball, sgd

#: Parameter dtypes torch's fused kernels take (CPU and CUDA, torch 2.13).
TORCH_FUSED_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
_PLAIN = (Tensor, torch.nn.Parameter)
_ADAM_HP = frozenset({"lr", "beta1", "beta2", "eps", "eps_placement", "bias_correction"})
_DEVICES: list[str] | None = None


def torch_fused_devices() -> list[str]:
    """The device types torch's fused kernels run on (``torch.utils._foreach_utils``), read once."""
    global _DEVICES
    if _DEVICES is None:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        _DEVICES = list(_get_fused_kernels_supported_devices())
    return _DEVICES


def torch_fused_kind(plan: StepPlan) -> str | None:
    """``"adam"``, ``"adamw"``, ``"sgd"`` or ``"adagrad"``: the torch kernel that computes ``plan``'s step exactly,
    or ``None`` when the plan's convention is not torch's (see the module docstring)."""
    hp, rule = plan.hp, plan.rule
    if plan.extra:
        return None
    if rule in (adam, amsgrad):
        moments = ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if rule is amsgrad else ())
        if (set(hp) != _ADAM_HP or plan.state != moments or not plan.counts_steps
                or hp["eps_placement"] != "outside" or hp["bias_correction"] is not True):
            return None
        return "adamw" if plan.decoupled else "adam"
    if plan.decoupled and plan.weight_decay != 0:
        return None  # torch's SGD and Adagrad decay the gradient only
    if rule is sgd:
        return "sgd" if set(hp) == {"lr"} and plan.state == () and not plan.counts_steps else None
    if rule is heavy_ball:
        ok = set(hp) == {"lr", "momentum", "dampening", "nesterov"} and plan.state == ("momentum_buffer",)
        return "sgd" if ok and not plan.counts_steps and hp["momentum"] != 0 else None
    if rule is adagrad:
        ok = set(hp) == {"lr", "lr_decay", "eps", "eps_placement"} and plan.state == ("sum",)
        return "adagrad" if ok and plan.counts_steps and hp["eps_placement"] == "outside" else None
    return None


def _has_python_dispatch(t: Tensor) -> bool:
    return bool(torch._C._dispatch_keys(t).has(torch._C.DispatchKey.Python))


def _fits(t: Any, param: Tensor) -> bool:
    return (type(t) is Tensor and t.layout is torch.strided and t.dtype == param.dtype and t.device == param.device
            and t.shape == param.shape and t.is_contiguous())


def _takes(param: Tensor, group: dict[str, Any]) -> bool:
    """The checks on the parameter and its gradient (the state is checked by the caller)."""
    if type(param) not in _PLAIN or param.layout is not torch.strided or _has_python_dispatch(param):
        return False
    if param.dtype not in TORCH_FUSED_DTYPES or not param.is_contiguous():
        return False
    if param.device.type not in torch_fused_devices() or not _fits(param.grad, param):
        return False
    wide = group.get("state_dtype")
    return wide is None or wide.itemsize <= param.dtype.itemsize


def _step_counter(state: dict[str, Any], param: Tensor) -> bool:
    """Whether ``state["step"]`` is a 0-d floating tensor the kernels can read; off the CPU it is kept on the
    parameter's device as float32 (torch's ``fused=True`` layout), moved there the first time."""
    step = state.get("step")
    if type(step) is not Tensor or step.dim() != 0 or not step.is_floating_point():
        return False
    if not param.is_cpu and (step.device != param.device or step.dtype != torch.float32):
        state["step"] = step.to(device=param.device, dtype=torch.float32)
    return True


def torch_fused_step(state_of: Any, group: dict[str, Any], plan: StepPlan, params: list[Tensor],
                     init_state: Callable[[Tensor, dict[str, Any]], None], grad_scale: Tensor | None = None,
                     found_inf: Tensor | None = None, *, keep: Callable[[Tensor], bool] | None = None) -> list[Tensor]:
    """Step the tensors of ``params`` (of ``group``, whose step is ``plan``; state in ``state_of``) that torch's fused
    kernels compute exactly, and return the others in order. ``init_state(param, state)`` fills an empty state
    dict (a first step); ``keep(param)`` True leaves a tensor to the caller; ``grad_scale`` and ``found_inf`` are
    GradScaler's scale and inf flag (0-d tensors), as torch's fused optimizers take them."""
    kind = torch_fused_kind(plan)
    if kind is None or not params:
        return list(params)
    stateful = plan.stateful
    buckets: dict[tuple[torch.device, torch.dtype, bool], list[Tensor]] = {}
    rest: list[Tensor] = []
    for param in params:
        if param.grad is None:
            continue
        if (keep is not None and keep(param)) or not _takes(param, group):
            rest.append(param)
            continue
        first = False
        if stateful:
            state = state_of[param]
            if not state:
                init_state(param, state)
                first = True
            if (any(not _fits(state.get(key), param) for key in plan.state)
                    or (plan.counts_steps and not _step_counter(state, param))):
                if first:
                    state.clear()  # the reference loop creates it again, as a first step
                rest.append(param)
                continue
        buckets.setdefault((param.device, param.dtype, first and kind == "sgd"), []).append(param)
    moved: dict[tuple[int, torch.device], Tensor] = {}

    def on(flag: Tensor | None, device: torch.device) -> Tensor | None:
        if flag is None:
            return None
        return moved.setdefault((id(flag), device), flag.to(device, non_blocking=True))

    for (device, _, first), bucket in buckets.items():
        _call(kind, plan, state_of, bucket, on(grad_scale, device), on(found_inf, device), first)
    return rest


def _call(kind: str, plan: StepPlan, state_of: Any, params: list[Tensor], grad_scale: Tensor | None,
          found_inf: Tensor | None, first: bool) -> None:
    grads: list[Tensor] = [p.grad for p in params if p.grad is not None]  # all of them: checked by the caller
    states = [state_of[p] for p in params] if plan.stateful else []
    slots = [[s[key] for s in states] for key in plan.state]
    hp: dict[str, Any] = {key: value if isinstance(value, (bool, str)) else float(value) for key, value in plan.hp.items()}
    decay = float(plan.weight_decay)
    if kind == "sgd":
        torch._fused_sgd_(params, grads, slots[0] if slots else [], weight_decay=decay,
                          momentum=hp.get("momentum", 0.0), lr=hp["lr"], dampening=hp.get("dampening", 0.0),
                          nesterov=hp.get("nesterov", False), maximize=plan.maximize, is_first_step=first,
                          grad_scale=grad_scale, found_inf=found_inf)
        return
    steps = [s["step"] for s in states]
    torch._foreach_add_(steps, 1)
    if kind == "adagrad":
        torch._fused_adagrad_(params, grads, slots[0], steps, lr=hp["lr"], lr_decay=hp["lr_decay"],
                              weight_decay=decay, eps=hp["eps"], maximize=plan.maximize,
                              grad_scale=grad_scale, found_inf=found_inf)
    else:
        fn = torch._fused_adamw_ if kind == "adamw" else torch._fused_adam_
        fn(params, grads, slots[0], slots[1], slots[2] if len(slots) > 2 else [], steps, amsgrad=len(slots) > 2,
           lr=hp["lr"], beta1=hp["beta1"], beta2=hp["beta2"], weight_decay=decay, eps=hp["eps"],
           maximize=plan.maximize, grad_scale=grad_scale, found_inf=found_inf)
    if found_inf is not None:  # the kernels skipped the update: put the counters back, as torch does
        torch._foreach_sub_(steps, [found_inf] * len(steps))
