"""Learning-rate schedules: pure functions of the clock ``t``, and one adapter to torch's LRScheduler.

Each builder returns a :class:`Schedule`, a callable ``t -> lr`` where ``t = 0, 1, 2, …`` counts
epochs or steps — whichever the caller says (``unit="epoch"`` or ``"step"`` wherever training code
takes a schedule). The closed form is in each docstring; nothing is stateful except
:class:`Scheduler`, whose only state is the clock, so a resumed run continues at exactly the rate an
uninterrupted run would have.

The lecture notes' decay family (t = epoch number, counted from 0):

=================  ==================================  ===============================
notes              closed form                         builder
=================  ==================================  ===============================
inverse time       η₀ / (1 + decay_rate · t)           ``inverse_time(η₀, decay_rate)``
exponential        0.95ᵗ · η₀                          ``exponential(η₀, 0.95)``
k/√epoch, k/√t     k · η₀ / √(t + 1)                   ``inverse_sqrt(η₀, k)``
staircase          η₀ · factor^⌊t / step_size⌋         ``step_decay(η₀, step_size, factor)``
manual             set by hand between epochs          :func:`set_lr`, ``ReduceLROnPlateau``
=================  ==================================  ===============================
"""

from __future__ import annotations

import bisect
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

__all__ = [
    "Schedule", "Scheduler", "ReduceLROnPlateau", "UNITS", "constant", "cosine", "exponential", "inverse_sqrt",
    "inverse_time", "join", "linear_warmup", "piecewise", "set_lr", "step_decay",
]

#: The clocks a schedule can count.
UNITS: tuple[str, ...] = ("epoch", "step")


def check_unit(unit: str) -> str:
    """Validate a clock name (``"epoch"`` or ``"step"``)."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of 'epoch', 'step'; got {unit!r}")
    return unit


def _real(name: str, value: Any, *, low: float = 0.0, high: float = math.inf, low_open: bool = False,
          high_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    x = float(value)
    if (x <= low if low_open else x < low) or (x >= high if high_open else x > high) or math.isinf(x):
        lo, hi = ("(" if low_open else "["), (")" if high_open or high == math.inf else "]")
        raise ValueError(f"{name} must be in {lo}{low:g}, {high:g}{hi}, got {value!r}")
    return x


def _count(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Schedule:
    """A learning rate as a pure function of the clock: ``schedule(t)`` for ``t = 0, 1, 2, …``.

    ``name`` and ``params`` describe it (for reports and ``repr``); ``formula`` is the closed form.
    """

    fn: Callable[[int], float] = field(repr=False)
    name: str
    params: dict[str, Any]
    formula: str

    def __call__(self, t: int) -> float:
        return float(self.fn(_count("t", t, 0)))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.name}({args})"


def constant(lr0: float) -> Schedule:
    """``η_t = η₀``."""
    lr0 = _real("lr0", lr0)
    return Schedule(lambda t: lr0, "constant", {"lr0": lr0}, "η₀")


def inverse_time(lr0: float, decay_rate: float) -> Schedule:
    """Inverse-time decay: ``η_t = η₀ / (1 + decay_rate · t)``."""
    lr0, decay_rate = _real("lr0", lr0), _real("decay_rate", decay_rate)
    return Schedule(lambda t: lr0 / (1.0 + decay_rate * t), "inverse_time",
                    {"lr0": lr0, "decay_rate": decay_rate}, "η₀ / (1 + decay_rate·t)")


def exponential(lr0: float, gamma: float = 0.95) -> Schedule:
    """Exponential decay: ``η_t = γᵗ · η₀`` (γ = 0.95 in the notes); equals torch's ``ExponentialLR``."""
    lr0, gamma = _real("lr0", lr0), _real("gamma", gamma, low=0.0, high=1.0, low_open=True)
    return Schedule(lambda t: lr0 * gamma**t, "exponential", {"lr0": lr0, "gamma": gamma}, "γᵗ·η₀")


def inverse_sqrt(lr0: float, k: float = 1.0) -> Schedule:
    """The notes' ``k/√epoch · η₀`` (and ``k/√t``) with 1-based counting: ``η_t = k · η₀ / √(t + 1)``."""
    lr0, k = _real("lr0", lr0), _real("k", k, low_open=True)
    return Schedule(lambda t: k * lr0 / math.sqrt(t + 1), "inverse_sqrt", {"lr0": lr0, "k": k}, "k·η₀ / √(t+1)")


def step_decay(lr0: float, step_size: int, factor: float = 0.5) -> Schedule:
    """The staircase: ``η_t = η₀ · factor^⌊t / step_size⌋`` (halve every ``step_size`` epochs by default);
    equals torch's ``StepLR(step_size, gamma=factor)``."""
    lr0 = _real("lr0", lr0)
    step_size = _count("step_size", step_size, 1)
    factor = _real("factor", factor, low=0.0, high=1.0, low_open=True)
    return Schedule(lambda t: lr0 * factor ** (t // step_size), "step_decay",
                    {"lr0": lr0, "step_size": step_size, "factor": factor}, "η₀·factor^⌊t/step_size⌋")


def _boundaries(name: str, boundaries: Sequence[int], expected: int | None = None) -> list[int]:
    values = list(boundaries)
    for b in values:
        _count(name, b, 1)
    if any(b >= c for b, c in zip(values, values[1:])):
        raise ValueError(f"{name} must be strictly increasing, got {values!r}")
    if expected is not None and len(values) != expected:
        raise ValueError(f"{name} must have {expected} entries, got {len(values)}")
    return values


def piecewise(boundaries: Sequence[int], values: Sequence[float]) -> Schedule:
    """Piecewise constant: ``η_t = values[i]`` for ``boundaries[i−1] ≤ t < boundaries[i]``.

    The switch happens *at* a boundary: ``t = boundaries[i]`` already uses ``values[i + 1]``
    (``len(values) == len(boundaries) + 1``; boundaries strictly increasing, ≥ 1).
    """
    rates = [_real(f"values[{i}]", v) for i, v in enumerate(values)]
    if not rates:
        raise ValueError("values must not be empty")
    bounds = _boundaries("boundaries", boundaries, len(rates) - 1)
    return Schedule(lambda t: rates[bisect.bisect_right(bounds, t)], "piecewise",
                    {"boundaries": bounds, "values": rates}, "values[i] for boundaries[i−1] ≤ t < boundaries[i]")


def linear_warmup(lr0: float, warmup: int, start_factor: float = 0.1) -> Schedule:
    """Linear warm-up: ``η_t = η₀ · (s + (1 − s) · t / warmup)`` for ``t < warmup``, then ``η₀``
    (``s = start_factor``; torch's ``LinearLR(start_factor=s, total_iters=warmup)``). Join it with a
    decay to get warm-up then decay."""
    lr0 = _real("lr0", lr0)
    warmup = _count("warmup", warmup, 1)
    s = _real("start_factor", start_factor, high=1.0)
    return Schedule(lambda t: lr0 * (s + (1.0 - s) * min(t, warmup) / warmup), "linear_warmup",
                    {"lr0": lr0, "warmup": warmup, "start_factor": s}, "η₀·(s + (1−s)·min(t, warmup)/warmup)")


def cosine(lr0: float, period: int, min_lr: float = 0.0) -> Schedule:
    """Cosine annealing: ``η_t = η_min + (η₀ − η_min) · (1 + cos(π · min(t, T) / T)) / 2`` with
    ``T = period``; it stays at ``η_min`` after ``T`` (torch's ``CosineAnnealingLR`` for ``t ≤ T``)."""
    lr0 = _real("lr0", lr0)
    period = _count("period", period, 1)
    min_lr = _real("min_lr", min_lr, high=lr0)
    return Schedule(lambda t: min_lr + (lr0 - min_lr) * (1 + math.cos(math.pi * min(t, period) / period)) / 2,
                    "cosine", {"lr0": lr0, "period": period, "min_lr": min_lr},
                    "η_min + (η₀−η_min)(1 + cos(π·min(t,T)/T))/2")


def join(schedules: Sequence[Callable[[int], float]], boundaries: Sequence[int]) -> Schedule:
    """Chain schedules: schedule ``i`` runs for ``boundaries[i−1] ≤ t < boundaries[i]`` and sees the
    shifted clock ``t − boundaries[i−1]`` (the first sees ``t``). ``len(boundaries) == len(schedules) − 1``.

    Example — 5 epochs of warm-up, then cosine decay over 45::

        join([linear_warmup(0.1, 5), cosine(0.1, 45)], [5])
    """
    parts = list(schedules)
    if not parts:
        raise ValueError("schedules must not be empty")
    for i, s in enumerate(parts):
        if not callable(s):
            raise ValueError(f"schedules[{i}] must be a callable t -> lr, got {s!r}")
    bounds = _boundaries("boundaries", boundaries, len(parts) - 1)
    starts = [0] + bounds

    def fn(t: int) -> float:
        i = bisect.bisect_right(bounds, t)
        return parts[i](t - starts[i])

    return Schedule(fn, "join", {"schedules": parts, "boundaries": bounds}, "schedules[i](t − boundaries[i−1])")


def set_lr(optimizer: Optimizer, lr: float | Sequence[float]) -> None:
    """The notes' *manual* decay: set the learning rate by hand (between epochs, say).

    ``lr`` is one rate for every group or one per group. A tensor ``lr`` in a group is updated in place.
    For decay on a stalled validation metric, use ``ReduceLROnPlateau`` (torch's, re-exported here).
    """
    groups = optimizer.param_groups
    rates = list(lr) if isinstance(lr, (list, tuple)) else [lr] * len(groups)
    if len(rates) != len(groups):
        raise ValueError(f"lr must be one number or one per param group ({len(groups)}), got {len(rates)}")
    for i, (group, value) in enumerate(zip(groups, rates)):
        value = _real(f"lr[{i}]" if len(groups) > 1 else "lr", value)
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(value)
        else:
            group["lr"] = value


class Scheduler(LRScheduler):
    """A :class:`Schedule` (or any callable ``t -> lr``) driving an optimizer, as a torch ``LRScheduler``.

    After ``k`` calls of :meth:`step`, group 0 has ``lr = schedule(k)``. Other groups keep their ratio to
    group 0 as built: ``lr_g = schedule(k) · initial_lr_g / initial_lr_0`` — or pass one schedule per
    group (a list) to give each group its own. ``unit`` records what one ``step()`` counts (``"epoch"``
    or ``"step"``); call ``step()`` once per that unit, after ``optimizer.step()``.

    The rate is a closed form of the clock ``last_epoch``, the only state saved by :meth:`state_dict`
    (the schedule itself is code and is not pickled), so a resumed run — joined schedules included —
    continues at exactly the uninterrupted rate. Works with every ``torch.optim`` optimizer.
    """

    def __init__(self, optimizer: Optimizer, schedule: Callable[[int], float] | Sequence[Callable[[int], float]],
                 *, unit: str = "epoch", last_epoch: int = -1) -> None:
        self.unit = check_unit(unit)
        if not isinstance(optimizer, Optimizer):
            raise ValueError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        n = len(optimizer.param_groups)
        if isinstance(schedule, (list, tuple)):
            if len(schedule) != n:
                raise ValueError(f"schedule must be one callable or one per param group ({n}), got {len(schedule)}")
            self.schedules = list(schedule)
        else:
            self.schedules = [schedule]
        for i, s in enumerate(self.schedules):
            if not callable(s):
                raise ValueError(f"schedule must be a callable t -> lr, got {s!r}")
        first = optimizer.param_groups[0]
        if len(self.schedules) == 1 and n > 1 and float(first.get("initial_lr", first["lr"])) == 0.0:
            raise ValueError("with one schedule for several groups, group 0's initial lr sets the ratios and "
                             "must not be 0, got 0.0; pass one schedule per group instead")
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float | torch.Tensor]:
        """The rates for clock ``last_epoch`` (closed form, no recursion)."""
        k = self.last_epoch
        if len(self.schedules) > 1:
            return [float(s(k)) for s in self.schedules]
        value = float(self.schedules[0](k))
        base0 = float(self.base_lrs[0])
        return [value if i == 0 else value * float(b) / base0 for i, b in enumerate(self.base_lrs)]

    def state_dict(self) -> dict[str, Any]:
        """The clock and bookkeeping, without the schedule callables."""
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "schedules")}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the clock; the schedule given to the constructor is kept."""
        if "last_epoch" not in state_dict:
            raise ValueError("not a Scheduler state_dict: it has no 'last_epoch'")
        saved_unit = state_dict.get("unit", self.unit)
        if saved_unit != self.unit:
            raise ValueError(f"state_dict counts {saved_unit!r}s but this Scheduler counts {self.unit!r}s")
        self.__dict__.update({k: v for k, v in state_dict.items() if k != "schedules"})
