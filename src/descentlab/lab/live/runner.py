"""One optimizer's run for the live lab: descentlab's own class, stepped directly on one 2-element float64
tensor, and a cache so that a request recomputes only the runs whose settings changed.

The hot loop (see benchmarks/lab_latency.py for the profile) is the optimizer's own ``step`` on its default path
(``impl="auto"``: the C kernels on the CPU, checked against the reference rule step by step; 1.4–2× faster than
the reference loop on one 2-element tensor), called without torch's per-call profiler wrapper (:func:`bare_step`);
around it this module keeps per-step work to a few Python float operations:
the gradient comes from :mod:`descentlab.lab.live.problems` (by hand or symbolic, no autograd), is written into
the one preallocated ``.grad`` tensor through a NumPy view, the position is read back through another view, and
the optimizer's state tensors are copied into preallocated arrays. ``f`` along the path is evaluated once at the
end, batched. A run that diverges (a non-finite value, or more than ``escape`` × the domain's size from its
centre) stops there, as in :func:`descentlab.lab.race.race`, whose metrics (``_racer``) are reused.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from typing import Any, Callable, NamedTuple

import numpy as np
import torch

from descentlab.lab.live.problems import Problem
from descentlab.optim.registry import get_spec

#: state keys of descentlab's classes (torch's names) -> the maths' names shown on the page
STATE_NAMES = {"exp_avg": "m", "momentum_buffer": "m", "exp_avg_sq": "v", "square_avg": "v", "sum": "G",
               "acc_delta": "u (Δ average)", "exp_inf": "u (∞-norm)", "max_exp_avg_sq": "v_max",
               "max_corrected_exp_avg_sq": "v̂_max", "grad_avg": "mean g", "prev": "previous g",
               "step_size": "step size", "ax": "average w", "eta": "η_t", "mu": "μ_t"}


def simulate(problem: Problem, start: tuple[float, float], steps: int, name: str, options: dict[str, Any],
             rates: list[float] | None = None, noise: float = 0.0, seed: int = 0,
             escape: float = 10.0) -> dict[str, Any]:
    """Run registry optimizer ``name`` with ``options`` from ``start`` for ``steps`` steps (``rates[t]``: the
    rate at step ``t`` under a schedule). Returns NumPy arrays: ``path`` (n + 1, 2), ``grads`` (n, 2: the
    gradient each step started from), ``state`` {key: (n, 2)} after each step; ``diverged``; ``evaluations``,
    the gradient evaluations made (one a step, or what a closure-driven optimizer such as L-BFGS asked for: it
    calls ``step(closure)`` as torch users do, the closure setting ∇f and returning f where the parameter is)."""
    spec = get_spec(name)
    param = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
    grad = torch.zeros(2, dtype=torch.float64)
    param.grad = grad
    opt = spec.build([param], **({**options, "impl": "auto"} if _takes_impl(spec.cls) else options))
    group = opt.param_groups[0]
    here, g_view = param.detach().numpy(), grad.numpy()  # views: the step writes here, we write g_view
    (x0, x1), (y0, y1) = problem.landscape.domain
    cx, cy, limit = (x0 + x1) / 2, (y0 + y1) / 2, escape * max(x1 - x0, y1 - y0)
    gradient: Callable[[float, float], tuple[float, float]] = problem.grad
    gen = torch.Generator().manual_seed(seed) if noise > 0 else None
    grads: list[tuple[float, float]] = []  # the gradient each step started from
    evaluations = 0

    def noisy_gradient(x: float, y: float) -> tuple[float, float]:
        nonlocal evaluations
        evaluations += 1
        gx, gy = gradient(x, y)
        if gen is not None:
            extra = noise * torch.randn((1, 2), generator=gen, dtype=torch.float64)  # as race's draw
            gx, gy = gx + float(extra[0, 0]), gy + float(extra[0, 1])
        return gx, gy

    def closure() -> float:  # L-BFGS: f and ∇f at the parameter, as often as its line search asks
        x, y = here.tolist()
        g = g_view[0], g_view[1] = noisy_gradient(x, y)
        if len(grads) < len(points):
            grads.append(g)
        return float(problem.landscape(param.detach()))

    points: list[list[float]] = [[float(start[0]), float(start[1])]]
    record: list[tuple[str, np.ndarray, list[list[float]]]] = []
    closure_driven = "closure" in spec.requires
    step = bare_step(opt)
    x, y = points[0]
    n, diverged = steps, False
    with torch.no_grad():  # the step then needs no autograd context of its own (L-BFGS enters its own)
        try:
            for t in range(steps):  # the hot loop: a few Python float operations around the optimizer's step
                if rates is not None:
                    group["lr"] = rates[t]
                if closure_driven:
                    opt.step(closure)
                else:
                    if gen is None:
                        g = gradient(x, y)
                        evaluations += 1
                    else:
                        g = noisy_gradient(x, y)
                    g_view[0], g_view[1] = g
                    grads.append(g)
                    step()
                point = here.tolist()
                points.append(point)
                x, y = point
                if t == 0:
                    state = opt.state.get(param, {})
                    record = [(k, v.detach().numpy(), []) for k, v in state.items()
                              if isinstance(v, torch.Tensor) and v.shape == (2,)]
                for _, view, rows in record:
                    rows.append(view.tolist())
                if not (abs(x - cx) <= limit and abs(y - cy) <= limit):  # also False for nan
                    n, diverged = t, True
                    break
        except (ArithmeticError, ValueError):  # a typed f whose gradient has no value here
            n, diverged = t, True
    path = np.array(points[:n + 1], dtype=np.float64).reshape(-1, 2)
    with torch.no_grad():
        values = problem.landscape(torch.from_numpy(path)).numpy()
    bad = ~np.isfinite(values) | ~np.isfinite(path).all(1)
    if bad.any():
        n, diverged = int(np.argmax(bad)) - 1, True
    n = max(n, 0)
    return {"path": path[:n + 1], "values": values[:n + 1],
            "grads": np.array(grads[:n], dtype=np.float64).reshape(-1, 2),
            "state": {k: np.array(rows[:n], dtype=np.float64).reshape(-1, 2) for k, _, rows in record},
            "diverged": diverged, "evaluations": evaluations}


def _takes_impl(cls: type) -> bool:
    import inspect

    return "impl" in inspect.signature(cls).parameters


def bare_step(opt: torch.optim.Optimizer) -> Callable[[], Any]:
    """``opt.step`` without torch's instrumentation: ``torch.optim.Optimizer`` wraps every subclass's ``step`` in a
    profiler ``record_function`` and the step-hook dispatch, which costs about as much as a whole reference step on
    a 2-element tensor (benchmarks/lab_latency.py --profile). With no hook registered (the lab registers none) the
    wrapped function — descentlab's own ``step`` — is called directly; with any hook, the ordinary ``opt.step``."""
    from torch.optim import optimizer as torch_optimizer

    raw = getattr(type(opt).step, "__wrapped__", None)
    hooks = (opt._optimizer_step_pre_hooks, opt._optimizer_step_post_hooks,
             getattr(torch_optimizer, "_global_optimizer_pre_hooks", {}),
             getattr(torch_optimizer, "_global_optimizer_post_hooks", {}))
    if raw is None or any(hooks):
        return opt.step
    return lambda: raw(opt)


def _sig(a: np.ndarray, digits: int = 6) -> list:
    """``a`` rounded to ``digits`` significant digits per element (short JSON), non-finite as ``None``."""
    a = np.asarray(a, dtype=np.float64)
    finite = np.isfinite(a)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(finite & (a != 0), np.floor(np.log10(np.abs(np.where(finite, a, 1.0)))), 0.0)
        scale = 10.0 ** (digits - 1 - mag)
        rounded = np.where(finite, np.round(a * scale) / scale, 0.0)
    out = rounded.tolist()
    if not finite.all():
        out = _nulls(out, finite.tolist())
    return out


def _nulls(values: Any, finite: Any) -> Any:
    if isinstance(values, list):
        return [_nulls(v, f) for v, f in zip(values, finite)]
    return values if finite else None


def run_payload(problem: Problem, name: str, options: dict[str, Any], given: dict[str, Any], sim: dict[str, Any],
                lr: float, rates: list[float] | None, schedule: Any, tol: float = 1e-6) -> dict[str, Any]:
    """The API's run object: the path, f, state, effective step and the race's metrics."""
    from descentlab.lab.race import _racer

    path, values, grads = sim["path"], sim["values"], sim["grads"]
    racer = _racer(problem.landscape, name, lr, given, (path, values, sim["diverged"]), tol, tuned=False)
    with np.errstate(divide="ignore", invalid="ignore"):
        effective = (path[:-1] - path[1:]) / grads  # Δw = −η_eff · g, per coordinate
    return {
        "name": name, "options": given, "lr": lr, "schedule": schedule,
        "path": path.tolist(), "f": values.tolist(),
        "state": {key: _sig(rows) for key, rows in sim["state"].items()},
        "state_names": {key: STATE_NAMES.get(key, key) for key in sim["state"]},
        "effective_step": _sig(effective), "gradient": _sig(grads),
        "lr_per_step": None if rates is None else _sig(np.asarray(rates[:len(grads)])),
        "diverged": racer.diverged, "steps_run": len(path) - 1, "evaluations": sim["evaluations"], "final_f": _finite(racer.final_f),
        "steps_to_tol": racer.steps_to_tol, "settled_at": racer.settled_at, "escaped_at": racer.escaped_at,
        "nearest_minimum": None if racer.minimum_xy is None else list(racer.minimum_xy),
        "distance": _finite(racer.distance), "local_minimum": racer.local_minimum,
    }


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


class RunCache:
    """Encoded runs by (landscape, start, steps, optimizer, options, schedule, noise, seed): least recently
    used first out. Each entry is the run's JSON text, ready to be joined into a response."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._runs: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: str) -> bytes | None:
        with self._lock:
            found = self._runs.get(key)
            if found is not None:
                self._runs.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
            return found

    def put(self, key: str, text: bytes) -> None:
        with self._lock:
            self._runs[key] = text
            self._runs.move_to_end(key)
            while len(self._runs) > self.size:
                self._runs.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._runs.clear()


def encode(run: dict[str, Any]) -> bytes:
    return json.dumps(run, separators=(",", ":"), allow_nan=False).encode()


class RunTask(NamedTuple):
    """One run of a race request, checked by the API and ready to compute (in this process or a worker)."""

    start: tuple[float, float]
    steps: int
    name: str
    built: dict[str, Any]  # the options as the class takes them
    given: dict[str, Any]  # the options as the request gave them
    rates: list[float] | None
    schedule: Any
    lr: float
    noise: float
    seed: int
    key: str
    label: str


def compute_run(problem: Problem, task: RunTask) -> bytes:
    """``task``'s run on ``problem``, encoded as the API's run object: the one definition of a run, wherever it
    is computed."""
    sim = simulate(problem, task.start, task.steps, task.name, task.built, task.rates, task.noise, task.seed)
    return encode({"key": task.key, "label": task.label,
                   **run_payload(problem, task.name, task.built, task.given, sim, task.lr, task.rates,
                                 task.schedule)})
