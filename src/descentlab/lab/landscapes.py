"""2-D landscapes that make optimization hard: ravines, saddles, curved valleys, many minima.

Each :class:`Landscape` carries its formula, plotting domain, default start, known minima and ``f*``,
evaluates batched in torch (``f(points)`` for points of shape ``(..., 2)``) and is differentiable.
:meth:`Landscape.gradient` adds seeded Gaussian noise (``noise=σ``) to imitate stochastic / mini-batch
gradients. Every listed minimum is checked numerically by the tests (gradient ≈ 0, f = f*).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class Landscape:
    """A 2-D test function. ``minima`` lists ``(x, y)`` of the known (local and global) minima;
    ``f_star`` is the global minimum value (``None`` when the function is unbounded below)."""

    name: str
    formula: str
    fn: Callable[[Tensor, Tensor], Tensor] = field(repr=False)
    domain: tuple[tuple[float, float], tuple[float, float]]
    start: tuple[float, float]
    minima: tuple[tuple[float, float], ...]
    f_star: float | None
    lesson: str
    #: for a landscape built around a saddle point: ``(axis, radius)`` — a run has *escaped* the saddle at the
    #: first step where ``|coordinate[axis]| > radius`` (half-way from the ridge to the bottoms)
    escape: tuple[int, float] | None = None

    def escaped_at(self, points: np.ndarray) -> int | None:
        """The first step at which the trajectory ``points`` has left the saddle region (``None``: never, or
        the landscape has no saddle)."""
        if self.escape is None or len(points) == 0:
            return None
        axis, radius = self.escape
        far = np.nonzero(np.abs(np.asarray(points)[:, axis]) > radius)[0]
        return int(far[0]) if len(far) else None

    def is_global(self, index: int | None) -> bool:
        """Whether listed minimum ``index`` is a global one (its f equals ``f*``)."""
        if index is None or self.f_star is None:
            return False
        with torch.no_grad():
            value = float(self(torch.tensor(self.minima[index], dtype=torch.float64)))
        return abs(value - self.f_star) < 1e-9 * max(1.0, abs(self.f_star))

    def __call__(self, points: Tensor) -> Tensor:
        """``f`` at ``points`` of shape ``(..., 2)``."""
        return self.fn(points[..., 0], points[..., 1])

    def gradient(self, points: Tensor, noise: float = 0.0, generator: torch.Generator | None = None) -> Tensor:
        """``∇f`` at ``points`` (autograd), plus ``N(0, noise²)`` per coordinate when ``noise > 0``."""
        with torch.enable_grad():
            p = points.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self(p).sum(), p)
        if noise > 0:
            grad = grad + noise * torch.randn(grad.shape, generator=generator, dtype=grad.dtype)
        return grad

    def nearest_minimum(self, point: np.ndarray) -> tuple[int | None, float]:
        """Index of the nearest listed minimum and the distance to it (``None, inf`` without minima)."""
        if not self.minima:
            return None, math.inf
        d = np.linalg.norm(np.asarray(self.minima) - np.asarray(point)[None, :], axis=1)
        return int(np.argmin(d)), float(np.min(d))


def _double_well_minima() -> tuple[tuple[float, float], ...]:
    roots = np.sort(np.roots([4.0, 0.0, -4.0, 0.3]).real)  # f'(x) = 4x³ − 4x + 0.3
    return ((float(roots[0]), 0.0), (float(roots[2]), 0.0))  # outer roots: global (left), local (right)


_DW = _double_well_minima()
_R2 = 0.5**0.5  # the saddle's bottoms are at y = ±1/√2
_SQRT_EPS = 1e-30  # keeps Ackley's √(x² + y²) differentiable at the origin

LANDSCAPES: dict[str, Landscape] = {ls.name: ls for ls in [
    Landscape("bowl", "x² + y²", lambda x, y: x**2 + y**2, ((-5, 5), (-5, 5)), (-4.0, 3.0), ((0.0, 0.0),), 0.0,
              "a round bowl: every method converges; the baseline"),
    Landscape("ravine", "0.1 x² + 2 y²", lambda x, y: 0.1 * x**2 + 2 * y**2, ((-5, 5), (-2, 2)), (-4.5, 1.5),
              ((0.0, 0.0),), 0.0, "condition number 20: plain GD zig-zags across the valley; momentum smooths it"),
    Landscape("saddle", "x² + y⁴ − y²", lambda x, y: x**2 + y**4 - y**2, ((-2, 2), (-1.5, 1.5)), (-1.5, 1e-3),
              ((0.0, -_R2), (0.0, _R2)), -0.25,
              "a saddle point at the origin with two bottoms at y = ±0.707: near the ridge y = 0 the gradient "
              "that points the way out is tiny", escape=(1, _R2 / 2)),
    Landscape("rotated_ravine", "1.05 x² − 1.9 xy + 1.05 y²  (= 0.1 u² + 2 v², axes turned 45°)",
              lambda x, y: 1.05 * x**2 - 1.9 * x * y + 1.05 * y**2, ((-4, 4), (-4, 4)), (-3.5, -2.0),
              ((0.0, 0.0),), 0.0,
              "the ravine turned 45°: the valley runs along no coordinate axis, so per-coordinate rates "
              "cannot line up with it by luck"),
    Landscape("rosenbrock", "(1 − x)² + 100 (y − x²)²", lambda x, y: (1 - x) ** 2 + 100 * (y - x**2) ** 2,
              ((-2, 2), (-1, 3)), (-1.5, 2.0), ((1.0, 1.0),), 0.0, "a curved, flat-bottomed valley"),
    Landscape("beale", "(1.5 − x + xy)² + (2.25 − x + xy²)² + (2.625 − x + xy³)²",
              lambda x, y: (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2,
              ((-4.5, 4.5), (-4.5, 4.5)), (1.0, 1.5), ((3.0, 0.5),), 0.0, "flat plateaus and sharp ridges"),
    Landscape("booth", "(x + 2y − 7)² + (2x + y − 5)²", lambda x, y: (x + 2 * y - 7) ** 2 + (2 * x + y - 5) ** 2,
              ((-10, 10), (-10, 10)), (-5.0, -5.0), ((1.0, 3.0),), 0.0, "a tilted, elongated bowl"),
    Landscape("himmelblau", "(x² + y − 11)² + (x + y² − 7)²", lambda x, y: (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2,
              ((-5, 5), (-5, 5)), (0.0, 0.0),
              ((3.0, 2.0), (-2.805118086952745, 3.131312518250573), (-3.779310253377747, -3.283185991286170),
               (3.584428340330492, -1.848126526964404)), 0.0, "four equal minima: the start decides which one"),
    Landscape("rastrigin", "20 + x² − 10 cos 2πx + y² − 10 cos 2πy",
              lambda x, y: 20 + x**2 - 10 * torch.cos(2 * math.pi * x) + y**2 - 10 * torch.cos(2 * math.pi * y),
              ((-5.12, 5.12), (-5.12, 5.12)), (3.2, -2.7), ((0.0, 0.0),), 0.0,
              "a lattice of local minima that traps a ball rolling downhill"),
    Landscape("ackley", "−20 exp(−0.2 √(½(x² + y²))) − exp(½(cos 2πx + cos 2πy)) + e + 20",
              lambda x, y: (-20 * torch.exp(-0.2 * torch.sqrt(0.5 * (x**2 + y**2) + _SQRT_EPS))
                            - torch.exp(0.5 * (torch.cos(2 * math.pi * x) + torch.cos(2 * math.pi * y))) + math.e + 20),
              ((-5, 5), (-5, 5)), (3.5, -2.5), ((0.0, 0.0),), 0.0, "a nearly flat, bumpy plain with one deep hole"),
    Landscape("six_hump_camel", "(4 − 2.1x² + x⁴/3) x² + xy + (−4 + 4y²) y²",
              lambda x, y: (4 - 2.1 * x**2 + x**4 / 3) * x**2 + x * y + (-4 + 4 * y**2) * y**2,
              ((-3, 3), (-2, 2)), (-1.5, 1.2),
              ((0.0898420131003, -0.7126564030207), (-0.0898420131003, 0.7126564030207)), -1.0316284534898774,
              "six humps, two global minima"),
    Landscape("double_well", "(x² − 1)² + 0.3 x + y²", lambda x, y: (x**2 - 1) ** 2 + 0.3 * x + y**2,
              ((-2, 2), (-1.5, 1.5)), (1.6, 1.0), _DW, float((_DW[0][0] ** 2 - 1) ** 2 + 0.3 * _DW[0][0]),
              "one global minimum (left) and one local minimum (right) that catches a ball started on the right"),
]}


def landscape_names() -> list[str]:
    """The landscape names."""
    return list(LANDSCAPES)


def get_landscape(name: str) -> Landscape:
    """Landscape ``name``; an unknown name raises ``ValueError`` with the nearest valid name and the list."""
    if name not in LANDSCAPES:
        close = difflib.get_close_matches(str(name), LANDSCAPES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown landscape {name!r}.{hint} Valid landscapes: {', '.join(LANDSCAPES)}")
    return LANDSCAPES[name]
