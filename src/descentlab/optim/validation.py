"""Hyperparameter checks shared by every optimizer: each names the argument, the value and the range."""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch


def as_float(name: str, value: Any) -> float:
    """A real number from a float, int or one-element tensor; anything else is a ``ValueError``."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} given as a tensor must have exactly one element, got shape {tuple(value.shape)}")
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
) -> float:
    """Check ``low ≤ value ≤ high`` (bounds open as asked); NaN is always out of range."""
    x = as_float(name, value)
    left = "(" if low_open else "["
    right = ")" if high_open or high == math.inf else "]"
    hi = "inf" if high == math.inf else f"{high:g}"
    ok_low = x > low if low_open else x >= low
    ok_high = x < high if high_open else x <= high
    if math.isnan(x) or not (ok_low and ok_high):
        raise ValueError(f"{name} must be in {left}{low:g}, {hi}{right}, got {value!r}")
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


def check_betas(value: Any, name: str = "betas") -> tuple[float, float]:
    """Check a pair ``(β₁, β₂)`` with each in [0, 1)."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name} must be a pair (beta1, beta2), got {value!r}")
    return (check_range(f"{name}[0]", value[0], 0.0, 1.0), check_range(f"{name}[1]", value[1], 0.0, 1.0))


def check_unsupported_flag(name: str, value: Any, reason: str) -> None:
    """Accept torch's execution flags for compatibility, refusing the ones descentlab cannot honour."""
    if value:
        raise ValueError(f"{name}=True is not supported by descentlab optimizers: {reason}")
