"""What a live race runs on: a landscape (one of the lab's, or f(x, y) typed by the learner) with a gradient
that is cheap to call at one point.

The hot loop of a race asks for ∇f at one point per step. The lab's landscapes evaluate batched torch
tensors and differentiate with autograd (≈ 50 µs a call); here every one of them also has its gradient written
out by hand in Python floats (≈ 0.5 µs), checked against autograd by tests/test_live_lab.py. A typed f(x, y)
gets its gradient from :mod:`descentlab.lab.live.expression` (symbolic, as nested closures). A landscape added
to the lab without a gradient here still works, through autograd.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from descentlab.lab.landscapes import LANDSCAPES, Landscape, get_landscape
from descentlab.lab.live.expression import Formula

Gradient = Callable[[float, float], tuple[float, float]]
_TAU = 2 * math.pi
_ACKLEY_EPS = 1e-30  # as landscapes._SQRT_EPS


def _beale(x: float, y: float) -> tuple[float, float]:
    a, b, c = 1.5 - x + x * y, 2.25 - x + x * y * y, 2.625 - x + x * y**3
    return (2 * a * (y - 1) + 2 * b * (y * y - 1) + 2 * c * (y**3 - 1),
            2 * a * x + 4 * b * x * y + 6 * c * x * y * y)


def _ackley(x: float, y: float) -> tuple[float, float]:
    r = math.sqrt(0.5 * (x * x + y * y) + _ACKLEY_EPS)
    near = 2 * math.exp(-0.2 * r) / r
    wave = math.pi * math.exp(0.5 * (math.cos(_TAU * x) + math.cos(_TAU * y)))
    return (near * x + wave * math.sin(_TAU * x), near * y + wave * math.sin(_TAU * y))


#: ∇f by hand, for the lab's landscapes (x, y are Python floats).
GRADIENTS: dict[str, Gradient] = {
    "bowl": lambda x, y: (2 * x, 2 * y),
    "ravine": lambda x, y: (0.2 * x, 4 * y),
    "saddle": lambda x, y: (2 * x, 4 * y**3 - 2 * y),
    "rotated_ravine": lambda x, y: (2.1 * x - 1.9 * y, 2.1 * y - 1.9 * x),
    "rosenbrock": lambda x, y: (-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)),
    "beale": _beale,
    "booth": lambda x, y: (2 * (x + 2 * y - 7) + 4 * (2 * x + y - 5), 4 * (x + 2 * y - 7) + 2 * (2 * x + y - 5)),
    "himmelblau": lambda x, y: (4 * x * (x * x + y - 11) + 2 * (x + y * y - 7),
                                2 * (x * x + y - 11) + 4 * y * (x + y * y - 7)),
    "rastrigin": lambda x, y: (2 * x + 20 * math.pi * math.sin(_TAU * x), 2 * y + 20 * math.pi * math.sin(_TAU * y)),
    "ackley": _ackley,
    "six_hump_camel": lambda x, y: (8 * x - 8.4 * x**3 + 2 * x**5 + y, x - 8 * y + 16 * y**3),
    "double_well": lambda x, y: (4 * x * (x * x - 1) + 0.3, 2 * y),
}

DEFAULT_DOMAIN = ((-5.0, 5.0), (-5.0, 5.0))
MAX_DOMAIN = 1e6


@dataclass(frozen=True)
class Problem:
    """A landscape and a one-point gradient. ``key`` names it in caches: the landscape's name, or the typed
    formula with its domain."""

    key: str
    landscape: Landscape
    grad: Gradient
    typed: bool = False


def autograd_gradient(landscape: Landscape) -> Gradient:
    """∇f at one point through the landscape's own autograd (the fallback for landscapes without a formula
    here)."""
    def grad(x: float, y: float) -> tuple[float, float]:
        g = landscape.gradient(torch.tensor([x, y], dtype=torch.float64))
        return float(g[0]), float(g[1])
    return grad


def builtin(name: str) -> Problem:
    """One of the lab's landscapes (``ValueError`` with the nearest names for an unknown one)."""
    ls = get_landscape(name)
    return Problem(name, ls, GRADIENTS.get(name) or autograd_gradient(ls))


def check_domain(domain: Any) -> tuple[tuple[float, float], tuple[float, float]]:
    """``[[x0, x1], [y0, y1]]`` with finite bounds, x0 < x1, y0 < y1, |bounds| ≤ 1e6."""
    try:
        (x0, x1), (y0, y1) = domain
        bounds = [float(v) for v in (x0, x1, y0, y1)]
    except (TypeError, ValueError):
        raise ValueError(f"domain must be [[x0, x1], [y0, y1]], got {domain!r}") from None
    if any(isinstance(v, bool) for v in (x0, x1, y0, y1)) or not all(
            math.isfinite(v) and abs(v) <= MAX_DOMAIN for v in bounds):
        raise ValueError(f"domain bounds must be finite numbers within ±{MAX_DOMAIN:g}, got {domain!r}")
    if not (bounds[0] < bounds[1] and bounds[2] < bounds[3]):
        raise ValueError(f"domain must have x0 < x1 and y0 < y1, got {domain!r}")
    return (bounds[0], bounds[1]), (bounds[2], bounds[3])


def typed(text: str, domain: Any = DEFAULT_DOMAIN) -> Problem:
    """f(x, y) typed by the learner (:class:`~descentlab.lab.live.expression.ExpressionError` for a bad one)."""
    formula = Formula(text)
    (x0, x1), (y0, y1) = check_domain(domain)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    start = (cx - 0.8 * (x1 - x0) / 2, cy + 0.6 * (y1 - y0) / 2)
    ls = Landscape("f(x, y)", formula.text, formula.torch, ((x0, x1), (y0, y1)), start, (), None,
                   "typed by you")
    return Problem(f"f:{formula.text}|{x0!r},{x1!r},{y0!r},{y1!r}", ls, formula.grad, typed=True)


def landscape_names() -> list[str]:
    return list(LANDSCAPES)
