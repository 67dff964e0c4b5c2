"""Batch-size advice: the notes' rule, refined by measurement on the real model and device.

The notes' rule: with m ≤ 2000 samples use the whole set (batch GD); otherwise a power of two
(64–512 typically) that fits in memory. :func:`suggest_batch_size` keeps the first part and, for
larger sets, *measures* each candidate power of two on the real model: the time of
forward + backward + optimizer step (throughput in samples/s) and the memory the step holds
(inputs, the activations autograd saves for backward, gradients and optimizer state). It never returns a
size whose measured memory exceeds the budget, picks the smallest size whose throughput is within
10 % of the best (more updates per epoch for the same speed), and explains the choice in one sentence.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

SMALL_DATASET = 2000


@dataclass(frozen=True)
class BatchSizeAdvice:
    """The chosen size (an int, or ``"full"``), the one-sentence reason and the measurements."""

    batch_size: int | str
    reason: str
    measurements: list[dict[str, float]] = field(default_factory=list)


def available_memory_bytes(device: torch.device) -> int:
    """Free memory on ``device``: the CUDA allocator's free bytes, or MemAvailable of the machine."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def _measure(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Callable, make_optimizer: Callable,
             repeats: int) -> tuple[float, int]:
    """Seconds per step (median of ``repeats``) and bytes held by one training step."""
    model = copy.deepcopy(model)
    opt = make_optimizer(model.parameters())
    saved = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[0] += t.numel() * t.element_size()
        return t

    times = []
    for r in range(repeats + 1):
        saved[0] = 0
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        if r:  # the first run warms up
            times.append(time.perf_counter() - start)
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    state = sum(v.numel() * v.element_size() for s in opt.state.values() for v in s.values() if torch.is_tensor(v))
    held = saved[0] + params * 2 + state + x.numel() * x.element_size() + y.numel() * y.element_size()
    times.sort()
    return times[len(times) // 2], held


def suggest_batch_size(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Callable,
                       make_optimizer: Callable | None = None, *, n_samples: int | None = None,
                       candidates: tuple[int, ...] = (32, 64, 128, 256, 512, 1024), memory_budget: int | None = None,
                       repeats: int = 3) -> BatchSizeAdvice:
    """Advise a batch size for training ``model`` on samples like ``x``/``y`` (a few rows suffice; they
    are repeated up to each candidate size).

    ``n_samples`` is the training-set size (default ``len(x)``); ``make_optimizer(params)`` builds the
    optimizer to time (default SGD); ``memory_budget`` in bytes (default: a quarter of the free memory).
    """
    n = len(x) if n_samples is None else int(n_samples)
    if n < 1:
        raise ValueError(f"n_samples must be >= 1, got {n}")
    if len(x) == 0 or len(x) != len(y):
        raise ValueError("x and y must be non-empty and of the same length")
    if not candidates or any((not isinstance(c, int)) or c < 1 for c in candidates):
        raise ValueError(f"candidates must be positive integers, got {candidates!r}")
    device = x.device
    budget = memory_budget if memory_budget is not None else available_memory_bytes(device) // 4
    if budget <= 0:
        raise ValueError(f"memory_budget must be > 0 bytes, got {budget}")
    make_optimizer = make_optimizer or (lambda params: torch.optim.SGD(params, lr=1e-3))
    sizes = [n] if n <= SMALL_DATASET else sorted({c for c in candidates if c <= n})
    measurements = []
    for size in sizes:
        reps = -(-size // len(x))
        xb, yb = x.repeat((reps,) + (1,) * (x.dim() - 1))[:size], y.repeat((reps,) + (1,) * (y.dim() - 1))[:size]
        seconds, held = _measure(model, xb, yb, loss_fn, make_optimizer, repeats)
        measurements.append({"batch_size": size, "seconds_per_step": seconds, "samples_per_second": size / seconds,
                             "bytes": held, "fits": held <= budget})
    fitting = [m for m in measurements if m["fits"]]
    if not fitting:
        smallest = measurements[0]
        raise ValueError(f"no candidate batch size fits the memory budget of {budget / 2**20:.1f} MiB "
                         f"(the smallest, {smallest['batch_size']}, needs {smallest['bytes'] / 2**20:.1f} MiB)")
    if n <= SMALL_DATASET:
        m = fitting[0]
        return BatchSizeAdvice("full", f"the training set has only {n} samples (≤ {SMALL_DATASET}), so batch "
                               f"gradient descent on the whole set fits ({m['bytes'] / 2**20:.1f} MiB) and "
                               "gives the smoothest steps", measurements)
    best = max(m["samples_per_second"] for m in fitting)
    chosen = next(m for m in fitting if m["samples_per_second"] >= 0.9 * best)
    return BatchSizeAdvice(int(chosen["batch_size"]),
                           f"{int(chosen['batch_size'])} is the smallest power of two within 10 % of the best measured "
                           f"throughput ({chosen['samples_per_second']:.0f} vs {best:.0f} samples/s) and needs "
                           f"{chosen['bytes'] / 2**20:.1f} MiB of the {budget / 2**20:.0f} MiB budget", measurements)
