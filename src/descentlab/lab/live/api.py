"""The live lab's JSON API, free of HTTP: each function takes the decoded request and returns the answer, or
raises :class:`ApiError` (HTTP 400) whose payload names the culprit, the allowed values and, for an unknown
name, the nearest ones.

``POST /api/race``::

    {"landscape": "ravine" | {"f": "x**2 + 10*y**2", "domain": [[-5, 5], [-5, 5]]},
     "start": [x, y], "steps": 500,                       # optional: the landscape's start, 500
     "noise": 0, "seed": 0,                               # optional: gradient noise σ and its seed
     "known": ["3f2a…", …],                               # optional: keys of runs the client already holds
     "optimizers": [{"name": "adam", "options": {"lr": 0.05, "betas": [0.9, 0.99]},
                     "schedule": {"name": "exponential", "options": {"gamma": 0.99}},     # optional
                     "label": "adam (β₂ 0.99)"}]}                                           # optional

answers ``{"landscape": …, "start": …, "steps": …, "runs": [{"label", "name", "options", "lr", "path" (steps + 1
points, fewer if it diverged), "f", "state" {torch's key: per step [a, b]}, "state_names", "effective_step"
(−Δw / g per coordinate), "gradient", "lr_per_step", "diverged", "final_f", "steps_to_tol", …}],
"computed": k, "cached": m}``. Every run carries a ``key`` (its settings' digest); a run whose key the request
lists in ``known`` comes back as ``{"key": …, "known": true}`` only — a page that holds the other runs of a race
then receives just the one whose slider moved.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import TYPE_CHECKING, Any

from descentlab.lab.live import catalog as C
from descentlab.lab.live.expression import ALLOWED as EXPRESSION_ALLOWED, ExpressionError
from descentlab.lab.live.problems import Problem, builtin, landscape_names, typed
from descentlab.lab.live.runner import RunCache, RunTask, compute_run

if TYPE_CHECKING:
    from descentlab.lab.live.workers import RunWorkers
from descentlab.optim.registry import REGISTRY, suggest

MAX_STEPS = 5000
MAX_OPTIMIZERS = 12
MAX_BODY = 256 * 1024
GRID = 96
REQUEST_KEYS = ("landscape", "start", "steps", "optimizers", "noise", "seed", "known")
OPTIMIZER_KEYS = ("name", "options", "schedule", "label")

CACHE = RunCache()
#: the lesson the page opens on: the ravine race whose picture the ravine's caption describes (GD zig-zags across
#: the valley at η = 0.45, momentum smooths it; tests/test_live_lab.py asserts it on the numbers)
OPENING_LESSON = "momentum"


class ApiError(ValueError):
    """A bad request: HTTP ``status`` with ``payload`` = {"error", "field", "allowed", "suggestions", …}."""

    def __init__(self, message: str, field: str, status: int = 400, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.payload = {"error": message, "field": field, **{k: v for k, v in extra.items() if v is not None}}


def _unknown(kind: str, value: Any, choices: list[str], field: str) -> ApiError:
    close = suggest(str(value), choices) if isinstance(value, str) else []
    if isinstance(value, str) and value and not close:
        close = [c for c in choices if c.startswith(value.lower())][:3]
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return ApiError(f"unknown {kind} {value!r}.{hint} Allowed: {', '.join(choices)}", field, allowed=choices,
                    suggestions=close)


def _integer(value: Any, field: str, low: int, high: int) -> int:
    return int(_number(value, field, low, high, integer=True))


def _number(value: Any, field: str, low: float, high: float, integer: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and integer and value != int(value):
        ok = False
    if not ok or not (low <= value <= high):
        what = "an integer" if integer else "a finite number"
        raise ApiError(f"{field} must be {what} in [{low:g}, {high:g}], got {value!r}", field,
                       allowed={"min": low, "max": high, "integer": integer})
    return int(value) if integer else float(value)


def problem_of(spec: Any, field: str = "landscape") -> Problem:
    """The landscape of a request: a name, or ``{"f": text, "domain": [[x0, x1], [y0, y1]]}``."""
    if isinstance(spec, str):
        if spec not in landscape_names():
            raise _unknown("landscape", spec, landscape_names(), field)
        return builtin(spec)
    if isinstance(spec, dict):
        extra = [k for k in spec if k not in ("f", "domain")]
        if extra:
            raise _unknown("key", extra[0], ["f", "domain"], f"{field}.{extra[0]}")
        try:
            return typed(spec.get("f", ""), spec.get("domain", [[-5, 5], [-5, 5]]))
        except ExpressionError as err:
            raise ApiError(str(err), f"{field}.f", position=err.position,
                           allowed=EXPRESSION_ALLOWED) from None
        except ValueError as err:
            raise ApiError(str(err), f"{field}.domain") from None
    raise ApiError(f"{field} must be a landscape name or {{\"f\": \"…\", \"domain\": [[x0, x1], [y0, y1]]}}, got "
                   f"{spec!r}", field, allowed=landscape_names())


def _options(name: str, options: Any, field: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(options for the class, options as given) — JSON lists become tuples, dtype names dtypes."""
    if options is None:
        return {}, {}
    if not isinstance(options, dict):
        raise ApiError(f"{field} must be an object of option: value, got {options!r}", field,
                       allowed=C.option_names(name))
    specs = {o["name"]: o for o in C.option_specs(name)}
    built: dict[str, Any] = {}
    for key, value in options.items():
        if key not in specs:
            raise _unknown(f"option of {name}", key, list(specs), f"{field}.{key}")
        kind = specs[key]["kind"]
        if kind == "pair" and isinstance(value, list):
            value = tuple(value)
        if kind == "dtype":
            if value not in specs[key]["choices"]:
                raise _unknown(f"value of {key}", value, [str(c) for c in specs[key]["choices"]], f"{field}.{key}")
            value = C.DTYPES.get(value) if value is not None else None
        if kind == "number" and isinstance(value, str) and value in ("inf", "Infinity"):
            value = math.inf
        built[key] = value
    return built, dict(options)


def _allowed(name: str, key: str) -> Any:
    for o in C.option_specs(name):
        if o["name"] == key.partition("[")[0]:
            if o["kind"] == "pair":
                return [p["allowed"] for p in o["parts"]]
            return o.get("allowed") or o.get("choices") or ("true or false" if o["kind"] == "bool" else None)
    return None


def _check_build(name: str, options: dict[str, Any], field: str) -> None:
    """Build the class once on a dummy tensor: its own validation names a bad value and its range."""
    import torch

    try:
        REGISTRY[name].build([torch.zeros(2, dtype=torch.float64, requires_grad=True)], **options)
    except (ValueError, TypeError) as err:
        text = str(err)
        culprit = next((k for k in sorted(options, key=len, reverse=True) if text.startswith(k)), None)
        culprit = culprit or next((k for k in options if k in text), None)
        raise ApiError(f"{name}: {text}", f"{field}.{culprit}" if culprit else field,
                       allowed=_allowed(name, culprit) if culprit else None) from None


def _schedule(spec: Any, lr: float, steps: int, field: str) -> tuple[list[float] | None, Any]:
    if spec is None:
        return None, None
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ApiError(f"{field} must be {{\"name\": schedule, \"options\": {{…}}}}, got {spec!r}", field,
                       allowed=list(C.SCHEDULES))
    name = spec["name"]
    if name not in C.SCHEDULES:
        raise _unknown("schedule", name, list(C.SCHEDULES), f"{field}.name")
    known = {o["name"]: o for o in next(s for s in C.schedule_specs() if s["name"] == name)["options"]}
    opts = spec.get("options") or {}
    if not isinstance(opts, dict):
        raise ApiError(f"{field}.options must be an object, got {opts!r}", f"{field}.options", allowed=list(known))
    for key in opts:
        if key not in known:
            raise _unknown(f"option of schedule {name}", key, list(known), f"{field}.options.{key}")
    from descentlab import schedules

    try:
        fn = getattr(schedules, name)(lr, **{k: v for k, v in opts.items()})
        rates = [float(fn(t)) for t in range(steps)]
    except (ValueError, TypeError) as err:
        raise ApiError(f"schedule {name}: {err}", f"{field}.options", allowed=list(known)) from None
    if not all(math.isfinite(r) and r >= 0 for r in rates):
        raise ApiError(f"schedule {name} gives a rate that is not a finite number >= 0", f"{field}.options")
    return rates, {"name": name, "options": opts}


def race_bytes(body: Any, cache: RunCache | None = CACHE, workers: RunWorkers | None = None) -> bytes:
    """The answer to ``POST /api/race`` as JSON text. Runs found in ``cache`` are not recomputed; the others are
    shared with ``workers`` (:mod:`~descentlab.lab.live.workers`) when there are several."""
    if not isinstance(body, dict):
        raise ApiError("the request must be a JSON object {\"landscape\": …, \"optimizers\": […]}", "",
                       allowed=list(REQUEST_KEYS))
    for key in body:
        if key not in REQUEST_KEYS:
            raise _unknown("request key", key, list(REQUEST_KEYS), key)
    if "landscape" not in body:
        raise ApiError("landscape is required", "landscape", allowed=landscape_names())
    problem = problem_of(body["landscape"])
    steps = _integer(body.get("steps", 500), "steps", 1, MAX_STEPS)
    (x0, x1), (y0, y1) = problem.landscape.domain
    start = body.get("start", list(problem.landscape.start))
    if not isinstance(start, (list, tuple)) or len(start) != 2:
        raise ApiError(f"start must be [x, y], got {start!r}", "start")
    wx, wy = x1 - x0, y1 - y0
    start = (_number(start[0], "start[0]", x0 - wx, x1 + wx), _number(start[1], "start[1]", y0 - wy, y1 + wy))
    noise = _number(body.get("noise", 0.0), "noise", 0.0, 1e3)
    seed = _integer(body.get("seed", 0), "seed", 0, 2**32 - 1)
    optimizers = body.get("optimizers")
    if not isinstance(optimizers, list) or not 1 <= len(optimizers) <= MAX_OPTIMIZERS:
        raise ApiError(f"optimizers must be a list of 1 to {MAX_OPTIMIZERS} {{\"name\", \"options\"}} objects, got "
                       f"{optimizers!r}"[:300], "optimizers", allowed=list(REGISTRY))
    known = body.get("known", [])
    if not isinstance(known, list) or len(known) > 4 * MAX_OPTIMIZERS or not all(isinstance(k, str) for k in known):
        raise ApiError(f"known must be a list of at most {4 * MAX_OPTIMIZERS} run keys (strings)", "known")
    known_keys = set(known)
    fragments: list[bytes | None] = []
    pending: list[tuple[int, str, RunTask]] = []  # (place in the answer, cache key, run) of the runs to compute
    for i, entry in enumerate(optimizers):
        field = f"optimizers[{i}]"
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict):
            raise ApiError(f"{field} must be {{\"name\": …, \"options\": {{…}}}}, got {entry!r}", field,
                           allowed=list(REGISTRY))
        for key in entry:
            if key not in OPTIMIZER_KEYS:
                raise _unknown("optimizer key", key, list(OPTIMIZER_KEYS), f"{field}.{key}")
        name = entry.get("name")
        if name not in REGISTRY:
            raise _unknown("optimizer", name, C.available(), f"{field}.name")
        reason = C.unavailable(name)
        if reason:
            raise ApiError(f"{name} cannot race on a 2-D landscape ({reason}); allowed: {', '.join(C.available())}",
                           f"{field}.name", allowed=C.available())
        built, given = _options(name, entry.get("options"), f"{field}.options")
        label = entry.get("label", name)
        if not isinstance(label, str) or len(label) > 80:
            raise ApiError(f"{field}.label must be a string of at most 80 characters, got {label!r}"[:200],
                           f"{field}.label")
        key = json.dumps([problem.key, start, steps, name, given, entry.get("schedule"), noise, seed, label],
                         sort_keys=True, default=str)
        digest = hashlib.sha1(key.encode()).hexdigest()[:20]
        if digest in known_keys and cache is not None and cache.get(key) is not None:
            fragments.append(b'{"key":"' + digest.encode() + b'","known":true}')
            continue
        text = cache.get(key) if cache is not None else None
        if text is None:
            _check_build(name, built, f"{field}.options")
            lr = float(built.get("lr", REGISTRY[name].lr))
            rates, schedule = _schedule(entry.get("schedule"), lr, steps, f"{field}.schedule")
            pending.append((len(fragments), key, RunTask(start, steps, name, built, given, rates, schedule, lr,
                                                         noise, seed, digest, label)))
        fragments.append(text)
    if pending:
        tasks = [task for _, _, task in pending]
        texts = (workers.compute(problem, body["landscape"], tasks) if workers is not None and len(tasks) > 1
                 else [compute_run(problem, task) for task in tasks])
        for (place, key, _), text in zip(pending, texts):
            fragments[place] = text
            if cache is not None:
                cache.put(key, text)
    computed = len(pending)
    head = json.dumps({"landscape": problem.landscape.name if not problem.typed else problem.landscape.formula,
                       "start": list(start), "steps": steps, "computed": computed,
                       "cached": len(fragments) - computed}, separators=(",", ":"))
    return head[:-1].encode() + b',"runs":[' + b",".join(f for f in fragments if f is not None) + b"]}"


def race(body: Any, cache: RunCache | None = CACHE, workers: RunWorkers | None = None) -> dict[str, Any]:
    """:func:`race_bytes`, decoded."""
    return json.loads(race_bytes(body, cache, workers))


def landscape(body: Any) -> dict[str, Any]:
    """``POST /api/landscape`` {"landscape": name or {"f", "domain"}}: f on a grid for the contours, the domain,
    start, minima and formula."""
    import numpy as np
    import torch

    if not isinstance(body, dict) or "landscape" not in body:
        raise ApiError("the request must be {\"landscape\": name or {\"f\": …, \"domain\": …}}", "landscape",
                       allowed=landscape_names())
    problem = problem_of(body["landscape"])
    ls = problem.landscape
    (x0, x1), (y0, y1) = ls.domain
    xs, ys = np.linspace(x0, x1, GRID), np.linspace(y0, y1, GRID)
    X, Y = np.meshgrid(xs, ys)
    with torch.no_grad():
        Z = ls(torch.tensor(np.stack([X, Y], -1))).numpy()
    finite = np.isfinite(Z)
    if not finite.any():
        raise ApiError("f(x, y) has no finite value on the domain", "landscape.f")
    return {"name": ls.name, "formula": ls.formula, "domain": [[x0, x1], [y0, y1]], "start": list(ls.start),
            "minima": [list(m) for m in ls.minima], "f_star": ls.f_star, "lesson": ls.lesson, "typed": problem.typed,
            "grid": {"n": GRID, "z": [[v if f else None for v, f in zip(row, frow)]
                                      for row, frow in zip(Z.tolist(), finite.tolist())]}}


def landscapes() -> list[dict[str, Any]]:
    from descentlab.lab.landscapes import LANDSCAPES

    return [{"name": n, "formula": ls.formula, "lesson": ls.lesson} for n, ls in LANDSCAPES.items()]


def meta() -> dict[str, Any]:
    """``GET /api/meta``: optimizers with their controls, schedules, landscapes, limits."""
    from descentlab.lab.race import DEFAULT_OPTIMIZERS

    return {"optimizers": C.catalog(), "schedules": C.schedule_specs(), "landscapes": landscapes(),
            "unavailable": [{"name": n, "reason": C.unavailable(n)} for n in REGISTRY if C.unavailable(n)],
            "default_optimizers": list(DEFAULT_OPTIMIZERS), "opening_lesson": OPENING_LESSON,
            "limits": {"steps": MAX_STEPS, "optimizers": MAX_OPTIMIZERS}}
