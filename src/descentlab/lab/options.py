"""Names and the small option languages of settings: ``k=v,k=v`` and ``NAME:k=v,…``, with helpful errors.

Shared by the lab and the command line (which only parses its arguments with these and calls the lab)."""

from __future__ import annotations

import difflib
from typing import Any, Iterable


def parse_value(text: str) -> Any:
    """``true``/``false`` → bool, numbers → int/float, ``a/b/c`` → tuple, anything else → str."""
    if "/" in text:
        return tuple(parse_value(part) for part in text.split("/"))
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_pairs(text: str | None, what: str) -> dict[str, Any]:
    """``"momentum=0.9,nesterov=true"`` → ``{"momentum": 0.9, "nesterov": True}``."""
    result: dict[str, Any] = {}
    if not text:
        return result
    for item in text.split(","):
        if "=" not in item:
            raise ValueError(f"{what}: expected KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        result[key.strip()] = parse_value(value.strip())
    return result


def check_name(kind: str, name: str, valid: Iterable[str]) -> str:
    """``name`` if valid, else ``ValueError`` with the nearest valid name and the full list."""
    valid = list(valid)
    if name not in valid:
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown {kind} {name!r}.{hint} Valid {kind}s: {', '.join(valid)}")
    return name


def parse_schedule(text: str | None, lr0: float):
    """``"exponential:gamma=0.9"`` → ``schedules.exponential(lr0, gamma=0.9)``; ``lr0`` defaults to the run's rate."""
    if not text:
        return None
    from descentlab import schedules

    builders = {n: getattr(schedules, n) for n in ("constant", "inverse_time", "exponential", "inverse_sqrt",
                                                   "step_decay", "piecewise", "linear_warmup", "cosine")}
    name, _, rest = text.partition(":")
    check_name("schedule", name, builders)
    kwargs = parse_pairs(rest, "--schedule")
    if name != "piecewise":
        kwargs.setdefault("lr0", lr0)
    for key in ("boundaries", "values"):
        if key in kwargs and not isinstance(kwargs[key], tuple):
            kwargs[key] = (kwargs[key],)
    try:
        return builders[name](**kwargs)
    except TypeError as err:
        raise ValueError(f"--schedule {name}: {err}") from None
