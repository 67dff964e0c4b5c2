"""Races: registry optimizers, one start, the same step budget, honest metrics — and fair tuning.

Every optimizer runs the real descentlab class (no re-implemented maths) on the landscape's gradient
(optionally noisy), with no gradient clipping unless ``clip`` is given. Per optimizer: the trajectory,
``f`` per step, the first step with ``|f − f*| < tol``, the final ``f``, the nearest known minimum and the
distance to it, and whether it diverged (a non-finite value, or leaving the domain by more than
``escape`` × its size; a diverged run stops there).

Fair tuning (``tune=True``) searches each optimizer's learning rate on a log grid (default 1e-4…10,
30 points) with the race's own metric, as one batched computation. Every rule here is element-wise and,
without weight decay, its step is linear in the rate with a state that does not depend on it:
``w ← w − η D(state, g)``. So the whole grid is one ``(n, 2)`` tensor stepped by one real optimizer
instance at rate 1 from a zeroed parameter — which leaves exactly ``−D`` in it — and each row then moves
by its own ``η D``. With weight decay (whose step is not linear in η) each grid point gets its own param
group instead. ``tests/test_lab_race.py`` checks that the batched path equals separate runs.

A row that needs ``step(closure)`` (L-BFGS) races through one: every race step calls ``opt.step(closure)`` with a
closure that zeroes the gradient, evaluates ``f`` at the racer's point, calls ``backward()`` (plus the race's noise
and clipping) and returns ``f`` — as a torch user writes it — and the path is recorded once per such outer step.
One L-BFGS step makes up to ``max_iter`` iterations (``max_eval`` evaluations of ``f`` and ``∇f``), so every racer
also reports its evaluations (``evaluations``, and ``evaluations_to_tol``, the count when it first reached the
tolerance): a gradient method makes one per step, and the evaluation columns are the fair comparison. Each rate
(each tuning grid point) gets its own instance, since L-BFGS steps one parameter vector in one group.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from descentlab.lab.landscapes import Landscape, get_landscape
from descentlab.optim.registry import get_spec

#: What a race gives an optimizer beyond the ordinary contract (registry.REQUIREMENTS): a closure. A racer is one
#: (x, y) vector with dense gradients, so rows that step matrices only or take sparse gradients do not race.
RACE_OFFERS: tuple[str, ...] = ("closure",)
DEFAULT_OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "adadelta", "rmsprop", "adam")
DEFAULT_GRID = tuple(np.logspace(-4, 1, 30).tolist())


@dataclass
class Racer:
    """One optimizer's run. ``name`` is the racer's key in the race (``"momentum"``, or ``"momentum@sum"`` for
    a second momentum racer with other options); ``optimizer`` is the registry name."""

    name: str
    lr: float
    options: dict[str, Any]
    points: np.ndarray           # (steps + 1, 2), truncated at divergence
    values: np.ndarray           # f at each point
    steps_to_tol: int | None     # the first step with |f − f*| < tol
    final_f: float
    nearest_minimum: int | None  # index into landscape.minima (see minimum_xy for the coordinates)
    distance: float
    diverged: bool
    tuned: bool = False
    tol: float = 1e-6
    scheduled: bool = False
    settled_at: int | None = None   # the first step from which |f − f*| < tol holds to the end
    escaped_at: int | None = None   # the first step outside the saddle region (landscapes with a saddle)
    minimum_xy: tuple[float, float] | None = None
    local_minimum: bool = False     # ended within 0.05 of a minimum that is not a global one
    optimizer: str = ""
    rate_given: bool = False        # the rate was set by the user (not the registry's default, not tuned)
    worst_start_score: tuple[float, float] | None = None  # tuned: the rate's score over the tuning starts
    #: cumulative evaluations of f and ∇f at each point (points[i] was reached after evaluations_at[i]); a gradient
    #: method makes one per step, an L-BFGS step up to max_eval
    evaluations_at: np.ndarray | None = None

    @property
    def evaluations(self) -> int:
        """The evaluations of ``f`` and ``∇f`` the whole run made."""
        return int(self.evaluations_at[-1]) if self.evaluations_at is not None else len(self.points) - 1

    @property
    def evaluations_to_tol(self) -> int | None:
        """The evaluations made by the step that first reached the tolerance (``None``: never)."""
        if self.steps_to_tol is None:
            return None
        return int(self.evaluations_at[self.steps_to_tol]) if self.evaluations_at is not None else self.steps_to_tol

    @property
    def label(self) -> str:
        rate = f"peak lr {self.lr:.3g}, scheduled" if self.scheduled else f"lr {self.lr:.3g}"
        opts = ", ".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.name} ({rate}{', ' + opts if opts else ''}{', tuned' if self.tuned else ''})"

    def row(self) -> dict[str, Any]:
        """A flat metrics row (for tables and CSV)."""
        near = None if self.minimum_xy is None else f"({self.minimum_xy[0]:.3g}, {self.minimum_xy[1]:.3g})"
        return {"optimizer": self.name, "lr": self.lr, "tuned": self.tuned, "steps_to_tol": self.steps_to_tol,
                "settled_at_step": self.settled_at, "final_f": self.final_f, "nearest_minimum": near,
                "distance": self.distance, "stuck_in_local_minimum": self.local_minimum,
                "escaped_at_step": self.escaped_at, "diverged": self.diverged, "steps_run": len(self.points) - 1,
                "evaluations": self.evaluations, "evaluations_to_tol": self.evaluations_to_tol}


@dataclass
class RaceResult:
    landscape: Landscape
    start: tuple[float, float]
    steps: int
    tol: float
    noise: float
    seed: int
    racers: list[Racer] = field(default_factory=list)
    tuned: list[Racer] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        return [r.row() for r in self.racers + self.tuned]

    def _repr_html_(self) -> str:
        """Inline display in notebooks: the race picture (paths over the contours, f per step) and the table."""
        from descentlab.lab.plots import race_figure
        from descentlab.lab.race_outputs import table_rows
        from descentlab.train.history import notebook_html, picture_of

        headers, rows = table_rows(self)
        title = f"race on {self.landscape.name} ({self.landscape.formula}): {self.steps} steps from {self.start}"
        return notebook_html(title, picture_of(lambda path: race_figure(self, path)), headers, rows)


def _run_batch(landscape: Landscape, name: str, options: dict[str, Any], lrs: list[float], start: Any,
               steps: int, noise: float, seed: int, schedule: Callable[[int], float] | None, clip: float | None,
               escape: float, batched: bool | None = None) -> list[tuple[np.ndarray, np.ndarray, bool]]:
    """Run ``len(lrs)`` independent copies of optimizer ``name`` from ``start`` (one ``(x, y)``, or one per
    rate), one rate each."""
    n = len(lrs)
    starts = [tuple(start)] * n if np.ndim(start) == 1 else [tuple(p) for p in start]
    spec = get_spec(name)
    if batched is None:  # the class default counts too (AdamW decays by default)
        probe = spec.build([torch.zeros(1, requires_grad=True)], **options)
        # a class whose step is not −η·D(state, g) (schedule-free: it moves y towards z and averages with weights
        # lr_max^p) says so with step_is_linear_in_lr = False
        batched = not probe.param_groups[0].get("weight_decay", 0) and getattr(spec.cls, "step_is_linear_in_lr", True)
    rates = torch.tensor(lrs, dtype=torch.float64)
    if batched:
        params = [torch.nn.Parameter(torch.tensor(starts, dtype=torch.float64))]
        opt = spec.build(params, **{**options, "lr": 1.0})
    else:
        params = [torch.nn.Parameter(torch.tensor(p, dtype=torch.float64)) for p in starts]
        opt = spec.build([{"params": [p], "lr": float(r)} for p, r in zip(params, lrs)], **options)
    gen = torch.Generator().manual_seed(seed)
    (x0, x1), (y0, y1) = landscape.domain
    span = max(x1 - x0, y1 - y0)
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    points = np.full((steps + 1, n, 2), np.nan)
    values = np.full((steps + 1, n), np.nan)
    alive = np.ones(n, dtype=bool)
    diverged = np.zeros(n, dtype=bool)
    for t in range(steps + 1):
        stacked = params[0].detach().clone() if batched else torch.stack([p.detach() for p in params])
        with torch.no_grad():
            f = landscape(stacked)
        here, fv = stacked.numpy(), f.numpy()
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(fv) | ~np.isfinite(here).all(1) | (np.abs(here - centre).max(1) > escape * span)
        newly = alive & bad
        diverged |= newly
        alive &= ~bad
        points[t, alive] = here[alive]
        values[t, alive] = fv[alive]
        if t == steps or not alive.any():
            break
        grads = landscape.gradient(stacked, noise, gen)
        if clip is not None:
            grads = grads * torch.clamp(clip / (grads.norm(dim=1, keepdim=True) + 1e-300), max=1.0)
        factor = schedule(t) if schedule is not None else 1.0  # a rate multiplier (see race: shape / peak)
        if batched:
            grads[torch.from_numpy(~alive)] = 0.0
            with torch.no_grad():
                params[0].zero_()
            params[0].grad = grads
            opt.step()  # the parameter now holds −D(state, g) for every row
            with torch.no_grad():
                moved = stacked + (rates * factor)[:, None] * params[0]
                params[0].copy_(torch.where(torch.from_numpy(alive)[:, None], moved, stacked))
        else:
            for i, (p, group) in enumerate(zip(params, opt.param_groups)):
                p.grad = grads[i].clone() if alive[i] else None
                group["lr"] = float(lrs[i]) * factor
            opt.step()
    out = []
    for i in range(n):
        keep = ~np.isnan(values[:, i])
        out.append((points[keep, i], values[keep, i], bool(diverged[i])))
    return out


def _run_closure(landscape: Landscape, name: str, options: dict[str, Any], lrs: list[float], start: Any,
                 steps: int, noise: float, seed: int, schedule: Callable[[int], float] | None, clip: float | None,
                 escape: float) -> list[tuple[np.ndarray, np.ndarray, bool, np.ndarray]]:
    """Run ``len(lrs)`` copies of closure-driven optimizer ``name`` (L-BFGS), one instance per rate, each step
    ``opt.step(closure)``; also return each run's cumulative closure evaluations at every recorded point."""
    starts = [tuple(start)] * len(lrs) if np.ndim(start) == 1 else [tuple(p) for p in start]
    return [_closure_run(landscape, name, options, float(rate), point, steps, noise, seed, schedule, clip, escape)
            for rate, point in zip(lrs, starts)]


def _closure_run(landscape: Landscape, name: str, options: dict[str, Any], rate: float, start: tuple[float, ...],
                 steps: int, noise: float, seed: int, schedule: Callable[[int], float] | None, clip: float | None,
                 escape: float) -> tuple[np.ndarray, np.ndarray, bool, np.ndarray]:
    param = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
    opt = get_spec(name).build([param], **{**options, "lr": rate})
    gen = torch.Generator().manual_seed(seed)
    evaluations = 0

    def closure() -> Any:  # the loss tensor, as torch's closures return it
        nonlocal evaluations
        opt.zero_grad()
        loss = landscape(param)
        loss.backward()
        evaluations += 1
        grad = param.grad
        assert grad is not None
        if noise > 0:  # the same noise model as Landscape.gradient: N(0, σ²) per coordinate, per evaluation
            grad.add_(noise * torch.randn(grad.shape, generator=gen, dtype=grad.dtype))
        if clip is not None:
            grad.mul_(torch.clamp(clip / (grad.norm() + 1e-300), max=1.0))
        return loss

    (x0, x1), (y0, y1) = landscape.domain
    span = max(x1 - x0, y1 - y0)
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    points, values, counts = [], [], []
    diverged = False
    for t in range(steps + 1):
        here = param.detach().numpy().copy()
        with torch.no_grad():
            f = float(landscape(param))
        with np.errstate(invalid="ignore"):
            if not (math.isfinite(f) and np.isfinite(here).all() and np.abs(here - centre).max() <= escape * span):
                diverged = True
                break
        points.append(here)
        values.append(f)
        counts.append(evaluations)
        if t == steps:
            break
        if schedule is not None:
            opt.param_groups[0]["lr"] = rate * schedule(t)
        opt.step(closure)
    return (np.array(points, dtype=float).reshape(-1, 2), np.array(values, dtype=float), diverged,
            np.array(counts, dtype=np.int64))


def _racer(landscape: Landscape, name: str, lr: float, options: dict[str, Any], run, tol: float, tuned: bool) -> Racer:
    """The metrics of one run: ``(points, values, diverged)``, or with a fourth entry, the cumulative evaluations of
    f and ∇f at each point (closure-driven rows; otherwise one per step)."""
    pts, vals, diverged, *counted = run
    f_star = landscape.f_star
    steps_to_tol = settled = None
    if f_star is not None:
        inside = np.abs(vals - f_star) < tol
        hits = np.nonzero(inside)[0]
        steps_to_tol = int(hits[0]) if len(hits) else None
        if len(vals) and inside[-1] and not diverged:
            outside = np.nonzero(~inside)[0]
            settled = int(outside[-1]) + 1 if len(outside) else 0
    idx, dist = landscape.nearest_minimum(pts[-1])
    xy = None if idx is None else (float(landscape.minima[idx][0]), float(landscape.minima[idx][1]))
    local = bool(idx is not None and dist < 0.05 and not landscape.is_global(idx) and not diverged)
    return Racer(name, float(lr), dict(options), pts, vals, steps_to_tol, float(vals[-1]), idx, dist, diverged, tuned,
                 tol, settled_at=settled, escaped_at=landscape.escaped_at(pts), minimum_xy=xy, local_minimum=local,
                 optimizer=name.partition("@")[0], evaluations_at=counted[0] if counted else None)


def score(racer: Racer, landscape: Landscape) -> tuple[float, float]:
    """The race's metric (lower is better): runs that *settle* within the tolerance (reach it and stay there
    to the end) rank first, by the step they settle at (a rate that touches it and bounces away does not
    count); then the final gap; diverged runs last."""
    if racer.diverged:
        return (2.0, math.inf)
    gap = racer.final_f - (landscape.f_star if landscape.f_star is not None else 0.0)
    if racer.settled_at is not None:
        return (0.0, float(racer.settled_at))
    return (1.0, gap)


def tuning_starts(landscape: Landscape, start: tuple[float, float]) -> list[tuple[float, float]]:
    """The starts a tuned rate is judged on: the race's start and two more, the start turned by ±25° about the
    domain's centre and pulled 20 % towards it, so that no rate wins by one lucky first step (a rate whose first
    step lands on the minimum from one start does not from the others)."""
    (x0, x1), (y0, y1) = landscape.domain
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    out = [start]
    for angle in (25.0, -25.0):
        a = math.radians(angle)
        dx, dy = start[0] - cx, start[1] - cy
        rx, ry = 0.8 * (dx * math.cos(a) - dy * math.sin(a)), 0.8 * (dx * math.sin(a) + dy * math.cos(a))
        out.append((min(max(cx + rx, x0), x1), min(max(cy + ry, y0), y1)))
    return out


def race(landscape: str | Landscape, optimizers: Any = DEFAULT_OPTIMIZERS, *, steps: int = 500,
         start: tuple[float, float] | None = None, lr: dict[str, float] | None = None,
         options: dict[str, dict[str, Any]] | None = None, schedules: dict[str, Callable[[int], float]] | None = None,
         noise: float = 0.0, seed: int = 0, tol: float = 1e-6, tune: bool = False,
         grid: tuple[float, ...] = DEFAULT_GRID, clip: float | None = None, escape: float = 10.0) -> RaceResult:
    """Race registry ``optimizers`` on ``landscape``; with ``tune=True`` also each at its best grid rate.

    An optimizer may race more than once: ``"momentum@sum"`` is registry ``momentum`` under its own key, so
    ``options={"momentum@sum": {"form": "sum"}}`` (and ``lr`` / ``schedules``) set it apart from ``"momentum"``.
    With ``tune=True`` a rate is judged by its worst score over :func:`tuning_starts` (three starts).

    ``schedules[name]`` is a callable ``t -> lr`` giving that optimizer's rate at each step (instead of
    ``lr[name]``); the run is labelled with its peak rate, and tuning scales the schedule so that its peak
    is the grid value.
    """
    ls = get_landscape(landscape) if isinstance(landscape, str) else landscape
    names = list(optimizers)
    if not names:
        raise ValueError("optimizers must name at least one registry optimizer")
    for name in names:
        unmet = get_spec(name.partition("@")[0]).unmet(RACE_OFFERS)
        if unmet is not None:  # a contract a 2-D landscape race cannot meet (matrices, sparse gradients)
            raise ValueError(f"{name!r} cannot race on a landscape (a racer is one (x, y) vector with dense "
                             f"gradients): {unmet}")
    if len(set(names)) != len(names):
        raise ValueError(f"each racer needs its own name; race one optimizer twice as NAME and NAME@TAG, got {names}")
    lr, options, schedules = dict(lr or {}), dict(options or {}), dict(schedules or {})
    for key in list(lr) + list(options) + list(schedules):
        if key not in names:
            raise ValueError(f"{key!r} is given options but is not in the race ({', '.join(names)})")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol!r}")
    if clip is not None and not clip > 0:
        raise ValueError(f"clip must be > 0 or None, got {clip!r}")
    if not grid or any(not g > 0 for g in grid):
        raise ValueError("grid must be a non-empty list of positive rates")
    point = tuple(float(v) for v in (start if start is not None else ls.start))
    if len(point) != 2 or not all(math.isfinite(v) for v in point):
        raise ValueError(f"start must be two finite numbers, got {point!r}")
    start = (point[0], point[1])
    result = RaceResult(ls, start, steps, tol, noise, seed)
    starts = tuning_starts(ls, start) if tune else [start]
    for name in names:
        registry_name = name.partition("@")[0]
        opts = options.get(name, {})
        shape = None
        if name in schedules:
            # a schedule gives the rates themselves; the run is labelled with its peak rate, and a tuned run
            # scales the schedule's shape so that its peak is the grid value
            if name in lr:
                raise ValueError(f"{name!r} has both a learning rate and a schedule; give one of them")
            schedule = schedules[name]
            if not callable(schedule):
                raise ValueError(f"schedules[{name!r}] must be a callable t -> lr, got {schedule!r}")
            rates_t = [float(schedule(t)) for t in range(steps + 1)]
            peak = max(rates_t)
            if not all(math.isfinite(v) and v >= 0 for v in rates_t) or peak <= 0:
                raise ValueError(f"schedules[{name!r}] must give finite rates >= 0, not all 0, for t = 0..{steps}")
            rate = peak
            shape = lambda t, _r=rates_t, _p=peak: _r[t] / _p  # noqa: E731
        else:
            rate = float(lr.get(name, get_spec(registry_name).lr))
        # the default run rides in the same batch as the grid, which runs from every tuning start
        grid_rows = [(g, p) for p in starts for g in grid] if tune else []
        runner = _run_closure if "closure" in get_spec(registry_name).requires else _run_batch
        runs = runner(ls, registry_name, opts, [rate] + [g for g, _ in grid_rows],
                          [start] + [p for _, p in grid_rows], steps, noise, seed, shape, clip, escape)
        racer = _racer(ls, name, rate, opts, runs[0], tol, tuned=False)
        racer.scheduled = shape is not None
        racer.rate_given = name in lr or name in schedules
        result.racers.append(racer)
        if tune:
            k = len(grid)
            best, best_key = None, None
            for j, g in enumerate(grid):
                per_start = [_racer(ls, name, g, opts, runs[1 + i * k + j], tol, tuned=True) for i in range(len(starts))]
                worst = max(score(c, ls) for c in per_start)  # judged by its worst start
                if best_key is None or worst < best_key:
                    best, best_key = per_start[0], worst
            assert best is not None
            best.scheduled = shape is not None
            best.worst_start_score = best_key
            result.tuned.append(best)
    return result
