"""Hyperparameter checks shared by every optimizer: each names the argument, the value and the range."""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

import torch

#: torch.optim's own message for a bad value of each hyperparameter its constructors check, keyed by the name.
#: The torch-named classes pass ``as_torch=True`` to the checks below, which then append torch's wording to
#: descentlab's (``"lr must be in [0, inf), got -1.0 (torch.optim: Invalid learning rate: -1.0)"``), so a
#: ``pytest.raises(ValueError, match=...)`` written against torch.optim matches too. descentlab's wording stays
#: first: the live lab reads the allowed range from it.
TORCH_WORDING: dict[str, str] = {
    "lr": "Invalid learning rate: {}",
    "eps": "Invalid epsilon value: {}",
    "betas[0]": "Invalid beta parameter at index 0: {}",
    "betas[1]": "Invalid beta parameter at index 1: {}",
    "weight_decay": "Invalid weight_decay value: {}",
    "momentum": "Invalid momentum value: {}",
    "rho": "Invalid rho value: {}",
    "alpha": "Invalid alpha value: {}",
    "lr_decay": "Invalid lr_decay value: {}",
    "initial_accumulator_value": "Invalid initial_accumulator_value value: {}",
    "momentum_decay": "Invalid momentum_decay value: {}",
    "nesterov": "Nesterov momentum requires a momentum and zero dampening",
    "tensor": "Tensor {} must be 1-element",
    "betas kinds": "betas must be either both floats or both Tensors",
    "tensor with foreach": "{} as a Tensor is not supported for capturable=False and foreach=True",
}


def worded(message: str, key: str, value: Any = None, as_torch: bool = True) -> str:
    """``message``, followed by torch.optim's wording for ``key`` (:data:`TORCH_WORDING`) when ``as_torch``."""
    if not as_torch or key not in TORCH_WORDING:
        return message
    return f"{message} (torch.optim: {TORCH_WORDING[key].format(value)})"


def as_float(name: str, value: Any, *, as_torch: bool = False) -> float:
    """A real number from a float, int or one-element tensor; anything else is a ``ValueError``."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(worded(f"{name} given as a tensor must have exactly one element, got shape "
                                    f"{tuple(value.shape)}", "tensor", name, as_torch))
        if value.is_complex():
            raise ValueError(f"{name} must be real, got a complex tensor")
        return float(value.detach().reshape(()).item())
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    return float(value)


def check_range(
    name: str,
    value: Any,
    low: float = 0.0,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = True,
    as_torch: bool = False,
) -> float:
    """Check ``low ≤ value ≤ high`` (bounds open as asked); NaN is always out of range. ``as_torch``: the message
    carries torch.optim's wording for ``name`` as well (:data:`TORCH_WORDING`)."""
    x = as_float(name, value, as_torch=as_torch)
    left = "(" if low_open else "["
    right = ")" if high_open or high == math.inf else "]"
    hi = "inf" if high == math.inf else f"{high:g}"
    ok_low = x > low if low_open else x >= low
    ok_high = x < high if high_open else x <= high
    if math.isnan(x) or not (ok_low and ok_high):
        raise ValueError(worded(f"{name} must be in {left}{low:g}, {hi}{right}, got {value!r}", name, value, as_torch))
    return x


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Check that ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices or isinstance(value, bool) != isinstance(choices[0], bool):
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {allowed}; got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """Check that ``value`` is a bool (not merely truthy)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def check_betas(value: Any, name: str = "betas", *, as_torch: bool = False) -> tuple[float, float]:
    """Check a pair ``(β₁, β₂)`` with each in [0, 1)."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name} must be a pair (beta1, beta2), got {value!r}")
    return (check_range(f"{name}[0]", value[0], 0.0, 1.0, as_torch=as_torch),
            check_range(f"{name}[1]", value[1], 0.0, 1.0, as_torch=as_torch))


def check_tensor_lr(group: dict[str, Any]) -> None:
    """torch.optim.Adam / AdamW's first check: a tensor ``lr`` with ``foreach=True`` needs ``capturable=True``."""
    if isinstance(group["lr"], torch.Tensor) and group.get("foreach") and not group.get("capturable"):
        raise ValueError(worded("lr given as a tensor needs foreach=False or capturable=True", "tensor with foreach",
                                "lr"))


def check_tensor_betas(group: dict[str, Any]) -> None:
    """torch.optim.Adam / AdamW's checks of tensor ``betas``, after the ranges: both tensors or neither, and not
    with ``foreach=True`` (and ``capturable=False``). Numbers that are not tensors may be ints here."""
    betas = group["betas"]
    if isinstance(betas[0], torch.Tensor) != isinstance(betas[1], torch.Tensor):
        raise ValueError(worded(f"betas must be two numbers or two one-element tensors, got "
                                f"{type(betas[0]).__name__} and {type(betas[1]).__name__}", "betas kinds"))
    for index, beta in enumerate(betas):
        if isinstance(beta, torch.Tensor) and group.get("foreach") and not group.get("capturable"):
            raise ValueError(worded(f"betas[{index}] given as a tensor needs foreach=False or capturable=True",
                                    "tensor with foreach", f"betas[{index}]"))


def fused_devices() -> list[str]:
    """The device types torch.optim's fused kernels run on (``_get_fused_kernels_supported_devices``)."""
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    return list(_get_fused_kernels_supported_devices())


def check_fused_params(optimizer_name: str, groups: Iterable[dict[str, Any]]) -> None:
    """torch.optim's check at a ``fused=True`` step (``_device_dtype_check_for_fused``): every parameter with a
    gradient in a ``fused`` group is a floating-point tensor on a device torch has fused kernels for (not a meta
    tensor, not an integer or complex one). A ``RuntimeError`` in torch's words, naming the tensor."""
    devices: list[str] | None = None
    for index, group in enumerate(groups):
        if not group.get("fused"):
            continue
        for position, param in enumerate(group["params"]):
            if param.grad is None:
                continue
            devices = devices if devices is not None else fused_devices()
            if param.device.type not in devices or not torch.is_floating_point(param):
                raise RuntimeError(
                    f"`fused=True` requires all the params to be floating point Tensors of supported devices: "
                    f"{devices} but {param.dtype} and {param.device.type} ({optimizer_name}: param group {index}, "
                    f"parameter {position}, shape {tuple(param.shape)}; build it with fused=None to let descentlab "
                    f"pick the path)")


#: Device types a ``capturable=True`` step may run on besides torch's own (``_get_capturable_supported_devices``).
#: Private, for tests only: torch refuses CPU parameters with ``capturable=True``, and so does descentlab; the CPU
#: tests of the capturable step add ``"cpu"`` here for their duration with :func:`allow_capturable_on`.
_EXTRA_CAPTURABLE_DEVICES: set[str] = set()


@contextmanager
def allow_capturable_on(device_type: str) -> Iterator[None]:
    """Private test hook: within the block ``capturable=True`` also steps parameters on ``device_type`` (``"cpu"``),
    which torch (and descentlab outside this block) refuses."""
    added = device_type not in _EXTRA_CAPTURABLE_DEVICES
    _EXTRA_CAPTURABLE_DEVICES.add(device_type)
    try:
        yield
    finally:
        if added:
            _EXTRA_CAPTURABLE_DEVICES.discard(device_type)


#: torch.optim's words for its capturable device check, per class, where they differ from the default: what must be
#: on the device, and whether XLA is in its list (torch's Adadelta leaves it out).
_CAPTURABLE_WORDS: dict[str, tuple[str, bool]] = {"NAdam": ("params, mu_products and state_steps", True),
                                                  "ASGD": ("params, mus, etas, and state_steps", True),
                                                  "Adadelta": ("params and state_steps", False)}


def capturable_devices(xla: bool = True) -> list[str]:
    """The device types ``capturable=True`` steps on: torch's list (CUDA, XPU, HPU, the private-use backend, XLA)."""
    from torch.optim.optimizer import _get_capturable_supported_devices

    return list(_get_capturable_supported_devices(supports_xla=xla)) + sorted(_EXTRA_CAPTURABLE_DEVICES)


def check_capturable(optimizer_name: str, index: int, group: dict[str, Any], state_of: Any) -> None:
    """torch.optim's check at a ``capturable=True`` step (outside ``torch.compile``): every parameter with a gradient,
    and its ``step``, on a device that can capture the step (not the CPU). An ``AssertionError`` in torch's words
    (``pytest.raises`` written against torch match), naming the tensor; nothing has changed when it is raised."""
    words, xla = _CAPTURABLE_WORDS.get(optimizer_name, ("params and state_steps", True))
    devices: list[str] | None = None
    for position, param in enumerate(group["params"]):
        if param.grad is None:
            continue
        devices = devices if devices is not None else capturable_devices(xla)
        state = state_of.get(param)
        step = state.get("step") if state else None
        on = param.device.type
        if on not in devices or (isinstance(step, torch.Tensor) and step.device.type != on):
            where = f"its step on {step.device.type}" if on in devices and step is not None else f"it is on {on}"
            raise AssertionError(
                f"If capturable=True, {words} must be on supported devices: {devices}. "
                f"({optimizer_name}: param group {index}, parameter {position}, shape {tuple(param.shape)}: {where}; "
                f"capturable=True keeps the step and its scalars on the parameter's device for CUDA graphs — "
                f"use capturable=False for parameters on the CPU)")


def check_unsupported_flag(name: str, value: Any, reason: str) -> None:
    """Accept torch's execution flags for compatibility, refusing the ones descentlab cannot honour."""
    if value:
        raise ValueError(f"{name}=True is not supported by descentlab optimizers: {reason}")
