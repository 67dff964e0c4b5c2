"""``descentlab optimizers``: list the registry, and say why a row does not race; ``--presets``: the presets of
other libraries (Keras 3, optax, PyTorch) with the class and the options each one sets."""

from __future__ import annotations

import argparse
from typing import Any

#: How a row that needs one of the race's offers (descentlab.lab.race.RACE_OFFERS: one (x, y) vector per racer,
#: dense gradients, step(closure)) races, in words (shown under the row).
RACES_THROUGH = {"closure": "races through step(closure): one race step is up to max_iter L-BFGS iterations "
                            "(max_eval evaluations of f and ∇f, the race table counts them)"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("optimizers", help="list the optimizers of the registry")
    p.add_argument("--presets", action="store_true",
                   help="list the presets instead: library, name, class and the options that reproduce it")
    p.set_defaults(func=run)


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "(" + ", ".join(_value(v) for v in value) + ")"
    return str(value)  # torch.float64, True, a string


def run_presets() -> int:
    from descentlab.optim.registry import PRESETS, REGISTRY

    rows = []
    for p in PRESETS.values():
        options = [f"{k}={_value(v)}" for k, v in p.options.items()]
        if p.requires_lr:
            options.insert(0, "lr=<required>")
        rows.append((p.library, p.name, REGISTRY[p.optimizer].cls.__name__,
                     " ".join(options) or "(the class's defaults)"))
    header = ("library", "name", "class", "options")
    widths = [max(len(r[i]) for r in (*rows, header)) for i in range(3)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)) + "  " + header[3])
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[3])
    print(f"\n{len(rows)} presets; build one with descentlab.preset(library, name, params, **overrides)")
    return 0


def run(args: argparse.Namespace) -> int:
    if getattr(args, "presets", False):
        return run_presets()
    from descentlab.lab.race import RACE_OFFERS
    from descentlab.optim.registry import REGISTRY

    width = max(len(n) for n in REGISTRY)
    cls_width = max(len(spec.cls.__name__) for spec in REGISTRY.values())
    for name, spec in REGISTRY.items():
        print(f"{name:<{width}}  {spec.cls.__name__:<{cls_width}}  lr={spec.lr:<6g} {spec.summary}")
        reason = spec.unmet(RACE_OFFERS)
        if reason:
            print(f"{'':<{width}}  does not race: {reason}")
        for key in sorted(spec.requires & set(RACES_THROUGH)):
            print(f"{'':<{width}}  {RACES_THROUGH[key]}")
    return 0
