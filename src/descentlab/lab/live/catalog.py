"""The controls of the live lab, read from the optimizers themselves.

For every registry row: the options of its class's signature (execution switches such as ``impl`` or
``foreach`` left out), each with its default (the registry row's, else the class's), its kind (number, pair of
numbers, bool, choice, dtype) and its allowed values — found by asking the class's own validation: building the
row with an out-of-range value (−∞, +∞) or an unknown word makes its ``__init__`` raise the ``ValueError`` that
states the range or the choices (``"beta must be in [0, 1), got -inf"``), which is parsed here. So a new
option, or a new optimizer row, gets its controls without wiring. The rows' named variants and the presets of
other libraries (Keras, optax, PyTorch) are offered as one-click settings; so are the schedules of
:mod:`descentlab.schedules`.
"""

from __future__ import annotations

import ast
import functools
import inspect
import math
import re
from typing import Any

import torch

from descentlab.optim.registry import PRESETS, REGISTRY, OptimizerSpec

#: execution switches, not the optimizer's maths: no control for them
EXECUTION = ("params", "self", "foreach", "capturable", "differentiable", "fused", "impl", "nonfinite", "state_dtype")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: where the class allows [0, ∞), the slider still needs an end
SLIDER_MAX = {"weight_decay": 0.5, "lr_decay": 1.0, "initial_accumulator_value": 1.0, "momentum_decay": 0.1,
              "initial_scale": 1.0}
LOG_SCALE = {"lr": (1e-5, 10.0), "eps": (1e-12, 1.0)}

_RANGE = re.compile(r"must be in ([\[(])(-?[0-9.e+-]+|-?inf), (-?[0-9.e+-]+|inf)([\])])")
_CHOICES = re.compile(r"must be one of (.+); got")


def _probe(spec: OptimizerSpec, options: dict[str, Any], name: str) -> str | None:
    """The message of the ValueError the class raises for ``options``, when it is about ``name``."""
    try:
        spec.build([torch.zeros(1, requires_grad=True)], **options)
    except ValueError as err:
        text = str(err)
        return text if text.startswith(name + " ") else None
    except TypeError:
        return None
    return None


def _range(message: str | None) -> dict[str, Any] | None:
    match = _RANGE.search(message or "")
    if not match:
        return None
    lo_bracket, lo, hi, hi_bracket = match.groups()
    return {"min": float(lo), "max": float(hi), "min_open": lo_bracket == "(", "max_open": hi_bracket == ")"}


def _number_range(spec: OptimizerSpec, name: str, default: float, build: Any = None) -> dict[str, Any]:
    """``{"min", "max", "min_open", "max_open"}`` from the class's messages for −∞ and +∞."""
    build = build or (lambda v: {name: v})
    low = _range(_probe(spec, build(-math.inf), name))
    high = _range(_probe(spec, build(math.inf), name))
    out = {"min": -math.inf, "max": math.inf, "min_open": True, "max_open": True}
    for found in (low, high):
        if found:
            out = found
            break
    return out


def _plain(allowed: dict[str, Any]) -> dict[str, Any]:
    """A range for JSON: an infinite bound is ``None``."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in allowed.items()}


def _slider(name: str, default: float, allowed: dict[str, Any]) -> dict[str, Any]:
    if name in LOG_SCALE or name.endswith("lr") or name.startswith("eps"):
        lo, hi = LOG_SCALE.get(name, LOG_SCALE["lr"] if "lr" in name else LOG_SCALE["eps"])
        return {"scale": "log", "lo": lo, "hi": hi}
    lo = allowed["min"] if math.isfinite(allowed["min"]) else -1.0
    hi = allowed["max"] if math.isfinite(allowed["max"]) else SLIDER_MAX.get(name, max(1.0, 10 * abs(default)))
    if allowed["max_open"] and math.isfinite(allowed["max"]):
        hi = allowed["max"] - (allowed["max"] - lo) * 1e-3  # β = 0.999 is the last stop before 1
    return {"scale": "linear", "lo": lo, "hi": hi}


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.dtype):
        return next((k for k, v in DTYPES.items() if v == value), str(value))
    if isinstance(value, tuple):
        return [_json_default(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def option_specs(name: str) -> list[dict[str, Any]]:
    """The controls of registry row ``name``, in signature order."""
    return [dict(o) for o in _option_specs(name)]


@functools.lru_cache(maxsize=None)
def _option_specs(name: str) -> tuple[dict[str, Any], ...]:
    spec = REGISTRY[name]
    out = []
    for pname, param in inspect.signature(spec.cls.__init__).parameters.items():
        if pname in EXECUTION or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = spec.defaults.get(pname, param.default)
        annotation = str(param.annotation)
        entry: dict[str, Any] = {"name": pname, "default": _json_default(default)}
        if "dtype" in annotation:
            entry.update(kind="dtype", choices=[None, *DTYPES])
        elif isinstance(default, bool):
            entry.update(kind="bool")
        elif isinstance(default, str):
            message = _probe(spec, {pname: "\x00unknown"}, pname)
            match = _CHOICES.search(message or "")
            choices = list(ast.literal_eval(f"({match.group(1)},)")) if match else [default]
            entry.update(kind="choice", choices=choices)
        elif isinstance(default, tuple) and len(default) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in default):
            parts = []
            for i in range(2):
                def build(v: float, i: int = i) -> dict[str, Any]:
                    pair = list(default)
                    pair[i] = v
                    return {pname: tuple(pair)}
                allowed = _number_range(spec, f"{pname}[{i}]", float(default[i]), build)
                parts.append({"name": f"{pname}[{i}]", "default": float(default[i]), "allowed": _plain(allowed),
                              **_slider(pname, float(default[i]), allowed)})
            entry.update(kind="pair", parts=parts)
        elif isinstance(default, (int, float)) or default is inspect.Parameter.empty:
            value = float(default) if isinstance(default, (int, float)) else 0.0
            allowed = _number_range(spec, pname, value)
            entry.update(kind="number", default=value, allowed=_plain(allowed), **_slider(pname, value, allowed))
        else:
            continue  # no control for an option the page cannot set (a callable, a tensor)
        out.append(entry)
    return tuple(out)


def option_names(name: str) -> list[str]:
    return [o["name"] for o in _option_specs(name)]


def settings(name: str) -> list[dict[str, Any]]:
    """One-click settings of row ``name``: its registry variants, then the presets built from it."""
    spec = REGISTRY[name]
    known = set(option_names(name))
    out = [{"label": f"variant: {key}", "options": {k: _json_default(v) for k, v in opts.items()}}
           for key, opts in spec.variants.items()]
    for preset in PRESETS.values():
        if preset.optimizer != name:
            continue
        opts = {k: _json_default(v) for k, v in preset.options.items() if k in known}
        if preset.requires_lr:
            opts.setdefault("lr", spec.lr)
        out.append({"label": f"{preset.library}: {preset.name}", "options": opts, "note": preset.note})
    return out


@functools.lru_cache(maxsize=None)
def unavailable(name: str) -> str | None:
    """Why registry row ``name`` cannot race on a 2-D landscape (``None``: it can). Found by racing it for three
    steps: Muon steps only matrices, SparseAdam only sparse gradients, L-BFGS needs a closure."""
    from descentlab.lab.live.problems import builtin
    from descentlab.lab.live.runner import simulate

    try:
        simulate(builtin("bowl"), (-4.0, 3.0), 3, name, {})
    except Exception as err:  # noqa: BLE001 - whatever stops it, the row is listed with the reason
        return " ".join(f"{type(err).__name__}: {err}".split())[:200]
    return None


def available() -> list[str]:
    """The registry rows that race on a 2-D landscape."""
    return [name for name in REGISTRY if unavailable(name) is None]


def catalog() -> list[dict[str, Any]]:
    """Every registry row that can race: name, summary, class, default options, controls and one-click
    settings."""
    return [{"name": name, "summary": REGISTRY[name].summary, "class": REGISTRY[name].cls.__name__,
             "defaults": {k: _json_default(v) for k, v in REGISTRY[name].defaults.items()},
             "options": option_specs(name), "settings": settings(name)} for name in available()]


#: the schedules a live race offers (descentlab.schedules builders whose arguments are numbers) and the
#: first value and slider range of each argument the builder has no default for
SCHEDULES = ("constant", "inverse_time", "exponential", "inverse_sqrt", "step_decay", "linear_warmup", "cosine")
SCHEDULE_START = {"decay_rate": (0.01, 0.0, 0.2), "gamma": (0.99, 0.9, 1.0), "k": (1.0, 0.1, 10.0),
                  "step_size": (100, 1, 1000), "factor": (0.5, 0.05, 1.0), "warmup": (50, 1, 1000),
                  "start_factor": (0.1, 0.0, 1.0), "period": (500, 1, 5000), "min_lr": (0.0, 0.0, 0.1)}


def schedule_specs() -> list[dict[str, Any]]:
    """The schedules and their arguments (``lr0`` is the optimizer's rate), from the builders' signatures."""
    from descentlab import schedules

    out = []
    for name in SCHEDULES:
        params = []
        for pname, param in inspect.signature(getattr(schedules, name)).parameters.items():
            if pname == "lr0":
                continue
            start, lo, hi = SCHEDULE_START.get(pname, (1.0, 0.0, 10.0))
            default = start if param.default is inspect.Parameter.empty else param.default
            integer = param.annotation in (int, "int")
            params.append({"name": pname, "default": default, "lo": lo, "hi": hi, "integer": integer})
        out.append({"name": name, "options": params, "doc": (getattr(schedules, name).__doc__ or "").split("\n")[0]})
    return out
