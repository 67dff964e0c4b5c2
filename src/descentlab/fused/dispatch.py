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

#: Both ``"fused"`` and ``"auto"`` fuse only tensors at least this large: a call of the compiled kernel
#: costs ≈ 250 µs of Dynamo guard evaluation and dispatch on the 2-core CI machine (measured in
#: docs/speed.md), so below ≈ 1 M elements the reference rule is as fast or faster.
FUSED_MIN_NUMEL = 1 << 20
#: ``impl="auto"`` fuses only tensors at least this large …
AUTO_MIN_NUMEL = FUSED_MIN_NUMEL
#: … and only after this many steps of that tensor (compile cost ÷ time saved per step, rounded up).
AUTO_MIN_STEPS = 1000
FUSED_DTYPES = (torch.float32, torch.float64)
#: Options compiled into a kernel as constants (a change compiles a new variant; ``lr`` is a tensor input).
_STATIC_OPTIONS = {"rmsprop": ("alpha", "eps", "momentum", "weight_decay", "maximize", "centered", "eps_placement"),
                   "adadelta": ("rho", "eps", "weight_decay", "maximize", "eps_placement"),
                   "adam": ("betas", "eps", "weight_decay", "decoupled_weight_decay", "maximize", "eps_placement",
                            "amsgrad"),
                   "adagrad": ("eps", "weight_decay", "maximize", "eps_placement"),
                   "nadam": ("betas", "eps", "weight_decay", "decoupled_weight_decay", "maximize", "eps_placement")}


def _kernel_name(optimizer: Any) -> str | None:
    from descentlab.optim.adadelta import Adadelta
    from descentlab.optim.rmsprop import RMSprop

    if type(optimizer) is RMSprop:
        return "rmsprop"
    if type(optimizer) is Adadelta:
        return "adadelta"
    from descentlab.optim.nadam import NAdam

    if type(optimizer) is NAdam:
        return "nadam"
    from descentlab.optim.adam import Adam, AdamW

    if type(optimizer) in (Adam, AdamW):
        return "adam"
    from descentlab.optim.adagrad import Adagrad

    if type(optimizer) is Adagrad:
        return "adagrad"
    return None


def _plain(t: Tensor, like: Tensor) -> bool:
    return (isinstance(t, Tensor) and t.is_contiguous() and t.dtype == like.dtype and t.device == like.device
            and t.shape == like.shape and t.layout == torch.strided)


def eligible(optimizer: Any, param: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]) -> str | None:
    """The kernel name to use for this tensor, or ``None`` for the reference path."""
    impl = group["impl"]
    if impl == "reference" or group.get("differentiable") or group.get("capturable"):
        return None
    if param.is_cpu and cpu_step.ENABLED:
        return None  # CPU tensors belong to the C kernels (cpu_step); what they left, the reference rule takes
    if param.dtype not in FUSED_DTYPES or param.is_complex() or not param.is_contiguous() or not _plain(grad, param):
        return None
    if param.numel() < FUSED_MIN_NUMEL:
        return None
    if impl == "auto" and (param.numel() < AUTO_MIN_NUMEL or float(state["step"]) < AUTO_MIN_STEPS):
        return None
    name = _kernel_name(optimizer)
    if name is None:
        return None
    if name == "rmsprop":
        keys = ["square_avg"] + (["momentum_buffer"] if group["momentum"] > 0 else []) + (
            ["grad_avg"] if group["centered"] else [])
    elif name == "adadelta":
        keys = ["square_avg", "acc_delta"]
    elif name == "adam":
        keys = ["exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if group["amsgrad"] else [])
    elif name == "adagrad":
        keys = ["sum"]
    else:
        keys = ["exp_avg", "exp_avg_sq"]
        if not isinstance(state.get("mu_product"), Tensor):
            return None
    if not all(key in state and _plain(state[key], param) for key in keys):
        return None  # the reference path raises its own error for a missing state
    return name


def _run(name: str, fn: Any, param: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
    lr = torch.tensor(float(group["lr"]), dtype=param.dtype)
    inside = group["eps_placement"] == "inside"
    p = param.detach()
    if name == "rmsprop":
        fn(p, grad, state["square_avg"], state.get("grad_avg") if group["centered"] else None,
           state.get("momentum_buffer") if group["momentum"] > 0 else None, lr, float(group["alpha"]),
           float(group["eps"]), float(group["momentum"]), float(group["weight_decay"]), bool(group["maximize"]), inside)
    elif name == "adadelta":
        fn(p, grad, state["square_avg"], state["acc_delta"], lr, float(group["rho"]), float(group["eps"]),
           float(group["weight_decay"]), bool(group["maximize"]), inside)
    elif name == "adam":
        _run_adam(fn, p, grad, state, group, inside)
    elif name == "adagrad":
        step = state["step"].item() + 1
        step_lr = float(group["lr"]) / (1 + (step - 1) * float(group["lr_decay"]))
        fn(p, grad, state["sum"], torch.tensor(step_lr, dtype=p.dtype), float(group["eps"]),
           float(group["weight_decay"]), bool(group["maximize"]), inside)
    else:
        _run_nadam(fn, p, grad, state, group, inside)


def _run_adam(fn: Any, p: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any], inside: bool) -> None:
    """Adam's scalars, as ``rules.adam`` computes them (float64, then the tensor's dtype)."""
    lr, (beta1, beta2) = float(group["lr"]), (float(b) for b in group["betas"])
    step, wd = state["step"].item() + 1, float(group["weight_decay"])
    corrected = bool(group["bias_correction"])
    c1, c2 = (1.0 - beta1**step, 1.0 - beta2**step) if corrected else (1.0, 1.0)
    decoupled = bool(group["decoupled_weight_decay"])
    scalars = [1.0 - lr * wd if decoupled and wd != 0 else 1.0, lr / c1, c2**0.5, c2]
    fn(p, grad, state["exp_avg"], state["exp_avg_sq"], state["max_exp_avg_sq"] if group["amsgrad"] else None,
       *(torch.tensor(x, dtype=p.dtype) for x in scalars), beta1, beta2, float(group["eps"]),
       0.0 if decoupled else wd, bool(group["maximize"]), inside)


def _run_nadam(fn: Any, p: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any], inside: bool) -> None:
    """NAdam's scalars, as ``rules.nadam.nadam`` computes them (Π in the state's dtype, the rest in float64)."""
    lr, (beta1, beta2) = float(group["lr"]), (float(b) for b in group["betas"])
    step, psi, wd = state["step"].item() + 1, float(group["momentum_decay"]), float(group["weight_decay"])
    mu = beta1 * (1.0 - 0.5 * (0.96 ** (step * psi)))
    mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * psi)))
    new_product = state["mu_product"] * mu
    product = new_product.item()
    decoupled = bool(group["decoupled_weight_decay"])
    scalars = [1.0 - lr * wd if decoupled and wd != 0 else 1.0, lr * (1.0 - mu) / (1.0 - product),
               lr * mu_next / (1.0 - product * mu_next), 1.0 - beta2**step]
    fn(p, grad, state["exp_avg"], state["exp_avg_sq"], *(torch.tensor(x, dtype=p.dtype) for x in scalars),
       beta1, beta2, float(group["eps"]), 0.0 if decoupled else wd, bool(group["maximize"]), inside)
    state["mu_product"].copy_(new_product)


def try_fused_update(optimizer: Any, param: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]) -> bool:
    """Step ``param`` with the fused kernel and return True, or return False (nothing changed)."""
    name = eligible(optimizer, param, grad, state, group)
    if name is None:
        return False
    static = tuple(group[k] if isinstance(group[k], (bool, str)) else tuple(float(b) for b in group[k])
                   if isinstance(group[k], (tuple, list)) else float(group[k]) for k in _STATIC_OPTIONS[name])
    fn = compiled(name, (param.dtype, param.device.type, *static))
    if fn is None:
        return False
    try:
        _run(name, fn, param, grad, state, group)
    except Exception as err:  # compile failure: the tensors are untouched when Inductor fails to build
        mark_failed(name, err)
        return False
    state["step"] += 1
    return True
