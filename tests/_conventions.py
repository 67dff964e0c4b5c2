"""What the Keras and optax convention tests share: a non-quadratic problem whose gradients change every step,
a learning-rate schedule, the descentlab runner and the error measure.

The problem: two tensors (shapes 7 and 3×4), ``f_k(w) = Σ log cosh(A w − b_k) + 0.05 Σ w⁴`` with
``b_k = sin(0.7 k + j)``, so every step sees a new target and the curvature depends on ``w``. Each library
steps its own weights with the gradient at its own weights (a true trajectory, not a replay of one gradient
sequence). The error is ``max_t ‖w_t − w_t^ref‖∞ / max_t ‖w_t^ref − w_0‖∞``: relative to the distance the
reference travelled, so a small learning rate cannot hide a wrong step.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

STEPS = 60
SHAPES = [(7,), (3, 4)]
TOL = 1e-12

_rng = np.random.default_rng(1414)
_A = [_rng.normal(size=(5, int(np.prod(s)))) / 2 for s in SHAPES]


def initial_weights() -> list[np.ndarray]:
    rng = np.random.default_rng(14)
    return [rng.normal(size=s) for s in SHAPES]


def gradients(ws: Sequence[np.ndarray], k: int) -> list[np.ndarray]:
    """``∇f_k`` at ``ws`` (float64)."""
    out = []
    for j, (w, a) in enumerate(zip(ws, _A)):
        flat = np.asarray(w, dtype=np.float64).reshape(-1)
        b = np.sin(0.7 * k + np.arange(a.shape[0]) + j)
        out.append((a.T @ np.tanh(a @ flat - b) + 0.2 * flat**3).reshape(np.shape(w)))
    return out


def schedule(base: float, steps: int = STEPS) -> list[float]:
    """A rate that changes every step: cosine decay from ``base`` to ``0.2 base``, raised ×1.5 on 2 steps in 5."""
    k = np.arange(steps)
    return [float(x) for x in base * (0.2 + 0.4 * (1 + np.cos(np.pi * k / steps))) * np.where(k % 5 < 2, 1.5, 1.0)]


def run_descentlab(build: Callable[[list[torch.nn.Parameter]], Any], lrs: Sequence[float] | None = None,
                   steps: int = STEPS, after_step: Callable[[Any, list[torch.nn.Parameter]], None] | None = None,
                   ) -> list[list[np.ndarray]]:
    """The weights after each of ``steps`` steps of ``build(params)``; ``lrs[k]`` is the rate of step k."""
    params = [torch.nn.Parameter(torch.tensor(w, dtype=torch.float64)) for w in initial_weights()]
    opt = build(params)
    trajectory = []
    for k in range(steps):
        if lrs is not None:
            for group in opt.param_groups:
                group["lr"] = lrs[k]
        for p, g in zip(params, gradients([p.detach().numpy() for p in params], k)):
            p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        if after_step is not None:
            after_step(opt, params)
        trajectory.append([p.detach().numpy().copy() for p in params])
    return trajectory


def relative_error(ours: Sequence[Sequence[np.ndarray]], reference: Sequence[Sequence[np.ndarray]]) -> float:
    """``max_t ‖w_t − w_t^ref‖∞ / max_t ‖w_t^ref − w_0‖∞`` over all tensors."""
    w0 = initial_weights()
    travelled = max(float(np.max(np.abs(np.asarray(r) - w))) for step in reference for r, w in zip(step, w0))
    error = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                for sa, sb in zip(ours, reference) for a, b in zip(sa, sb))
    assert len(ours) == len(reference)
    return error / travelled
